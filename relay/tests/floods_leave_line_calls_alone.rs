//! Floods against the HTTP side while a line call goes on: upgrades with wrong keys,
//! slowloris request heads, and more idle connections than the relay has descriptors. Each
//! attacker uses its own loopback address (127.0.0.2 and up), as a remote attacker would
//! have its own; the honest peers are on 127.0.0.1. Every flood is bounded in count and
//! time. The call keeps every message in order, a new honest peer still gets in, and the
//! relay stays ready.
#![allow(clippy::unwrap_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use moose_proto::ws::Opcode;
use moose_testkit::http::http_get;
use moose_testkit::relay::Relay;
use moose_testkit::ws::{WsClient, upgrade_request};
use socket2::{Domain, Protocol, Socket, Type};

const KEY: &str = "flooded-line-key-0123456789";
const OTHER_KEY: &str = "another-line-key-0123456789";
/// The call runs at least this long (about a second), however short the flood.
const MIN_MESSAGES: u32 = 400;
/// A's last message, shorter than any numbered one.
const END: &[u8] = b"end";
/// The PCM stream's period: 512 samples at 200 kHz.
const PERIOD: Duration = Duration::from_micros(2560);

/// Peer A sends PCM-sized numbered messages at the PCM rate until stopped; peer B checks
/// that each arrives whole and in order.
struct HonestCall {
    stop: Arc<AtomicBool>,
    sender: JoinHandle<u32>,
    receiver: JoinHandle<Vec<u32>>,
}

impl HonestCall {
    fn start(relay: &Relay) -> HonestCall {
        let mut a = WsClient::connect(relay.http, KEY);
        let mut b = WsClient::connect(relay.http, KEY);
        let stop = Arc::new(AtomicBool::new(false));
        let sender = thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let mut seq = 0u32;
                let mut next = Instant::now();
                while seq < MIN_MESSAGES || !stop.load(Ordering::Relaxed) {
                    a.send_binary(&message(seq));
                    seq += 1;
                    // Pacing at the stream's rate, not a wait for an event.
                    next += PERIOD;
                    thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                a.send_binary(END);
                seq
            }
        });
        let receiver = thread::spawn(move || {
            let mut seen = Vec::new();
            while let Some(frame) = b.recv_within(Duration::from_secs(5)) {
                match frame.opcode {
                    Opcode::Binary if frame.payload == END => break,
                    Opcode::Binary => {
                        let seq = u32::from_be_bytes(frame.payload[..4].try_into().unwrap());
                        assert_eq!(frame.payload, message(seq), "message {seq} damaged");
                        seen.push(seq);
                    }
                    Opcode::Ping => b.send_frame(true, Opcode::Pong, &frame.payload),
                    _ => break,
                }
            }
            seen
        });
        HonestCall {
            stop,
            sender,
            receiver,
        }
    }

    /// Stops the sender and checks B got every message A sent, in order.
    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.sender.join().unwrap();
        let seen = self.receiver.join().unwrap();
        assert_eq!(seen.len() as u32, sent, "B lost messages during the flood");
        assert!(
            seen.iter().copied().eq(0..sent),
            "B's messages out of order"
        );
    }
}

fn message(seq: u32) -> Vec<u8> {
    let mut m: Vec<u8> = (0..1024)
        .map(|i| (i as u32).wrapping_mul(seq) as u8)
        .collect();
    m[..4].copy_from_slice(&seq.to_be_bytes());
    m
}

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SocketAddr::new(IpAddr::V4(from), 0).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    Ok(socket.into())
}

/// The status of an upgrade request for `key` sent from `from`.
fn upgrade_status(from: Ipv4Addr, relay: &Relay, key: &str) -> u16 {
    let mut stream = connect_from(from, relay.http).unwrap();
    let request = upgrade_request(relay.http, &format!("apikey={key}"), &[]);
    stream.write_all(request.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

fn assert_ready(relay: &Relay) {
    assert_eq!(http_get(relay.admin, "/readyz").0, 200, "relay not ready");
}

/// A new honest peer (from 127.0.0.1) joins another line and talks to a second one.
fn assert_new_line_works(relay: &Relay) {
    let mut c = WsClient::connect(relay.http, OTHER_KEY);
    let mut d = WsClient::connect(relay.http, OTHER_KEY);
    c.send_binary(b"still here");
    assert_eq!(d.recv().payload, b"still here");
}

#[test]
fn wrong_key_flood() {
    let relay = Relay::start(
        &["--auth-failures-per-minute", "10"],
        &[("APIKEY", &format!("{KEY},{OTHER_KEY}"))],
    );
    let call = HonestCall::start(&relay);
    let flooder = Ipv4Addr::new(127, 0, 0, 2);
    let mut refused = 0;
    let mut limited = 0;
    for i in 0..400 {
        match upgrade_status(flooder, &relay, &format!("guessing-key-{i:016}")) {
            401 | 403 => refused += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other} for a wrong key"),
        }
    }
    // Each core allows its own burst of 10 (the limiter is per core).
    assert!(refused <= 20, "{refused} wrong keys were looked at");
    assert_eq!(refused + limited, 400);
    // The flooder's address is now refused even with a right key: no probing by success.
    assert_eq!(upgrade_status(flooder, &relay, KEY), 429);
    assert_new_line_works(&relay);
    assert_ready(&relay);
    call.finish();
    assert_eq!(
        relay.metric("moose_ws_dropped_total{reason=\"rate_limited\"}"),
        limited + 1
    );
}

/// Whether the relay has closed a slow head (EOF, reset, or a refused write); a 408 answer
/// is fine, the close follows. Sends one more header byte otherwise.
fn slow_head_closed(s: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => s.write_all(b"a").is_err(),
        Err(_) => true,
    }
}

