//! `moose-bench vors` against a real relay: full handshakes, a short run in rooms of 4 whose
//! every packet arrives whole and decrypts under its sender's key, and the relay forwarding
//! exactly what the bench sent. A wrong server key fails the handshake with a clear message.

use std::path::PathBuf;
use std::process::{Command, Output};

use moose_testkit::relay::Relay;
use serde_json::Value;

fn bench(args: &[&str]) -> Output {
    Command::new(moose_testkit::binary::moose_bench())
        .args(args)
        .output()
        .expect("run moose-bench")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs 8 VoRS streams in rooms of 4 against `relay` with `extra` flags, checks the run
/// succeeded, and returns its JSON, parsed and as text.
fn rooms_of_4(relay: &Relay, name: &str, extra: &[&str]) -> (Value, String) {
    rooms_of_4_at(relay, &relay.vors.to_string(), name, extra)
}

/// [`rooms_of_4`] with `--target TARGET`: one relay named as several.
fn rooms_of_4_at(relay: &Relay, target: &str, name: &str, extra: &[&str]) -> (Value, String) {
    let (out, json) = try_rooms_of_4(relay, target, name, extra);
    report(&out, &json)
}

/// The JSON report of a run that must have succeeded, parsed and as text.
fn report(out: &Output, json: &std::path::Path) -> (Value, String) {
    assert!(out.status.success(), "moose-bench failed:\n{}", stderr(out));
    let text = std::fs::read_to_string(json).expect("JSON written");
    let v: Value = serde_json::from_str(&text).expect("well-formed JSON");
    (v, text)
}

/// Runs 8 VoRS streams in rooms of 4 against `relay` with `extra` flags; returns how it
/// ended and where its JSON goes.
fn try_rooms_of_4(relay: &Relay, target: &str, name: &str, extra: &[&str]) -> (Output, PathBuf) {
    let json = std::env::temp_dir().join(format!("moose-bench-{name}-{}.json", std::process::id()));
    let args = [
        &[
            "vors",
            "--target",
            target,
            "--pubkey",
            &relay.vors_pubkey,
            "--streams",
            "8",
            "--room-size",
            "4",
            "--grace-ms",
            "500",
            "--json",
            json.to_str().expect("utf-8"),
        ][..],
        extra,
    ]
    .concat();
    (bench(&args), json)
}

#[test]
fn vors_streams_join_and_every_packet_arrives_whole() {
    let relay = Relay::start(&[], &[]);
    let (v, text) = rooms_of_4(
        &relay,
        "vors",
        &["--seconds", "2", "--threads", "2", "--idle-seconds", "0.2"],
    );
    let sent = v["sent"].as_u64().expect("sent");
    // 2 s of 20 ms frames: 100 per stream (101 for a stream whose phase lets one more in).
    assert!((800..=808).contains(&sent), "sent {sent}: {text}");
    assert_eq!(v["received"].as_u64(), Some(sent * 3), "{text}");
    assert_eq!(v["lost"].as_u64(), Some(0), "{text}");
    assert_eq!(v["corrupted"].as_u64(), Some(0), "{text}");
    assert_eq!(v["protocol"], "vors");
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(v["latency_us"][key].as_f64().is_some(), "latency_us.{key}");
    }
    // Found by its listening port, without --relay-pid.
    assert!(v["relay_cpu_ns_per_message"].is_number(), "{text}");
    // And its memory, before the members and with all 8 idle.
    let memory = &v["relay_memory_kib"];
    let (before, idle) = (memory["before"].as_u64(), memory["idle"].as_u64());
    assert!(before.is_some_and(|b| b > 0), "{text}");
    assert!(idle.is_some_and(|i| i > 0), "{text}");
    assert!(memory["per_stream"].is_number(), "{text}");

    // Every member joined with a full handshake, and the relay forwarded exactly the
    // packets the bench counted as sent, dropping none at the edge.
    assert_eq!(relay.metric("moose_vors_joins_total"), 8);
    assert_eq!(relay.metric("moose_vors_packets_forwarded_total"), sent);
    let edge_drops: u64 = [
        "malformed",
        "unknown_sid",
        "unknown_source",
        "bad_tag",
        "replayed",
    ]
    .iter()
    .map(|r| relay.metric(&format!("moose_vors_dropped_total{{reason=\"{r}\"}}")))
    .sum();
    assert_eq!(edge_drops, 0);
}

