//! The server reading Noise message 1: the raw message (length checks, X25519, AEAD), and
//! any payload under a real encryption, so that the hello decoder runs on decrypted bytes,
//! both through `ServerHandshake` and through a `ServerSession` fed the TCP stream, screened
//! as new and judged fresh or stale at [`WALL`].
//!
//! Input: a mode byte, then the message (even mode) or the payload (odd mode).
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use moose_proto::vors::freshness::Freshness;
use moose_proto::vors::handshake::{
    ClientHandshake, MAX_HANDSHAKE_LEN, ServerHandshake, client_ephemeral,
};
use moose_proto::vors::hello::Hello;
use moose_proto::vors::netstring;
use moose_proto::vors::packet::COOKIE_LEN;
use moose_proto::vors::server::{MAGIC, ServerEvent, ServerSession};
use moose_proto_fuzz::{SERVER_PRIVATE, WALL, server_public};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok((server, _, _)) = ServerHandshake::respond_to(&SERVER_PRIVATE, rest) {
            server.accept(&[7; COOKIE_LEN]).expect("message 2");
        }
        return;
    }
    let payload = rest;
    let Ok((_client, msg1)) = ClientHandshake::start_raw(&server_public(), payload) else {
        // The payload does not fit in one handshake message.
        return;
    };
    let decoded = Hello::decode(payload).map(|(h, sent_at)| (h.to_owned(), sent_at));
    let direct = ServerHandshake::respond_to(&SERVER_PRIVATE, &msg1)
        .map(|(_, hello, sent_at)| (hello, sent_at));
    assert!(msg1.len() <= MAX_HANDSHAKE_LEN);
    assert_eq!(direct.as_ref().ok(), decoded.as_ref().ok());
    // The session gives the hello only when it is fresh, too.
    let freshness = Freshness::default();
    let expected = decoded
        .ok()
        .filter(|(_, sent_at)| freshness.judge(*sent_at, WALL).is_ok())
        .map(|(hello, _)| hello);

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
            ServerEvent::Message1 { ephemeral } => {
                assert_eq!(Some(ephemeral), client_ephemeral(&msg1));
                session
                    .open_hello(now, WALL, &freshness)
                    .expect("screening");
            }
            ServerEvent::Hello(h) => hello = Some(h),
            ServerEvent::Closed(_) => closed = true,
            other => panic!("unexpected event before the decision: {other:?}"),
        }
    }
    assert_eq!(hello, expected);
    assert_eq!(closed, hello.is_none());
    assert_eq!(session.is_closed(), closed);
    if hello.is_some() {
        session.reject(now, "room is full").expect("reject");
        assert!(session.is_closed());
        assert!(session.poll_transmit().is_some());
    }
});
