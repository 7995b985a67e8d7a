//! One address opens more TCP connections than `--max-connections-per-address` allows, over
//! HTTP and VoRS together: the ones over the limit are closed at once (HTTP ones told 429),
//! the rest stay open, other addresses are untouched, and closing some frees their slots.
#![allow(clippy::unwrap_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use moose_testkit::relay::Relay;
use moose_testkit::ws::WsClient;
use socket2::{Domain, Protocol, Socket, Type};

const LIMIT: usize = 8;
const OVER: usize = 10;

fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket
        .bind(&SocketAddr::new(IpAddr::V4(from), 0).into())
        .unwrap();
    socket
        .connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap();
    let stream: TcpStream = socket.into();
    stream.set_nonblocking(true).unwrap();
    stream
}

/// Whether the relay has closed `stream` (EOF or reset), reading away anything it sent first
/// (a 429 answer); false while it is open and silent.
fn closed(stream: &mut TcpStream, seen: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// A `GET /` from `from`; its status, or `None` when the connection was closed without one.
fn get_from(from: Ipv4Addr, relay: &Relay) -> Option<u16> {
    let mut stream = connect_from(from, relay.http);
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn connections_per_address_are_limited() {
    let relay = Relay::start(
        &[
            "--open",
            "--max-connections-per-address",
            &LIMIT.to_string(),
            // Idle connections must outlive the test's own steps.
            "--header-timeout",
            "60",
        ],
        &[],
    );
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    // HTTP and VoRS share the count: a quarter of the connections go to the VoRS port (the
    // magic only, a handshake that waits for its message 1).
    let mut conns: Vec<TcpStream> = (0..LIMIT + OVER)
        .map(|i| {
            if i % 4 == 3 {
                let mut s = connect_from(attacker, relay.vors);
                s.write_all(b"VoRS v4").unwrap();
                s
            } else {
                connect_from(attacker, relay.http)
            }
        })
        .collect();
    let started = Instant::now();
    let mut seen: Vec<Vec<u8>> = vec![Vec::new(); conns.len()];
    let mut open = vec![true; conns.len()];
    // The ones over the limit are closed at once, not at some timeout.
    while open.iter().filter(|o| **o).count() > LIMIT {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{} of {} connections open after 2 s",
            open.iter().filter(|o| **o).count(),
            conns.len()
        );
        for (i, conn) in conns.iter_mut().enumerate() {
            if open[i] && closed(conn, &mut seen[i]) {
                open[i] = false;
            }
        }
        // Polling the sockets' state with a deadline.
        thread::sleep(Duration::from_millis(10));
    }
    for (i, bytes) in seen.iter().enumerate() {
        if !bytes.is_empty() {
            assert!(
                bytes.starts_with(b"HTTP/1.1 429 "),
                "connection {i} got {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
    assert!(
        seen.iter().any(|b| !b.is_empty()),
        "no refused HTTP connection was told 429"
    );
    assert_eq!(
        relay.metric("moose_connections_refused_total{reason=\"per_address\"}"),
        OVER as u64
    );
    // The others stay open: nothing more closes over a while.
    let quiet_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < quiet_until {
        for (i, conn) in conns.iter_mut().enumerate() {
            assert!(
                !open[i] || !closed(conn, &mut seen[i]),
                "connection {i} within the limit was closed"
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    // Another address is not affected.
    let mut a = WsClient::connect(relay.http, "per-address-line-0123456789");
    let mut b = WsClient::connect(relay.http, "per-address-line-0123456789");
    a.send_binary(b"still served");
    assert_eq!(b.recv().payload, b"still served");
    // The attacker's address has no slot left...
    assert_eq!(get_from(attacker, &relay), Some(429));
    // ...until it closes some: the relay sees them go and the slots come back.
    let mut kept: Vec<TcpStream> = Vec::new();
    for (conn, was_open) in conns.into_iter().zip(&open) {
        if *was_open && kept.len() < LIMIT - 3 {
            kept.push(conn);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match get_from(attacker, &relay) {
            Some(200) => break,
            Some(429) | None => {}
            Some(other) => panic!("GET / answered {other}"),
        }
        assert!(Instant::now() < deadline, "freed slots never came back");
        // Polling for the relay to notice the closed connections, with a deadline.
        thread::sleep(Duration::from_millis(20));
    }
    drop(kept);
}