#[test]
fn a_wrong_server_key_fails_the_handshake() {
    let relay = Relay::start(&[], &[]);
    let target = relay.vors.to_string();
    let wrong = "11".repeat(32);
    let out = bench(&[
        "vors",
        "--target",
        &target,
        "--pubkey",
        &wrong,
        "--seconds",
        "0.5",
        "--quiet",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("stream ") && err.contains("--pubkey"), "{err}");
}

#[test]
fn the_baseline_carries_the_same_packets_side_by_side() {
    let relay = Relay::start(&[], &[]);
    let (v, text) = rooms_of_4(
        &relay,
        "vors-baseline",
        &["--seconds", "1", "--baseline", "--baseline-cores", "2"],
    );
    let base = &v["baseline"];
    let sent = base["sent"].as_u64().expect("baseline sent");
    assert!(sent >= 400, "8 streams for 1 s: {text}");
    // Rooms of 4: each packet reaches the 3 others through the static fan-out table.
    assert_eq!(base["received"].as_u64(), Some(sent * 3), "{text}");
    assert_eq!(base["lost"].as_u64(), Some(0), "{text}");
    assert_eq!(base["corrupted"].as_u64(), Some(0), "{text}");
    assert!(v["ratio"]["p99"].as_f64().is_some(), "{text}");
}

/// `--bind` spreads the streams over source addresses, TCP and UDP alike: 8 streams from 4
/// addresses fit a relay that lets each address hold 2 connections, and the same 8 from one
/// address do not.
#[test]
fn bound_streams_come_from_their_addresses() {
    let relay = Relay::start(&["--max-connections-per-address", "2"], &[]);
    let (v, text) = rooms_of_4(
        &relay,
        "vors-bind",
        &[
            "--seconds",
            "1",
            "--bind",
            "127.0.0.7,127.0.0.8,127.0.0.9,127.0.0.10",
        ],
    );
    let sent = v["sent"].as_u64().expect("sent");
    assert_eq!(v["received"].as_u64(), Some(sent * 3), "{text}");
    // Media from another IP than the member's TCP connection would be dropped here.
    assert_eq!(
        relay.metric("moose_vors_dropped_total{reason=\"wrong_address\"}"),
        0
    );
    assert_eq!(relay.metric("moose_vors_joins_total"), 8);

    let (unbound, _) = try_rooms_of_4(
        &relay,
        &relay.vors.to_string(),
        "vors-unbound",
        &["--seconds", "0.5", "--setup-timeout", "10", "--quiet"],
    );
    assert!(
        !unbound.status.success(),
        "8 streams from 127.0.0.1 passed a limit of 2"
    );
}

/// `--target A,A`: rooms spread over two targets that are one relay. The report splits the
/// deliveries, and since sender and receiver always joined the same address, every one is
/// same-relay and none cross-relay. One key serves both targets; a key count that fits
/// neither one for all nor one each is refused before any connection.
#[test]
fn one_relay_named_twice_delivers_everything_same_relay() {
    let relay = Relay::start(&[], &[]);
    let twice = format!("{0},{0}", relay.vors);
    let (v, text) = rooms_of_4_at(&relay, &twice, "vors-twice", &["--seconds", "1"]);
    let sent = v["sent"].as_u64().expect("sent");
    assert_eq!(v["received"].as_u64(), Some(sent * 3), "{text}");
    let (same, cross) = (&v["same_relay"], &v["cross_relay"]);
    assert_eq!(same["received"].as_u64(), Some(sent * 3), "{text}");
    assert_eq!(same["lost"].as_u64(), Some(0), "{text}");
    assert!(
        same["latency_us"]["p99"].as_f64().is_some_and(|p| p > 0.0),
        "{text}"
    );
    assert_eq!(cross["received"].as_u64(), Some(0), "{text}");
    assert_eq!(cross["lost"].as_u64(), Some(0), "{text}");
    assert_eq!(relay.metric("moose_vors_joins_total"), 8);

    let three_keys = [relay.vors_pubkey.as_str(); 3].join(",");
    let out = bench(&["vors", "--target", &twice, "--pubkey", &three_keys]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("3 keys for 2 targets"),
        "{}",
        stderr(&out)
    );
}

/// `--target A,B --place rooms` against two relays that are not a cluster: each room joins one
/// relay whole (room 0 on A, room 1 on B), so every packet reaches its room mates, all
/// same-relay, and each relay sees one room's joins. Spread by members instead, every room
/// would be split between two relays that do not know each other, and lose deliveries.
#[test]
fn whole_rooms_go_round_the_relays() {
    let (a, b) = (Relay::start(&[], &[]), Relay::start(&[], &[]));
    let json = std::env::temp_dir().join(format!("moose-bench-whole-{}.json", std::process::id()));
    let out = bench(&[
        "vors",
        "--target",
        &format!("{},{}", a.vors, b.vors),
        "--pubkey",
        &format!("{},{}", a.vors_pubkey, b.vors_pubkey),
        "--place",
        "rooms",
        "--streams",
        "8",
        "--room-size",
        "4",
        "--seconds",
        "1",
        "--grace-ms",
        "500",
        "--json",
        json.to_str().expect("utf-8"),
    ]);
    let (v, text) = report(&out, &json);
    let sent = v["sent"].as_u64().expect("sent");
    assert!(sent > 0, "{text}");
    assert_eq!(v["received"].as_u64(), Some(sent * 3), "{text}");
    assert_eq!(
        v["same_relay"]["received"].as_u64(),
        Some(sent * 3),
        "{text}"
    );
    assert_eq!(v["cross_relay"]["received"].as_u64(), Some(0), "{text}");
    assert_eq!(a.metric("moose_vors_joins_total"), 4);
    assert_eq!(b.metric("moose_vors_joins_total"), 4);
}
