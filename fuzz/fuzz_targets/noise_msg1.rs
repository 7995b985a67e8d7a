//! The server reading Noise message 1: the raw message (length checks, X25519, AEAD), and
//! any payload under a real encryption, so that the hello decoder runs on decrypted bytes,
//! both through `ServerHandshake` and through a `ServerSession` fed the TCP stream.
//!
//! Input: a mode byte, then the message (even mode) or the payload (odd mode).
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use moose_proto::vors::handshake::{ClientHandshake, MAX_HANDSHAKE_LEN, ServerHandshake};
use moose_proto::vors::hello::Hello;
use moose_proto::vors::netstring;
use moose_proto::vors::packet::COOKIE_LEN;
use moose_proto::vors::server::{MAGIC, ServerEvent, ServerSession};
use moose_proto_fuzz::{SERVER_PRIVATE, server_public};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok((server, _)) = ServerHandshake::respond_to(&SERVER_PRIVATE, rest) {
            server.accept(&[7; COOKIE_LEN]).expect("message 2");
        }
        return;
    }
    let payload = rest;
    let Ok((_client, msg1)) = ClientHandshake::start_raw(&server_public(), payload) else {
        // The payload does not fit in one handshake message.
        return;
    };
    let expected = Hello::decode(payload).map(|h| h.to_owned());
    let direct = ServerHandshake::respond_to(&SERVER_PRIVATE, &msg1).map(|(_, hello)| hello);
    assert!(msg1.len() <= MAX_HANDSHAKE_LEN);
    assert_eq!(direct.as_ref().ok(), expected.as_ref().ok());

    // The same message 1 through the session, cut into pieces at a byte from the input.
    let now = Instant::now();
    let mut session = ServerSession::new(now, &SERVER_PRIVATE);
    let mut stream = MAGIC.to_vec();
    netstring::encode(&msg1, &mut stream);
    let cut = usize::from(mode >> 1).min(stream.len());
    session.handle_tcp(now, &stream[..cut]);
    session.handle_tcp(now, &stream[cut..]);
    let mut hello = None;
    let mut closed = false;
    while let Some(event) = session.poll_event() {
        match event {
            ServerEvent::Hello(h) => hello = Some(h),
            ServerEvent::Closed(_) => closed = true,
            other => panic!("unexpected event before the decision: {other:?}"),
        }
    }
    assert_eq!(hello, expected.ok());
    assert_eq!(closed, hello.is_none());
    assert_eq!(session.is_closed(), closed);
    if hello.is_some() {
        session.reject(now, "room is full").expect("reject");
        assert!(session.is_closed());
        assert!(session.poll_transmit().is_some());
    }
});
