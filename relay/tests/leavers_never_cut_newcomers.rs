//! A connection's descriptor number is the kernel's to give again as soon as its socket is
//! closed. A relay that shuts or resets a leaving peer's connection by that number after it let
//! go of the socket cuts whoever was accepted on the number since: a caller whose handshake
//! ends unanswered, or a member of another call. Here many peers leave at once while others
//! come, round after round; every newcomer gets in and stays.
//!
//! (Seen before the fix: about one join in three right after four members left was closed by
//! the relay at once, a FIN then a RST on the new connection.)
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use moose_testkit::relay::Relay;
use moose_testkit::vors_member::VorsMember;
use moose_testkit::ws::WsClient;
use socket2::Socket;

const ROUNDS: usize = 8;
const PEERS: usize = 6;

#[test]
fn members_leaving_a_room_never_cut_a_newcomer() {
    let relay = Relay::start(&[], &[]);
    let join =
        |name: String, room: &str| VorsMember::join(relay.vors, &relay.vors_pubkey, &name, room);
    let mut room: Vec<VorsMember> = (0..PEERS)
        .map(|i| join(format!("old-{i}"), "busy"))
        .collect();
    for round in 0..ROUNDS {
        // Every leaver's connection gets the DELs of the others as it goes: writes that fail
        // on a closed peer, which the relay answers by resetting that connection.
        drop(room);
        room = (0..PEERS)
            .map(|i| join(format!("new-{round}-{i}"), "busy"))
            .collect();
        for member in &mut room {
            member.run_until(Duration::from_secs(5), "the whole room", |m| {
                m.peers() == PEERS - 1
            });
            assert!(!member.is_closed(), "{}: cut", member.name);
        }
    }
}

#[test]
fn peers_vanishing_from_lines_never_cut_a_newcomer() {
    let relay = Relay::start(&["--open"], &[]);
    let key = |round: usize, line: usize| format!("leavers-{round:02}-{line:02}-0123456789");
    let pair = |key: &str| {
        (
            WsClient::connect(relay.http, key),
            WsClient::connect(relay.http, key),
        )
    };
    let mut lines: Vec<_> = (0..PEERS).map(|i| pair(&key(0, i))).collect();
    for round in 1..=ROUNDS {
        // Audio in flight to each `a` as it vanishes with a reset: its writer fails.
        for (_, b) in &mut lines {
            b.send_binary(&[0u8; 4096]);
        }
        for (a, b) in lines.drain(..) {
            let socket = Socket::from(a.stream);
            socket.set_linger(Some(Duration::ZERO)).unwrap();
            drop(socket);
            drop(b);
        }
        lines = (0..PEERS).map(|i| pair(&key(round, i))).collect();
        for (a, b) in &mut lines {
            a.send_binary(b"still here");
            assert_eq!(b.recv().payload, b"still here");
        }
    }
}
