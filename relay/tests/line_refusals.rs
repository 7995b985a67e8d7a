//! Every refusal of a Moose line is an HTTP status sent before the upgrade, never `101` and then
//! a close: a missing or malformed apikey (401), an unknown one (403), an origin off the
//! allowlist (403), a request that is not a valid WebSocket upgrade (426, 405), too many failed
//! attempts from one address (429, even with the right key) and a full line (503). Each refusal
//! moves its `moose_ws_dropped_total` reason.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use moose_testkit::relay::Relay;
use moose_testkit::ws::{Refused, WsClient, try_connect};

const KEY: &str = "refusal-key-0123456789";
/// Well-formed but not configured.
const UNKNOWN: &str = "unknown-key-0123456789";

const REFUSED_KEY: &str = "moose_ws_dropped_total{reason=\"refused_key\"}";
const RATE_LIMITED: &str = "moose_ws_dropped_total{reason=\"rate_limited\"}";
const LINE_FULL: &str = "moose_ws_dropped_total{reason=\"line_full\"}";

/// Upgrades to `/ws?<query>` expecting a refusal; returns it.
fn refused(addr: SocketAddr, query: &str, extra: &[(&str, &str)]) -> Refused {
    match try_connect(addr, query, extra) {
        Ok(_) => panic!("/ws?{query} was admitted"),
        Err(refusal) => {
            assert!(
                refusal.head.starts_with("HTTP/1.1 "),
                "not an HTTP response: {:?}",
                refusal.head
            );
            assert!(
                refusal
                    .head
                    .to_ascii_lowercase()
                    .contains("connection: close"),
                "{}",
                refusal.head
            );
            refusal
        }
    }
}

/// Sends `request` as is and reads the whole response (the relay closes after a refusal);
/// returns the status and the lower-cased head.
fn raw_request(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("the relay answers and closes");
    let response = String::from_utf8(response).unwrap();
    let (head, _) = response.split_once("\r\n\r\n").expect("a complete head");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, format!("{head}\r\n").to_ascii_lowercase())
}

/// `a` sends to `b`, then `b` to `a`; both hear exactly what the other sent.
fn exchange(a: &mut WsClient, b: &mut WsClient, tag: &str) {
    let there = format!("{tag}: there");
    a.send_binary(there.as_bytes());
    assert_eq!(b.recv().payload, there.as_bytes());
    let back = format!("{tag}: back");
    b.send_binary(back.as_bytes());
    assert_eq!(a.recv().payload, back.as_bytes());
}

#[test]
fn missing_malformed_and_unknown_keys_are_refused_before_the_upgrade() {
    let relay = Relay::start(&[], &[("APIKEY", KEY)]);
    let unknown = format!("apikey={UNKNOWN}");
    let cases: [(&str, u16, &str); 5] = [
        ("", 401, "apikey required"),
        ("other=1", 401, "apikey required"),
        // 15 characters: one short of the minimum.
        ("apikey=abcdefghijklmno", 401, "malformed apikey"),
        ("apikey=refusal.key-0123456789", 401, "malformed apikey"),
        (&unknown, 403, "unknown apikey"),
    ];
    for (query, status, body) in cases {
        let refusal = refused(relay.http, query, &[]);
        assert_eq!(refusal.status, status, "/ws?{query}: {}", refusal.head);
        assert_eq!(refusal.body, format!("{body}\n"), "/ws?{query}");
    }
    assert_eq!(relay.metric(REFUSED_KEY), 5);
    assert_eq!(relay.metric("moose_ws_upgrades_total"), 0);
    // The refusals spent no state: the right key still gets in (5 failures stay under the
    // default 10 per minute and core).
    let _peer = WsClient::connect(relay.http, KEY);
    assert_eq!(relay.metric("moose_ws_upgrades_total"), 1);
    assert_eq!(relay.metric(REFUSED_KEY), 5);
}