#[test]
fn slowloris_heads_time_out() {
    const SLOW: usize = 64;
    const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
    let relay = Relay::start(
        &["--header-timeout", "3"],
        &[("APIKEY", &format!("{KEY},{OTHER_KEY}"))],
    );
    let call = HonestCall::start(&relay);
    let attacker = Ipv4Addr::new(127, 0, 0, 3);
    let started = Instant::now();
    let mut slow: Vec<Option<TcpStream>> = (0..SLOW)
        .map(|_| {
            let mut s = connect_from(attacker, relay.http).unwrap();
            s.write_all(b"GET /ws?apikey=").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
            Some(s)
        })
        .collect();
    // One more header byte from each every 200 ms, until the relay closes them all at the
    // end of their --header-timeout.
    let mut checked_mid_flood = false;
    while slow.iter().any(Option::is_some) {
        assert!(
            started.elapsed() < HEADER_TIMEOUT + Duration::from_secs(5),
            "{} slow heads still open after {:?}",
            slow.iter().flatten().count(),
            started.elapsed()
        );
        for conn in &mut slow {
            if conn.as_mut().is_some_and(slow_head_closed) {
                *conn = None;
            }
        }
        if !checked_mid_flood && started.elapsed() > Duration::from_secs(1) {
            // While every slow head is still held open: honest newcomers get in.
            assert_eq!(slow.iter().flatten().count(), SLOW, "closed too early");
            assert_new_line_works(&relay);
            assert_ready(&relay);
            checked_mid_flood = true;
        }
        // Pacing the attacker's bytes, not a wait for an event.
        thread::sleep(Duration::from_millis(200));
    }
    assert!(
        started.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(200),
        "heads closed before their {HEADER_TIMEOUT:?}"
    );
    assert!(checked_mid_flood);
    assert_ready(&relay);
    call.finish();
}

#[test]
fn header_timeout_is_a_setting() {
    let relay = Relay::start(&["--header-timeout", "1"], &[("APIKEY", KEY)]);
    let mut s = connect_from(Ipv4Addr::new(127, 0, 0, 3), relay.http).unwrap();
    let started = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    while !slow_head_closed(&mut s) {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a slow head outlived --header-timeout 1"
        );
        // Pacing the attacker's bytes.
        thread::sleep(Duration::from_millis(50));
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed after {elapsed:?}"
    );
}

/// Open descriptors of a process.
/// The relay's "out of file descriptors" warnings among `lines`.
fn exhaustion_warnings(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|l| l.contains("out of file descriptors"))
        .count()
}

#[test]
fn descriptor_exhaustion_recovers() {
    let relay = Relay::start_capturing_stderr(
        // The attacker's many connections come from one address: this test is about
        // descriptors, not the per-address limit.
        &["--max-connections-per-address", "0"],
        &[("APIKEY", &format!("{KEY},{OTHER_KEY}"))],
    );
    let call = HonestCall::start(&relay);
    // Leave the relay 24 descriptors to spare, then open 200 idle connections.
    let limit = relay.open_fds() + 24;
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &relay.pid().to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .unwrap();
    assert!(status.success(), "prlimit failed");
    let attacker = Ipv4Addr::new(127, 0, 0, 4);
    let flood_started = Instant::now();
    let mut idle: Vec<TcpStream> = (0..200)
        .map(|_| connect_from(attacker, relay.http).unwrap())
        .collect();
    // The relay has run out of descriptors once its open count reaches the limit.
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay.open_fds() < limit {
        assert!(
            Instant::now() < deadline,
            "the relay never filled its table"
        );
        thread::sleep(Duration::from_millis(10));
    }
    // Connections it has no descriptor for are closed promptly, not left in the backlog;
    // spread over 2.5 s, during which the relay's accept loops fail a hundred times a second.
    for _ in 0..25 {
        // Pacing the attacker's connections.
        thread::sleep(Duration::from_millis(100));
        let mut late = connect_from(attacker, relay.http).unwrap();
        late.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut byte = [0u8; 1];
        match late.read(&mut byte) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("a connection past the limit was not closed within 2 s: {other:?}"),
        }
    }
    // Most of the 200 idle ones were shed too, rather than hanging.
    let mut shed = 0;
    for conn in &mut idle {
        conn.set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        let mut byte = [0u8; 1];
        match conn.read(&mut byte) {
            Ok(0) => shed += 1,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => shed += 1,
            _ => {}
        }
    }
    assert!(
        shed >= 150,
        "only {shed} of 200 idle connections were closed"
    );
    // The admin endpoint answers on its spare descriptor, and counts what was shed.
    assert_ready(&relay);
    let counted = relay.metric("moose_connections_refused_total{reason=\"no_descriptors\"}");
    assert!(counted >= 25 + 150, "{counted} connections counted as shed");
    // The call in progress is untouched by what the relay cannot accept.
    drop(idle);
    // Recovered: the idle connections' descriptors come back (closed by the attacker now,
    // or by the head timeout), and newcomers get in again.
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        if relay.open_fds() < limit - 8 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "descriptors not returned: {} open",
            relay.open_fds()
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_new_line_works(&relay);
    assert_ready(&relay);
    call.finish();
    // The warning came at most about once a second per core (2 cores), not every attempt.
    let warnings = exhaustion_warnings(&relay.stderr_lines());
    let seconds = flood_started.elapsed().as_secs() as usize + 1;
    assert!(warnings >= 1, "exhaustion was never logged");
    assert!(
        warnings <= 2 * (seconds + 1),
        "{warnings} warnings in {seconds} s"
    );
}
