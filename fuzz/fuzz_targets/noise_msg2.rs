//! The client reading Noise message 2: the raw message, and any reply payload under a real
//! encryption, so that the cookie/ERR decoder runs on decrypted bytes inside a
//! `ClientSession`.
//!
//! Input: a mode byte, then the message (even mode) or the payload (odd mode).
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use moose_proto::vors::client::{ClientEvent, ClientSession, ClientTransmit};
use moose_proto::vors::control::Control;
use moose_proto::vors::handshake::{ClientHandshake, ServerHandshake};
use moose_proto::vors::netstring;
use moose_proto::vors::server::MAGIC;
use moose_proto_fuzz::{HELLO, SERVER_PRIVATE, WALL, server_public};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let (client, _msg1) =
            ClientHandshake::start(&server_public(), &HELLO, Some(WALL)).expect("start");
        // Not a reply to this client's message 1: it must fail, cleanly.
        assert!(client.finish(rest).is_err());
        return;
    }
    let payload = rest;
    let now = Instant::now();
    let mut client = ClientSession::new(now, WALL, &server_public(), &HELLO).expect("session");
    let Some(ClientTransmit::Tcp(first)) = client.poll_transmit() else {
        panic!("the session starts with message 1");
    };
    let (msg1, _) = netstring::decode(&first[MAGIC.len()..], usize::MAX)
        .expect("netstring")
        .expect("whole");
    let (server, _, _) = ServerHandshake::respond_to(&SERVER_PRIVATE, msg1).expect("message 1");
    let Ok(msg2) = server.reply_raw(payload) else {
        // The payload does not fit in one handshake message.
        return;
    };
    let mut stream = Vec::new();
    netstring::encode(&msg2, &mut stream);
    let cut = usize::from(mode >> 1).min(stream.len());
    client.handle_tcp(now, &stream[..cut]);
    client.handle_tcp(now, &stream[cut..]);

    let mut udp = Vec::new();
    while let Some(t) = client.poll_transmit() {
        match t {
            ClientTransmit::Udp(d) => udp.push(d),
            ClientTransmit::Tcp(_) => panic!("nothing goes on TCP before SID"),
        }
    }
    let events: Vec<_> = std::iter::from_fn(|| client.poll_event()).collect();
    match Control::decode(payload) {
        Ok(Control::Cookie(cookie)) => {
            assert!(!client.is_closed());
            assert_eq!(udp, [cookie.to_vec()]);
            assert!(events.is_empty());
            assert!(client.poll_timeout().is_some_and(|t| t > now));
        }
        Ok(Control::Err(reason)) => {
            assert!(client.is_closed());
            // The client drops the padding of message 2's reason.
            let reason = reason.trim_end_matches(' ');
            assert!(matches!(&events[0], ClientEvent::Rejected(r) if r == reason));
            assert!(client.poll_timeout().is_none());
        }
        _ => {
            assert!(client.is_closed());
            assert!(matches!(events[..], [ClientEvent::Closed(_)]));
        }
    }
});
