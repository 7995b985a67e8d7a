//! Half-open VoRS handshakes beyond the handshake limits are closed before any Noise work:
//! too many at once from one address, too many started per minute from one address (each
//! refused and counted by reason), and too many waiting on one core (the oldest evicted and
//! counted). An honest member still joins.
#![allow(clippy::unwrap_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use moose_testkit::relay::Relay;
use moose_testkit::vors_member::VorsMember;
use socket2::{Domain, Protocol, Socket, Type};

/// The magic and the start of a message 1 netstring that never finishes.
const HALF_HELLO: &[u8] = b"VoRS v41600:0123456789";

/// A half-open handshake from `from`: the magic and part of message 1, then nothing.
fn half_open(from: Ipv4Addr, relay: &Relay) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket
        .bind(&SocketAddr::new(IpAddr::V4(from), 0).into())
        .unwrap();
    socket
        .connect_timeout(&relay.vors.into(), Duration::from_secs(5))
        .unwrap();
    let mut stream: TcpStream = socket.into();
    // The write may fail if the relay has closed it already; that is what is measured.
    let _ = stream.write_all(HALF_HELLO);
    stream.set_nonblocking(true).unwrap();
    stream
}

/// Whether the relay closed `stream` (EOF or reset); it must never answer a half hello.
fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => panic!("a half-open handshake got {:?}", &buf[..n]),
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// Waits up to 2 s for exactly `refused` of `conns` to be closed, then checks the rest stay
/// open for a while (they wait for their message 1, 4 s after connecting).
fn expect_closed_at_once(conns: &mut [TcpStream], refused: usize) {
    let started = Instant::now();
    let mut open = vec![true; conns.len()];
    loop {
        for (conn, open) in conns.iter_mut().zip(open.iter_mut()) {
            if *open && closed(conn) {
                *open = false;
            }
        }
        let gone = open.iter().filter(|o| !**o).count();
        assert!(gone <= refused, "{gone} closed, expected {refused}");
        if gone == refused {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "only {gone} of {refused} closed after 2 s"
        );
        // Polling the sockets' state with a deadline.
        thread::sleep(Duration::from_millis(10));
    }
    let quiet_until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < quiet_until {
        for (conn, open) in conns.iter_mut().zip(&open) {
            assert!(
                !*open || !closed(conn),
                "a handshake within the limits was closed"
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn honest_member_joins(relay: &Relay, room: &str) {
    let mut alice = VorsMember::join(relay.vors, &relay.vors_pubkey, "alice", room);
    let bob = VorsMember::join(relay.vors, &relay.vors_pubkey, "bob", room);
    alice.run_until(Duration::from_secs(5), "bob's ADD", |m| m.peers() == 1);
    drop(bob);
}

#[test]
fn half_open_handshakes_per_address_are_limited() {
    const PER_ADDRESS: usize = 8;
    const OVER: usize = 10;
    let relay = Relay::start(&[], &[]);
    let attacker = Ipv4Addr::new(127, 0, 0, 7);
    let mut conns: Vec<TcpStream> = (0..PER_ADDRESS + OVER)
        .map(|_| half_open(attacker, &relay))
        .collect();
    expect_closed_at_once(&mut conns, OVER);
    assert_eq!(
        relay.metric("moose_vors_handshakes_refused_total{reason=\"per_address\"}"),
        OVER as u64
    );
    // Refused before the session: none of them counts as a failed handshake yet.
    assert_eq!(relay.metric("moose_vors_handshake_failures_total"), 0);
    // While the attacker holds its 8: honest members from 127.0.0.1 join and meet.
    honest_member_joins(&relay, "per-address");
    // A second attacker address has its own allowance.
    let mut other = half_open(Ipv4Addr::new(127, 0, 0, 8), &relay);
    thread::sleep(Duration::from_millis(100));
    assert!(!closed(&mut other), "another address was refused");
}

#[test]
fn a_full_core_evicts_its_oldest_waiting_handshake() {
    let relay = Relay::start(
        &[
            "--cores",
            "1",
            "--max-handshakes",
            "4",
            "--max-handshakes-per-address",
            "0",
        ],
        &[],
    );
    // From four addresses, so only the core's own limit applies. One at a time: the relay
    // must see them in this order.
    let mut conns: Vec<TcpStream> = Vec::new();
    for i in 0..6 {
        conns.push(half_open(Ipv4Addr::new(127, 0, 1, 1 + i % 4), &relay));
        let evicted = i.saturating_sub(3);
        wait_for_metric(
            &relay,
            "moose_vors_handshakes_evicted_total",
            evicted.into(),
        );
    }
    // The two oldest made room for the last two; the four newest wait on.
    expect_closed_at_once(&mut conns[..2], 2);
    expect_closed_at_once(&mut conns[2..], 0);
    assert_eq!(
        relay.metric_sum("moose_vors_handshakes_refused_total"),
        0,
        "nobody is refused for a full table"
    );
    // An honest member evicts the oldest stalled one in turn, and joins.
    honest_member_joins(&relay, "core-full");
    assert!(relay.metric("moose_vors_handshakes_evicted_total") >= 3);
}

/// Waits up to 2 s for a counter to reach `value`.
fn wait_for_metric(relay: &Relay, name: &str, value: u64) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while relay.metric(name) < value {
        assert!(Instant::now() < deadline, "{name} stays below {value}");
        // Polling the relay's counter with a deadline.
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn handshake_rate_per_address_is_limited() {
    const PER_MINUTE: usize = 5;
    const TRIES: usize = 30;
    let relay = Relay::start(
        &[
            "--handshakes-per-minute",
            &PER_MINUTE.to_string(),
            // Only the rate applies.
            "--max-handshakes-per-address",
            "0",
        ],
        &[],
    );
    let attacker = Ipv4Addr::new(127, 0, 0, 9);
    // The burst is 5 over every core together; one comes back every 12 s, longer than this.
    let mut conns: Vec<TcpStream> = (0..TRIES).map(|_| half_open(attacker, &relay)).collect();
    expect_closed_at_once(&mut conns, TRIES - PER_MINUTE);
    assert_eq!(
        relay.metric("moose_vors_handshakes_refused_total{reason=\"rate\"}"),
        (TRIES - PER_MINUTE) as u64
    );
    // The ones let in were started: closing them does not give their tokens back.
    drop(conns);
    let mut late = half_open(attacker, &relay);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !closed(&mut late) {
        assert!(
            Instant::now() < deadline,
            "a handshake past the rate was let in"
        );
        thread::sleep(Duration::from_millis(10));
    }
    // Full hellos from honest members on 127.0.0.1 spend their own address's tokens.
    honest_member_joins(&relay, "rate");
}
