//! Floods against the VoRS port while a real call goes on: forged datagrams at a high rate,
//! and stalled or half-finished handshakes holding TCP connections open. Each attacker uses
//! its own loopback address (127.0.0.2 and up); the call is on 127.0.0.1. Every flood is
//! bounded in count and time. The call keeps every packet and its tone, forgeries are
//! dropped and counted, and the stalled connections are closed and their descriptors freed.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use moose_testkit::call::tone_call;
use moose_testkit::http::http_get;
use moose_testkit::metrics::{Metrics, OnPanic};
use moose_testkit::relay::{PER_CLIENT_LIMITS_OFF, Relay};
use moose_testkit::rng::Rng;
use moose_testkit::temp::temp_dir;
use moose_testkit::tone::{assert_tone, tone_wav};
use socket2::{Domain, Protocol, Socket, Type};

const TONE_HZ: f64 = 440.0;
/// Forged datagrams sent per millisecond at most: a 64 000 packet/s flood.
const FLOOD_BATCH: usize = 64;
/// The flood's bound, whatever happens to the call.
const FLOOD_MAX: u64 = 400_000;

/// Sends random datagrams of 1 to 200 bytes (every first byte, so every core's lane) from
/// 127.0.0.2 to `to`, `FLOOD_BATCH` a millisecond, until `stop` or `FLOOD_MAX`. Returns how
/// many were sent.
fn flood(to: SocketAddr, stop: Arc<AtomicBool>, mut rng: Rng) -> u64 {
    let socket = UdpSocket::bind("127.0.0.2:0").expect("bind the flooder");
    let mut sent = 0;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) && sent < FLOOD_MAX {
        for _ in 0..FLOOD_BATCH {
            let len = 1 + rng.below(200) as usize;
            if socket.send_to(&rng.bytes(len), to).is_ok() {
                sent += 1;
            }
        }
        // Pacing the flood's rate, not a wait for an event.
        next += Duration::from_millis(1);
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    sent
}