#[test]
fn requests_that_are_not_a_valid_upgrade_get_426_or_405() {
    let relay = Relay::start(&[], &[("APIKEY", KEY)]);
    let host = relay.http;
    let (status, head) = raw_request(
        host,
        &format!("GET /ws?apikey={KEY} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    );
    assert_eq!(status, 426, "plain GET /ws: {head}");
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nsec-websocket-version: 13\r\n"), "{head}");

    let (status, head) = raw_request(
        host,
        &format!(
            "GET /ws?apikey={KEY} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 8\r\n\r\n"
        ),
    );
    assert_eq!(status, 426, "version 8: {head}");
    assert!(head.contains("\r\nsec-websocket-version: 13\r\n"), "{head}");

    // The relay answers a non-GET upgrade with 405 and `Allow: GET` (RFC 6455 §4.2.1 rule 1).
    let (status, head) = raw_request(
        host,
        &format!(
            "POST /ws?apikey={KEY} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n"
        ),
    );
    assert_eq!(status, 405, "POST upgrade: {head}");
    assert!(head.contains("\r\nallow: get\r\n"), "{head}");

    // None of these got as far as the key, so none counts as a key failure.
    assert_eq!(relay.metric(REFUSED_KEY), 0);
    assert_eq!(relay.metric("moose_ws_upgrades_total"), 0);
}

#[test]
fn origin_allowlist_refuses_other_origins_and_admits_listed_or_absent() {
    let relay = Relay::start(
        &["--allowed-origin", "https://good.example"],
        &[("APIKEY", KEY)],
    );
    let query = format!("apikey={KEY}");
    let refusal = refused(relay.http, &query, &[("Origin", "https://evil.example")]);
    assert_eq!(refusal.status, 403, "{}", refusal.head);
    assert_eq!(refusal.body, "origin not allowed\n");
    let mut good = try_connect(relay.http, &query, &[("Origin", "https://good.example")])
        .unwrap_or_else(|r| panic!("listed origin refused with {}", r.status));
    let mut native = try_connect(relay.http, &query, &[])
        .unwrap_or_else(|r| panic!("request without Origin refused with {}", r.status));
    exchange(&mut good, &mut native, "origin");
    // An origin refusal says nothing about the key: it is not a key failure.
    assert_eq!(relay.metric(REFUSED_KEY), 0);
    assert_eq!(relay.metric("moose_ws_upgrades_total"), 2);
}

#[test]
fn repeated_failures_get_429_even_with_the_right_key() {
    // Two cores: the kernel spreads the attempts' connections over both by source port, and
    // every one of them must meet the same limit (a limiter per core would let an address make
    // up to twice the attempts: with 3 failures and then 8 more attempts, all of them on one
    // core has a chance of 1 in 2^10).
    let relay = Relay::start(
        &["--cores", "2", "--auth-failures-per-minute", "3"],
        &[("APIKEY", KEY)],
    );
    let wrong = format!("apikey={UNKNOWN}");
    for attempt in 1..=3 {
        let refusal = refused(relay.http, &wrong, &[]);
        assert_eq!(refusal.status, 403, "attempt {attempt}");
    }
    for attempt in 4..=11 {
        let refusal = refused(relay.http, &wrong, &[]);
        assert_eq!(refusal.status, 429, "wrong key {attempt}: {}", refusal.head);
        assert_eq!(refusal.body, "too many failed attempts\n");
    }
    // The limit is checked before the key, so it cannot tell a right key from a wrong one.
    let refusal = refused(relay.http, &format!("apikey={KEY}"), &[]);
    assert_eq!(
        refusal.status, 429,
        "right key while limited: {}",
        refusal.head
    );
    assert_eq!(relay.metric(REFUSED_KEY), 3);
    assert_eq!(relay.metric(RATE_LIMITED), 9);
    assert_eq!(relay.metric("moose_ws_upgrades_total"), 0);
}

#[test]
fn full_line_refuses_with_503_and_admits_again_after_a_leave() {
    let relay = Relay::start(&["--max-peers", "2"], &[("APIKEY", KEY)]);
    let query = format!("apikey={KEY}");
    let mut a = WsClient::connect(relay.http, KEY);
    let mut b = WsClient::connect(relay.http, KEY);
    exchange(&mut a, &mut b, "before");
    let refusal = refused(relay.http, &query, &[]);
    assert_eq!(refusal.status, 503, "third peer: {}", refusal.head);
    assert_eq!(refusal.body, "line is full\n");
    assert_eq!(relay.metric(LINE_FULL), 1);
    // The refusal did not disturb the two peers on the line.
    exchange(&mut a, &mut b, "after refusal");
    assert_eq!(relay.metric(REFUSED_KEY), 0);

    drop(a);
    // The relay notices the leave when it reads EOF; until then a newcomer still gets 503.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refusals = 0;
    let mut c = loop {
        match try_connect(relay.http, &query, &[]) {
            Ok(c) => break c,
            Err(refusal) => {
                assert_eq!(refusal.status, 503, "{}", refusal.head);
                refusals += 1;
                assert!(Instant::now() < deadline, "no room after a peer left");
                thread::sleep(Duration::from_millis(10));
            }
        }
    };
    exchange(&mut b, &mut c, "newcomer");
    assert_eq!(relay.metric(LINE_FULL), 1 + refusals);
    assert_eq!(relay.metric("moose_ws_upgrades_total"), 3);
}
