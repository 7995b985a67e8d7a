//! Control messages as the session machines receive them after the handshake: any plaintext,
//! encrypted by a real Noise transport, to a `ServerSession` (from a client) and to a
//! `ClientSession` (from a server), joined or still waiting for the cookie or SID.
//!
//! Input: a flags byte (bit 0: the server session has sent SID; bit 1: the client session
//! has received SID), then records `[direction][len][plaintext]` (bit 0 of direction:
//! 0 to the server, 1 to the client); a record whose direction has bit 1 set is cut in two
//! at its middle on the way.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use moose_proto::vors::Sid;
use moose_proto::vors::client::{ClientEvent, ClientSession, ClientTransmit};
use moose_proto::vors::control::{Control, ControlOwned};
use moose_proto::vors::freshness::Freshness;
use moose_proto::vors::handshake::{ClientHandshake, ServerHandshake};
use moose_proto::vors::netstring;
use moose_proto::vors::server::{MAGIC, ServerEvent, ServerSession};
use moose_proto_fuzz::{HELLO, SERVER_PRIVATE, WALL, cookie, records, server_public};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    // The two sides are independent: set up only those that get a record.
    let (to_server, to_client): (Vec<_>, Vec<_>) =
        records(data).partition(|(direction, _)| direction & 1 == 0);
    if !to_server.is_empty() {
        server_side(flags & 1 != 0, &to_server);
    }
    if !to_client.is_empty() {
        client_side(flags & 2 != 0, &to_client);
    }
});

/// Splits a frame in two at its middle when the record's direction asks for it.
fn pieces(direction: u8, frame: &[u8]) -> (&[u8], &[u8]) {
    if direction & 2 != 0 {
        frame.split_at(frame.len() / 2)
    } else {
        (frame, &[])
    }
}

/// A `ServerSession` after message 2 (and SID when `joined`), fed by a raw client transport.
fn server_side(joined: bool, records: &[(u8, &[u8])]) {
    let now = Instant::now();
    let (client_hs, msg1) =
        ClientHandshake::start(&server_public(), &HELLO, Some(WALL)).expect("start");
    let mut server = ServerSession::new(now, &SERVER_PRIVATE);
    let mut stream = MAGIC.to_vec();
    netstring::encode(&msg1, &mut stream);
    server.handle_tcp(now, &stream);
    assert!(matches!(
        server.poll_event(),
        Some(ServerEvent::Message1 { .. })
    ));
    server
        .open_hello(now, WALL, &Freshness::default())
        .expect("screening");
    assert!(matches!(server.poll_event(), Some(ServerEvent::Hello(_))));
    server.accept(now, &cookie(0)).expect("accept");
    let msg2 = server.poll_transmit().expect("message 2");
    let (msg2, _) = netstring::decode(&msg2, usize::MAX).unwrap().unwrap();
    let (_, mut to_server, _) = client_hs.finish(msg2).expect("message 2 reads");
    if joined {
        server
            .send_control(now, &Control::Sid(Sid(1)))
            .expect("SID");
    }
    while server.poll_transmit().is_some() {}

    for &(direction, plaintext) in records {
        let mut frame = Vec::new();
        if to_server.encrypt_raw(plaintext, &mut frame).is_err() {
            continue;
        }
        let (a, b) = pieces(direction, &frame);
        let decodes = Control::decode(plaintext).map(|m| m.to_owned());
        let was_closed = server.is_closed();
        server.handle_tcp(now, a);
        server.handle_tcp(now, b);
        while server.poll_transmit().is_some() {}
        let events: Vec<_> = std::iter::from_fn(|| server.poll_event()).collect();
        if was_closed {
            assert!(events.is_empty() && server.is_closed());
            continue;
        }
        // Only what a client may send keeps the session open.
        let client_message = matches!(
            decodes,
            Ok(ControlOwned::Ping
                | ControlOwned::Muted(None)
                | ControlOwned::Unmuted(None)
                | ControlOwned::Chat { sid: None, .. })
        );
        assert_eq!(server.is_closed(), !client_message, "{decodes:?}");
        assert_eq!(
            events.iter().any(|e| matches!(e, ServerEvent::Closed(_))),
            !client_message
        );
    }
}

/// A `ClientSession` after message 2 (and SID when `joined`), fed by a raw server transport.
fn client_side(joined: bool, records: &[(u8, &[u8])]) {
    let now = Instant::now();
    let mut client = ClientSession::new(now, WALL, &server_public(), &HELLO).expect("session");
    let Some(ClientTransmit::Tcp(first)) = client.poll_transmit() else {
        panic!("the session starts with message 1");
    };
    let (msg1, _) = netstring::decode(&first[MAGIC.len()..], usize::MAX)
        .unwrap()
        .unwrap();
    let (server_hs, _, _) =
        ServerHandshake::respond_to(&SERVER_PRIVATE, msg1).expect("message 1");
    let (msg2, mut to_client, _) = server_hs.accept(&cookie(1)).expect("accept");
    let mut frame = Vec::new();
    netstring::encode(&msg2, &mut frame);
    if joined {
        to_client
            .encrypt_control(&Control::Sid(Sid(2)), &mut frame)
            .expect("SID");
    }
    client.handle_tcp(now, &frame);
    assert!(!client.is_closed());
    while client.poll_transmit().is_some() {}
    while client.poll_event().is_some() {}

    for &(direction, plaintext) in records {
        let mut frame = Vec::new();
        if to_client.encrypt_raw(plaintext, &mut frame).is_err() {
            continue;
        }
        let (a, b) = pieces(direction, &frame);
        let decodes = Control::decode(plaintext).map(|m| m.to_owned());
        let was_closed = client.is_closed();
        client.handle_tcp(now, a);
        client.handle_tcp(now, b);
        while client.poll_transmit().is_some() {}
        let events: Vec<_> = std::iter::from_fn(|| client.poll_event()).collect();
        if was_closed {
            assert!(events.is_empty() && client.is_closed());
            continue;
        }
        // What only a server sends keeps the session open; ERR ends it as a refusal.
        let closes = !matches!(
            decodes,
            Ok(ControlOwned::Sid(_)
                | ControlOwned::Pong
                | ControlOwned::Add { .. }
                | ControlOwned::Del(_)
                | ControlOwned::Muted(Some(_))
                | ControlOwned::Unmuted(Some(_))
                | ControlOwned::Chat { sid: Some(_), .. })
        );
        assert_eq!(client.is_closed(), closes, "{decodes:?}");
        assert_eq!(
            events.iter().any(|e| matches!(e, ClientEvent::Closed(_))),
            closes
        );
    }
}
