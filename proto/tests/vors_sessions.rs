//! VoRS sessions end to end through the deterministic harness: joining, announcements,
//! timeouts and refusals.
#![allow(clippy::unwrap_used)]

mod vors_harness;

use std::time::Duration;

use moose_proto::vors::client::{COOKIE_INTERVAL, ClientCloseReason, ClientEvent, ClientSession};
use moose_proto::vors::room::RoomConfig;
use moose_proto::vors::server::{COOKIE_TIMEOUT, PING_TIMEOUT, ServerCloseReason};
use vors_harness::{Link, Sim, TICK, added, removed};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn joined(sim: &Sim, i: usize) -> bool {
    sim.members[i].joined_sid().is_some()
}

fn stats(client: &ClientSession) -> &moose_proto::vors::client::ClientStats {
    client.stats()
}

#[test]
fn two_peers_join_and_are_announced_both_ways() {
    let mut sim = Sim::new(1, RoomConfig::default());
    let a = sim.connect("alice", "");
    assert!(sim.run_until(secs(1), |s| joined(s, a)), "alice joined");
    let b = sim.connect("bob", "");
    assert!(sim.run_until(secs(1), |s| joined(s, b)), "bob joined");
    sim.run_for(Duration::from_millis(100));

    let (sid_a, sid_b) = (
        sim.members[a].joined_sid().unwrap(),
        sim.members[b].joined_sid().unwrap(),
    );
    assert_ne!(sid_a, sid_b);
    assert_eq!(
        sim.members[a].sid,
        Some(sid_a),
        "client and relay agree on the SID"
    );
    assert_eq!(added(&sim.members[a]), vec!["bob"]);
    assert_eq!(added(&sim.members[b]), vec!["alice"]);
    let peers: Vec<_> = sim.members[b]
        .client
        .peers()
        .map(|(s, n, _)| (s, n.to_owned()))
        .collect();
    assert_eq!(peers, vec![(sid_a, "alice".to_owned())]);
    // One cookie was enough on a clean network: the SID came back within the first second.
    assert_eq!(stats(&sim.members[a].client).cookies_sent, 1);
    // Both are still there after a minute of pings and keepalives.
    sim.run_for(secs(60));
    assert!(
        sim.members
            .iter()
            .all(|m| m.server_closed.is_none() && !m.client.is_closed())
    );
    assert!(stats(&sim.members[a].client).pings_sent >= 6);
    assert!(sim.room.stats().keepalives >= 100);
}

#[test]
fn a_member_that_stops_pinging_is_deleted_after_30_seconds() {
    let mut sim = Sim::new(2, RoomConfig::default());
    let a = sim.connect("alice", "");
    let b = sim.connect("bob", "");
    assert!(sim.run_until(secs(2), |s| joined(s, a) && joined(s, b)));
    sim.run_for(secs(15));
    let frozen_at = sim.now;
    sim.members[b].frozen = true;
    assert!(sim.run_until(secs(40), |s| s.members[b].server_closed.is_some()));
    let (closed_at, reason) = sim.members[b].server_closed.unwrap();
    assert_eq!(reason, ServerCloseReason::PingTimeout);
    // Pings go every 10 s, so the last one was at most 10 s before the freeze.
    let silence = closed_at - frozen_at;
    assert!(
        silence > PING_TIMEOUT - secs(10) && silence <= PING_TIMEOUT + TICK,
        "{silence:?}"
    );
    sim.run_for(Duration::from_millis(50));
    assert_eq!(removed(&sim.members[a]), vec!["bob"]);
    assert_eq!(sim.room.len(), 1);
    assert!(sim.members[a].server_closed.is_none());
}

#[test]
fn cookies_are_repeated_every_second_while_udp_is_lost() {
    let mut sim = Sim::new(3, RoomConfig::default());
    sim.up = Link {
        loss: 1.0,
        ..sim.up
    };
    let a = sim.connect("alice", "");
    sim.run_for(Duration::from_millis(3500));
    assert!(!joined(&sim, a));
    let sent = stats(&sim.members[a].client).cookies_sent;
    assert_eq!(sent, 4, "at 0, 1, 2 and 3 s");
    sim.up.loss = 0.0;
    assert!(sim.run_until(COOKIE_INTERVAL + TICK * 10, |s| joined(s, a)));
    assert_eq!(stats(&sim.members[a].client).cookies_sent, 5);
    sim.run_for(secs(3));
    assert_eq!(
        stats(&sim.members[a].client).cookies_sent,
        5,
        "no cookie after SID"
    );
}

