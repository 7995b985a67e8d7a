//! `--log-format json`: every stderr line is a JSON object; a refused apikey is logged without
//! the key; peer addresses appear at info level only with `--log-peer-addresses`.

use std::time::Duration;

use moose_testkit::relay::Relay;
use moose_testkit::ws::{WsClient, try_connect};

const KEY: &str = "logs-json-line-key-0123456789";
const WRONG_KEY: &str = "logs-json-wrong-key-0123456789";

/// Runs a refused attempt and a joined peer, stops the relay with SIGTERM and returns its
/// stderr lines and the joined peer's address as the relay saw it.
fn session(extra: &[&str]) -> (Vec<String>, String) {
    let mut args = vec!["--apikey", KEY, "--log-format", "json"];
    args.extend_from_slice(extra);
    let mut relay = Relay::start_capturing_stderr(&args, &[("RUST_LOG", "info")]);
    let refused = try_connect(relay.http, &format!("apikey={WRONG_KEY}"), &[])
        .expect_err("an unknown key is refused");
    assert_eq!(refused.status, 403);
    let peer = WsClient::connect(relay.http, KEY);
    let joined_from = peer.stream.local_addr().expect("addr").to_string();
    drop(peer);
    relay.signal("TERM");
    let status = relay
        .wait_exit(Duration::from_secs(10))
        .expect("the relay exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
    (
        relay.stderr_until_closed(Duration::from_secs(5)),
        joined_from,
    )
}

fn events(lines: &[String]) -> Vec<serde_json::Map<String, serde_json::Value>> {
    assert!(!lines.is_empty(), "nothing logged");
    lines
        .iter()
        .map(
            |line| match serde_json::from_str::<serde_json::Value>(line) {
                Ok(serde_json::Value::Object(map)) => map,
                other => panic!("not a JSON object: {line:?} ({other:?})"),
            },
        )
        .collect()
}

fn message(event: &serde_json::Map<String, serde_json::Value>) -> &str {
    event
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
}

#[test]
fn json_lines_without_keys_or_addresses() {
    let (lines, joined_from) = session(&[]);
    let events = events(&lines);
    let all = lines.join("\n");
    assert!(!all.contains(KEY), "the line key was logged");
    assert!(!all.contains(WRONG_KEY), "the refused key was logged");
    let refused = events
        .iter()
        .find(|e| message(e) == "line refused")
        .unwrap_or_else(|| panic!("no refusal logged:\n{all}"));
    assert_eq!(refused.get("status").and_then(|s| s.as_u64()), Some(403));
    assert!(refused.get("peer").is_none(), "{refused:?}");
    let joined = events
        .iter()
        .find(|e| message(e) == "peer joined line")
        .unwrap_or_else(|| panic!("no join logged:\n{all}"));
    assert!(joined.get("peer").is_none(), "{joined:?}");
    assert!(
        !all.contains(&joined_from),
        "a peer address was logged:\n{all}"
    );
    for event in &events {
        assert!(event.contains_key("level") && event.contains_key("timestamp"));
    }
    assert!(
        events.iter().any(|e| message(e).starts_with("draining")),
        "no drain start logged:\n{all}"
    );
    assert!(
        events.iter().any(|e| message(e).starts_with("drained")),
        "no drain end logged:\n{all}"
    );
}

#[test]
fn peer_addresses_when_asked() {
    let (lines, joined_from) = session(&["--log-peer-addresses"]);
    let events = events(&lines);
    let all = lines.join("\n");
    assert!(!all.contains(KEY) && !all.contains(WRONG_KEY));
    let refused = events
        .iter()
        .find(|e| message(e) == "line refused")
        .unwrap_or_else(|| panic!("no refusal logged:\n{all}"));
    let peer = refused
        .get("peer")
        .and_then(|p| p.as_str())
        .unwrap_or_else(|| panic!("no peer address: {refused:?}"));
    assert!(peer.starts_with("127.0.0.1:"), "{peer}");
    assert!(
        all.contains(&joined_from),
        "the joined peer's address is missing:\n{all}"
    );
}
