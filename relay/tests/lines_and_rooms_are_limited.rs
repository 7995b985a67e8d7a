//! `--max-lines` and `--max-rooms` count over every core: the line or room one over the limit
//! is refused (503 before the upgrade; VoRS ERR "server full"), the ones that exist go on and
//! take new members, and a place comes back when a line or room goes. `--max-rooms-per-address`
//! keeps a few addresses from holding every room.
#![allow(clippy::unwrap_used)]

use std::thread;
use std::time::{Duration, Instant};

use moose_testkit::relay::Relay;
use moose_testkit::vors_member::VorsMember;
use moose_testkit::ws::{WsClient, try_connect};

const MAX: usize = 3;

fn key(i: usize) -> String {
    format!("limited-line-{i:02}-0123456789")
}

#[test]
fn lines_past_the_limit_get_503() {
    let relay = Relay::start(&["--open", "--max-lines", &MAX.to_string()], &[]);
    // Three lines, each on whichever core its key hashes to: the limit is for the process.
    let mut first: Vec<WsClient> = (0..MAX)
        .map(|i| WsClient::connect(relay.http, &key(i)))
        .collect();
    let refused = try_connect(relay.http, &format!("apikey={}", key(MAX)), &[])
        .expect_err("one line too many");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.body, "server full\n");
    assert_eq!(
        relay.metric("moose_ws_dropped_total{reason=\"server_full\"}"),
        1
    );
    // An existing line still takes a peer and relays.
    let mut second = WsClient::connect(relay.http, &key(0));
    first[0].send_binary(b"still a line");
    assert_eq!(second.recv().payload, b"still a line");
    // The line goes with its last peer; the new one then gets in.
    drop(first.remove(1));
    let deadline = Instant::now() + Duration::from_secs(5);
    let newcomer = loop {
        match try_connect(relay.http, &format!("apikey={}", key(MAX)), &[]) {
            Ok(peer) => break peer,
            Err(r) => assert_eq!(r.status, 503, "{}", r.body),
        }
        assert!(
            Instant::now() < deadline,
            "the gone line's place never came back"
        );
        // Polling for the relay to notice the closed peer, with a deadline.
        thread::sleep(Duration::from_millis(20));
    };
    drop(newcomer);
}

#[test]
fn rooms_past_the_limit_are_refused() {
    let relay = Relay::start(&["--max-rooms", &MAX.to_string()], &[]);
    let join = |name: &str, room: &str| {
        VorsMember::try_join(relay.vors, &relay.vors_pubkey, name, room, "", None)
    };
    let members: Vec<VorsMember> = (0..MAX)
        .map(|i| join("first", &format!("room-{i}")).unwrap())
        .collect();
    assert_eq!(
        join("late", &format!("room-{MAX}")).err().as_deref(),
        Some("server full")
    );
    assert_eq!(relay.metric("moose_vors_server_full_total"), 1);
    // An existing room still takes members, who meet.
    let mut second = join("second", "room-0").unwrap();
    second.run_until(Duration::from_secs(5), "first's ADD", |m| m.peers() == 1);
    drop(members);
    drop(second);
    // The rooms go with their members; a new one is made again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match join("late", &format!("room-{MAX}")) {
            Ok(_) => break,
            Err(reason) => assert_eq!(reason, "server full"),
        }
        assert!(
            Instant::now() < deadline,
            "the rooms' places never came back"
        );
        // Polling for the relay to notice the members left, with a deadline.
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn one_address_cannot_take_every_room() {
    // Two addresses try to hold 30 rooms each, with a member kept in each; the process allows
    // 40. Each gets its 16 and no more, and a new room from another address is still made.
    const MAX_ROOMS: usize = 40;
    const PER_ADDRESS: usize = 16;
    const TRIES: usize = 30;
    let relay = Relay::start(&["--max-rooms", &MAX_ROOMS.to_string()], &[]);
    let mut held = Vec::new();
    for host in [1, 2] {
        let from = std::net::IpAddr::from([127, 0, 2, host]);
        let mut made = 0;
        for i in 0..TRIES {
            let room = format!("hoard-{host}-{i}");
            match VorsMember::try_join(
                relay.vors,
                &relay.vors_pubkey,
                "hoarder",
                &room,
                "",
                Some(from),
            ) {
                Ok(member) => {
                    held.push(member);
                    made += 1;
                }
                Err(reason) => assert_eq!(reason, "too many rooms"),
            }
        }
        assert_eq!(made, PER_ADDRESS, "127.0.2.{host}");
    }
    let refused = (2 * (TRIES - PER_ADDRESS)) as u64;
    assert_eq!(relay.metric("moose_vors_too_many_rooms_total"), refused);
    assert_eq!(relay.metric("moose_vors_server_full_total"), 0);
    // An honest member from 127.0.0.1 still makes a room, and one of the hoarded rooms still
    // takes members from anywhere: only making rooms is limited.
    let _ann = VorsMember::join(relay.vors, &relay.vors_pubkey, "ann", "honest");
    let bob = VorsMember::join(relay.vors, &relay.vors_pubkey, "bob", "hoard-1-0");
    drop(bob);
    // A hoarder's room that goes gives its place back to the address that made it.
    drop(held.remove(0));
    let from = Some(std::net::IpAddr::from([127, 0, 2, 1]));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match VorsMember::try_join(
            relay.vors,
            &relay.vors_pubkey,
            "hoarder",
            "hoard-1-new",
            "",
            from,
        ) {
            Ok(_) => break,
            Err(reason) => assert_eq!(reason, "too many rooms"),
        }
        assert!(
            Instant::now() < deadline,
            "the gone room's place never came back"
        );
        // Polling for the relay to notice the member left, with a deadline.
        thread::sleep(Duration::from_millis(20));
    }
}
