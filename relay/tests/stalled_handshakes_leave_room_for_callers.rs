//! Stalled VoRS handshakes do not keep callers out. A thousand connections from 64 addresses
//! send the magic and then nothing; they fill every core's handshake table, and an honest
//! caller from another address still joins within 2 s: the oldest stalled handshake on its
//! core is closed to make room (counted), and the stalled ones are closed at their stage
//! deadline (2 s for the magic, 4 s for message 1) instead of the protocol's 10 s.
#![allow(clippy::unwrap_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use moose_testkit::metrics::OnPanic;
use moose_testkit::relay::Relay;
use moose_testkit::vors_member::VorsMember;
use socket2::{Domain, Protocol, Socket, Type};

const STALLED: usize = 1_000;
const ADDRESSES: usize = 64;

/// A connection from `from` that sends the magic and stops.
fn stall(from: Ipv4Addr, relay: SocketAddr) -> Option<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket
        .bind(&SocketAddr::new(IpAddr::V4(from), 0).into())
        .unwrap();
    socket.connect(&relay.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    // The relay may have closed it already; that is what is counted.
    let _ = stream.write_all(b"VoRS v4");
    stream.set_nonblocking(true).unwrap();
    Some(stream)
}

/// Forgets the connections the relay has closed; how many are left open.
fn still_open(conns: &mut [Option<TcpStream>]) -> usize {
    for conn in conns.iter_mut() {
        let Some(stream) = conn else { continue };
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(0) => *conn = None,
            Ok(n) => panic!("a stalled handshake got {:?}", &buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => *conn = None,
        }
    }
    conns.iter().flatten().count()
}

#[test]
fn a_caller_joins_past_a_thousand_stalled_handshakes() {
    // Every stalled connection is one its address may hold (64 × 16 ≥ 1 000): only the
    // cores' tables (`--max-handshakes`, 256 each) are in the way.
    let relay = Relay::start(&["--cores", "2", "--max-handshakes-per-address", "16"], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let baseline_fds = relay.open_fds();
    let mut conns: Vec<Option<TcpStream>> = (0..STALLED)
        .map(|i| {
            let host = u8::try_from(1 + i % ADDRESSES).unwrap();
            stall(Ipv4Addr::new(127, 0, 1, host), relay.vors)
        })
        .collect();
    let stalled_at = Instant::now();
    // The relay has taken every one of them: each is either closed or holds a descriptor.
    let deadline = stalled_at + Duration::from_secs(2);
    loop {
        let open = still_open(&mut conns);
        let held = relay.open_fds().saturating_sub(baseline_fds);
        if (STALLED - open) + held >= STALLED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay took {} of {STALLED} connections",
            STALLED - open + held
        );
        // Polling the sockets and the relay's descriptors with a deadline.
        thread::sleep(Duration::from_millis(20));
    }

    let started = Instant::now();
    let mut alice = VorsMember::try_join(
        relay.vors,
        &relay.vors_pubkey,
        "alice",
        "past-the-stall",
        "",
        None,
    )
    .expect("alice joins");
    let joined_in = started.elapsed();
    assert!(
        joined_in < Duration::from_secs(2),
        "alice joined after {joined_in:?}"
    );
    let bob = VorsMember::join(relay.vors, &relay.vors_pubkey, "bob", "past-the-stall");
    alice.run_until(Duration::from_secs(2), "bob's ADD", |m| m.peers() == 1);

    // The cores held 256 each and closed the oldest for every newer one.
    let evicted = relay.metric("moose_vors_handshakes_evicted_total");
    assert!(
        evicted >= (STALLED - 2 * 256) as u64,
        "{evicted} stalled handshakes evicted"
    );
    assert_eq!(
        relay.metric_sum("moose_vors_handshakes_refused_total"),
        0,
        "nobody was refused"
    );
    // The rest are closed at message 1's deadline, 4 s after they connected.
    let deadline = stalled_at + Duration::from_secs(6);
    while still_open(&mut conns) > 0 {
        assert!(
            Instant::now() < deadline,
            "{} stalled handshakes open 6 s after connecting",
            conns.iter().flatten().count()
        );
        // Polling the sockets' state with a deadline.
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        relay.metric("moose_vors_handshake_deadlines_total{stage=\"magic\"}"),
        0,
        "they sent the magic: their deadline is message 1's"
    );
    assert!(relay.metric("moose_vors_handshake_deadlines_total{stage=\"message_1\"}") > 0);
    drop(bob);
}