#[test]
fn no_cookie_within_10_seconds_ends_the_session() {
    let mut sim = Sim::new(4, RoomConfig::default());
    sim.up = Link {
        loss: 1.0,
        ..sim.up
    };
    let a = sim.connect("alice", "");
    assert!(sim.run_until(secs(12), |s| s.members[a].server_closed.is_some()));
    let (closed_at, reason) = sim.members[a].server_closed.unwrap();
    assert_eq!(reason, ServerCloseReason::CookieTimeout);
    let waited = closed_at - sim.members[a].accepted_at.unwrap();
    assert!(
        waited >= COOKIE_TIMEOUT && waited < COOKIE_TIMEOUT + TICK,
        "{waited:?}"
    );
    assert!(
        sim.room.is_empty(),
        "the reserved name and SID are released"
    );
    let last = sim.members[a].client_events().last().cloned();
    assert_eq!(
        last,
        Some(ClientEvent::Closed(ClientCloseReason::PeerClosed))
    );
    assert!(stats(&sim.members[a].client).cookies_sent >= 10);
}

#[test]
fn each_refusal_reaches_the_client_with_its_reason() {
    let mut sim = Sim::new(5, RoomConfig::with_max_members(2));
    let a = sim.connect("alice", "s3cret");
    assert!(sim.run_until(secs(1), |s| joined(s, a)));
    let wrong = sim.connect("mallory", "guess");
    let nopass = sim.connect("eve", "");
    let dup = sim.connect("alice", "s3cret");
    let b = sim.connect("bob", "s3cret");
    assert!(sim.run_until(secs(1), |s| joined(s, b)));
    let full = sim.connect("carol", "s3cret");
    sim.run_for(Duration::from_millis(100));

    for (i, reason) in [
        (wrong, "wrong password"),
        (nopass, "wrong password"),
        (dup, "name is taken"),
        (full, "room is full"),
    ] {
        let events: Vec<_> = sim.members[i].client_events().cloned().collect();
        assert_eq!(
            events,
            vec![
                ClientEvent::Rejected(reason.to_owned()),
                ClientEvent::Closed(ClientCloseReason::Rejected)
            ],
            "{}",
            sim.members[i].name
        );
        assert_eq!(
            sim.members[i].server_closed.map(|c| c.1),
            Some(ServerCloseReason::Rejected)
        );
    }
    assert_eq!(sim.room.len(), 2);
    assert_eq!(
        added(&sim.members[a]),
        vec!["bob"],
        "refused clients are never announced"
    );
}

#[test]
fn a_third_peer_gets_everyone_and_everyone_gets_it() {
    let mut sim = Sim::new(6, RoomConfig::default());
    let a = sim.connect("alice", "");
    let b = sim.connect("bob", "");
    assert!(sim.run_until(secs(2), |s| joined(s, a) && joined(s, b)));
    let c = sim.connect("carol", "");
    assert!(sim.run_until(secs(2), |s| joined(s, c)));
    sim.run_for(Duration::from_millis(100));
    let mut seen = added(&sim.members[c]);
    seen.sort();
    assert_eq!(seen, vec!["alice", "bob"]);
    assert_eq!(added(&sim.members[a]), vec!["bob", "carol"]);
    assert_eq!(added(&sim.members[b]), vec!["alice", "carol"]);
    // Carol leaves by closing her connection: the others get DEL.
    let now = sim.now;
    sim.members[c].server.handle_tcp_closed(now);
    sim.run_for(Duration::from_millis(50));
    assert_eq!(removed(&sim.members[a]), vec!["carol"]);
    assert_eq!(removed(&sim.members[b]), vec!["carol"]);
    assert_eq!(
        sim.members[c].server_closed.map(|c| c.1),
        Some(ServerCloseReason::PeerClosed)
    );
}
