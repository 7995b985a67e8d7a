//! SIGTERM drains the relay: it stops accepting and turns not ready, lets the calls in progress
//! go on until they end or `--drain-seconds` passes, then exits 0; a second signal exits at
//! once with 128 + the signal (143 for SIGTERM).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use moose_proto::ws::{CloseCode, Opcode};
use moose_testkit::http::{http_get, wait_ready_status};
use moose_testkit::relay::Relay;
use moose_testkit::ws::WsClient;

const KEY: &str = "graceful-drain-key-0123456789";

/// A call in progress: two peers on one line that have exchanged a message.
fn call(relay: &Relay) -> (WsClient, WsClient) {
    let mut a = WsClient::connect(relay.http, KEY);
    let mut b = WsClient::connect(relay.http, KEY);
    exchange(&mut a, &mut b, 0);
    (a, b)
}

/// Each peer sends one message and receives the other's.
fn exchange(a: &mut WsClient, b: &mut WsClient, n: u8) {
    a.send_binary(&[n; 1024]);
    b.send_binary(&[!n; 1024]);
    assert_eq!(b.recv().payload, vec![n; 1024]);
    assert_eq!(a.recv().payload, vec![!n; 1024]);
}

/// True if a new connection to `addr` is refused, or closed without an answer.
fn new_connection_refused(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return true;
    };
    let request = format!(
        "GET /ws?apikey={KEY} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return true;
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    !matches!(stream.read(&mut byte), Ok(1))
}

/// Cores whose listeners are still open (`moose_accepting`).
fn accepting_cores(relay: &Relay) -> u64 {
    let text = relay.metrics();
    let samples: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("moose_accepting{"))
        .collect();
    assert_eq!(samples.len(), 2, "one sample per core:\n{text}");
    samples
        .iter()
        .map(|l| {
            l.rsplit_once(' ')
                .expect("value")
                .1
                .parse::<u64>()
                .expect("0 or 1")
        })
        .sum()
}

fn close(peer: &mut WsClient) {
    peer.send_frame(true, Opcode::Close, &1000u16.to_be_bytes());
    peer.expect_close(CloseCode::NORMAL);
}

#[test]
fn calls_finish_then_the_relay_exits_0() {
    let mut relay = Relay::start(&["--apikey", KEY, "--drain-seconds", "30"], &[]);
    assert_eq!(http_get(relay.admin, "/readyz").0, 200);
    assert_eq!(accepting_cores(&relay), 2);
    let (mut a, mut b) = call(&relay);
    let signalled = Instant::now();
    relay.signal("TERM");
    assert!(
        wait_ready_status(relay.admin, 503, Duration::from_secs(5)),
        "/readyz never turned 503"
    );
    assert_eq!(http_get(relay.admin, "/healthz").0, 200);
    assert_eq!(relay.metric("moose_draining"), 1);
    // Every core closes its listeners within its flag poll; then no new call gets in.
    let deadline = Instant::now() + Duration::from_secs(5);
    while accepting_cores(&relay) > 0 {
        assert!(Instant::now() < deadline, "listeners still open");
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..5 {
        assert!(new_connection_refused(relay.http), "a new line peer got in");
    }
    assert!(
        new_connection_refused(relay.vors),
        "VoRS TCP still accepting"
    );
    // The call goes on.
    for n in 1..20 {
        exchange(&mut a, &mut b, n);
    }
    assert!(
        relay.wait_exit(Duration::from_millis(300)).is_none(),
        "exited mid-call"
    );
    close(&mut a);
    close(&mut b);
    let status = relay
        .wait_exit(Duration::from_secs(10))
        .expect("the relay exits once the call ended");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "took {:?}, the drain limit is 30 s",
        signalled.elapsed()
    );
}

#[test]
fn the_drain_deadline_ends_calls_still_up() {
    let mut relay = Relay::start(&["--apikey", KEY, "--drain-seconds", "2"], &[]);
    let (mut a, mut b) = call(&relay);
    let signalled = Instant::now();
    relay.signal("TERM");
    assert!(wait_ready_status(relay.admin, 503, Duration::from_secs(5)));
    exchange(&mut a, &mut b, 1);
    let status = relay
        .wait_exit(Duration::from_secs(10))
        .expect("the relay exits at the drain deadline");
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        took >= Duration::from_secs(2),
        "exited after {took:?}, before the deadline"
    );
    assert!(took < Duration::from_secs(8), "exited after {took:?}");
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut relay = Relay::start(&["--apikey", KEY, "--drain-seconds", "60"], &[]);
    let (_a, _b) = call(&relay);
    relay.signal("TERM");
    assert!(wait_ready_status(relay.admin, 503, Duration::from_secs(5)));
    let second = Instant::now();
    relay.signal("TERM");
    let status = relay
        .wait_exit(Duration::from_secs(5))
        .expect("the second signal ends the relay");
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "{:?}",
        second.elapsed()
    );
}

#[test]
fn drain_seconds_0_exits_at_once() {
    let mut relay = Relay::start(&["--apikey", KEY, "--drain-seconds", "0"], &[]);
    let (_a, _b) = call(&relay);
    relay.signal("INT");
    let status = relay
        .wait_exit(Duration::from_secs(5))
        .expect("--drain-seconds 0 exits at once");
    assert_eq!(status.code(), Some(0), "{status:?}");
}