#[test]
fn forged_flood_during_call() {
    let relay = Relay::start(&["--cores", "2"], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let dir = temp_dir("flood");
    let rec = dir.join("rec");
    let tone = tone_wav(&dir, TONE_HZ, 3.0);
    let before = Metrics::read(&relay);

    let stop = Arc::new(AtomicBool::new(false));
    let flooder = thread::spawn({
        let (vors, stop, rng) = (relay.vors, Arc::clone(&stop), Rng::from_clock());
        move || flood(vors, stop, rng)
    });
    let (alice, bob) = tone_call(&relay, relay.vors, "flooded", &tone, 3, &rec);
    stop.store(true, Ordering::Relaxed);
    let forged = flooder.join().expect("flooder");
    eprintln!("{forged} forged datagrams sent during the call");
    assert!(forged > 10_000, "the flood barely ran: {forged}");

    let sent = alice.summary().sent;
    assert_eq!(sent, 150, "3 s of steady tone:\n{}", alice.stderr);
    let heard = bob.summary();
    assert_eq!(
        (heard.received, heard.lost),
        (sent, 0),
        "bob lost audio to the flood: {heard:?}"
    );
    assert_tone(&rec.join("alice.wav"), TONE_HZ, 2.8, 2.5);

    let after = Metrics::read(&relay);
    let forwarded = after.get("moose_vors_packets_forwarded_total")
        - before.get("moose_vors_packets_forwarded_total");
    assert_eq!(forwarded, sent, "only alice's packets were forwarded");
    let dropped = after.sum("moose_vors_dropped_total") - before.sum("moose_vors_dropped_total");
    // Every forgery that reached the relay was dropped and counted; the kernel may have
    // dropped a few more on a busy machine before the relay saw them.
    assert!(
        dropped <= forged + 20 && dropped * 10 >= forged * 9,
        "{dropped} counted of {forged} forged:\n{}",
        after.vors()
    );
    assert_eq!(http_get(relay.admin, "/readyz").0, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket
        .bind(&SocketAddr::new(IpAddr::V4(from), 0).into())
        .expect("bind the attacker");
    socket.connect(&to.into()).expect("connect");
    socket.into()
}

#[test]
fn stalled_handshakes_during_call() {
    const EACH: usize = 50;
    // All 150 from one address, held to their deadline: the per-address limits (tested in
    // relay/tests/vors_handshakes_are_limited.rs) would close most of them at once.
    let relay = Relay::start(
        &[&["--cores", "2"][..], &PER_CLIENT_LIMITS_OFF].concat(),
        &[],
    );
    let _metrics_on_failure = OnPanic(&relay);
    let baseline_fds = relay.open_fds();
    let attacker = Ipv4Addr::new(127, 0, 0, 3);
    let started = Instant::now();
    // Three ways to stall: nothing at all, the magic only, the magic and part of a
    // handshake message (a netstring announcing 1 600 bytes, 100 of them sent).
    let mut partial = b"VoRS v41600:".to_vec();
    partial.extend(Rng::from_clock().bytes(100));
    let mut stalled: Vec<Option<TcpStream>> = [&b""[..], b"VoRS v4", &partial]
        .iter()
        .flat_map(|bytes| {
            (0..EACH).map(move |_| {
                let mut s = connect_from(attacker, relay.vors);
                s.write_all(bytes).expect("write the stall");
                s.set_nonblocking(true).expect("nonblocking");
                Some(s)
            })
        })
        .collect();
    let opened = stalled.len();

    // While all of them hang on: a whole call, from join to leave, keeps every packet.
    let dir = temp_dir("stalled");
    let rec = dir.join("rec");
    let tone = tone_wav(&dir, TONE_HZ, 2.0);
    let (alice, bob) = tone_call(&relay, relay.vors, "unbothered", &tone, 2, &rec);
    let sent = alice.summary().sent;
    assert_eq!(sent, 100, "2 s of steady tone:\n{}", alice.stderr);
    assert_eq!(bob.summary().received, sent, "bob: {:?}", bob.summary());
    assert_tone(&rec.join("alice.wav"), TONE_HZ, 1.9, 1.7);

    // The relay closes each stalled handshake at its stage's deadline: 2 s after connecting
    // for the magic, 4 s for message 1.
    while stalled.iter().any(Option::is_some) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} of {opened} stalled handshakes still open after 20 s",
            stalled.iter().flatten().count()
        );
        for conn in &mut stalled {
            let Some(s) = conn else { continue };
            let mut buf = [0u8; 64];
            match s.read(&mut buf) {
                Ok(0) => *conn = None,
                Ok(n) => panic!("a stalled handshake got {:?}", &buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => *conn = None,
            }
        }
        // Polling the sockets' state with a deadline.
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        started.elapsed() >= Duration::from_millis(3_900),
        "stalled handshakes closed before their deadline"
    );
    let closed_at = |stage: &str| {
        relay.metric(&format!(
            "moose_vors_handshake_deadlines_total{{stage=\"{stage}\"}}"
        ))
    };
    assert_eq!(closed_at("magic"), EACH as u64, "the silent ones");
    assert_eq!(closed_at("message_1"), 2 * EACH as u64, "the others");
    // Their descriptors are back: the relay holds what it held before the attack.
    wait_fds(&relay, "descriptors back to the baseline", |fds| {
        fds <= baseline_fds
    });
    assert_eq!(http_get(relay.admin, "/readyz").0, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn abandoned_handshakes_are_freed_at_once() {
    const CLIENTS: usize = 100;
    let relay = Relay::start(
        &[&["--cores", "2"][..], &PER_CLIENT_LIMITS_OFF].concat(),
        &[],
    );
    let _metrics_on_failure = OnPanic(&relay);
    let baseline_fds = relay.open_fds();
    let attacker = Ipv4Addr::new(127, 0, 0, 5);
    let mut partial = b"VoRS v41600:".to_vec();
    partial.extend(Rng::from_clock().bytes(100));
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut s = connect_from(attacker, relay.vors);
            s.write_all(&partial).expect("write half a handshake");
            s
        })
        .collect();
    wait_fds(&relay, "the relay to hold the half handshakes", |fds| {
        fds >= baseline_fds + CLIENTS
    });
    // Killed clients: half their kernels close (FIN), half reset.
    let started = Instant::now();
    for (i, s) in clients.into_iter().enumerate() {
        if i % 2 == 1 {
            Socket::from(s)
                .set_linger(Some(Duration::ZERO))
                .expect("linger 0");
        }
    }
    wait_fds(&relay, "descriptors back to the baseline", |fds| {
        fds <= baseline_fds
    });
    // Freed when the connections went, not at the 4 s message 1 deadline.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "freed only after {:?}",
        started.elapsed()
    );
}

/// Polls the relay's descriptor count until `done` holds, for at most 10 s.
fn wait_fds(relay: &Relay, what: &str, done: impl Fn(usize) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(relay.open_fds()) {
        assert!(
            Instant::now() < deadline,
            "{what}: {} descriptors open",
            relay.open_fds()
        );
        thread::sleep(Duration::from_millis(20));
    }
}
