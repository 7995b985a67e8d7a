//! `moose-bench ws` against a real relay: a short run whose every message arrives whole, the
//! JSON it writes, and the ways a server can refuse it (wrong apikey, Origin not allowed,
//! nothing listening), each a non-zero exit that names the reason; a ramp, the baseline
//! beside it, and both ramped side by side.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use moose_testkit::relay::Relay;
use serde_json::Value;

/// 2 s of sending at 390.625 messages/s: each stream sends 781 or 782 (by its phase).
const SECONDS: &str = "2";
const PER_STREAM: [u64; 2] = [781, 782];

fn bench(args: &[&str]) -> Output {
    Command::new(moose_testkit::binary::moose_bench())
        .args(args)
        .output()
        .expect("run moose-bench")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Checks that a run writing `json` succeeded, and returns the JSON, parsed and as text.
fn succeeded(out: &Output, json: &Path) -> (Value, String) {
    assert!(out.status.success(), "moose-bench failed:\n{}", stderr(out));
    let text = std::fs::read_to_string(json).expect("JSON written");
    let v: Value = serde_json::from_str(&text).expect("well-formed JSON");
    (v, text)
}

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moose-bench-ws-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

#[test]
fn pcm_streams_through_an_open_relay_arrive_whole() {
    let relay = Relay::start(&["--open"], &[]);
    let json = temp_file("smoke.json");
    let plot = temp_file("smoke.svg");
    let target = relay.http.to_string();
    let pid = relay.pid().to_string();
    let out = bench(&[
        "ws",
        "--target",
        &target,
        "--streams",
        "6",
        "--room-size",
        "3",
        "--seconds",
        SECONDS,
        "--threads",
        "2",
        "--grace-ms",
        "500",
        "--relay-pid",
        &pid,
        "--json",
        json.to_str().expect("utf-8"),
        "--plot",
        plot.to_str().expect("utf-8"),
    ]);
    let (v, text) = succeeded(&out, &json);
    for key in [
        "sent",
        "received",
        "lost",
        "corrupted",
        "streams",
        "protocol",
        "room_size",
        "seconds",
        "relay_cpu_ns_per_message",
    ] {
        assert!(v.get(key).is_some(), "no {key} in {text}");
    }
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(v["latency_us"][key].as_f64().is_some(), "latency_us.{key}");
    }
    let sent = v["sent"].as_u64().expect("sent");
    assert!(
        (6 * PER_STREAM[0]..=6 * PER_STREAM[1]).contains(&sent),
        "6 streams for 2 s send 4686..=4692 messages, not {sent}"
    );
    // Rooms of 3: every message reaches the 2 others, whole.
    assert_eq!(v["received"].as_u64(), Some(sent * 2), "{text}");
    assert_eq!(v["lost"].as_u64(), Some(0), "{text}");
    assert_eq!(v["corrupted"].as_u64(), Some(0), "{text}");
    assert_eq!(v["protocol"], "ws");
    assert_eq!(v["streams"].as_u64(), Some(6));
    assert_eq!(v["room_size"].as_u64(), Some(3));
    assert!(v["relay_cpu_ns_per_message"].is_number(), "{text}");
    let p50 = v["latency_us"]["p50"].as_f64().expect("p50");
    let max = v["latency_us"]["max"].as_f64().expect("max");
    assert!(p50 > 0.0 && max >= p50, "{text}");

    // The relay saw exactly what the bench says it sent.
    assert_eq!(relay.metric("moose_ws_messages_in_total"), sent);

    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("latency p99.9 (µs)"), "{table}");
    assert!(stderr(&out).contains("sent "), "no progress line");
    let svg = std::fs::read_to_string(&plot).expect("plot written");
    assert!(
        svg.starts_with("<svg") && svg.contains("<polyline"),
        "{svg}"
    );
}

#[test]
fn a_one_line_server_takes_its_apikey_and_refuses_another_with_403() {
    let key = "bench-line-key-0123456789";
    let relay = Relay::start(&[], &[("APIKEY", key)]);
    let target = relay.http.to_string();
    let run = |apikey: &str| {
        bench(&[
            "ws",
            "--target",
            &target,
            "--streams",
            "2",
            "--seconds",
            "0.5",
            "--grace-ms",
            "300",
            "--quiet",
            "--apikey",
            apikey,
        ])
    };
    let good = run(key);
    assert!(good.status.success(), "{}", stderr(&good));

    let bad = run("bench-not-the-line-key-42");
    assert!(!bad.status.success());
    let err = stderr(&bad);
    assert!(err.contains("HTTP 403"), "{err}");
    assert!(
        !err.contains("bench-not-the-line-key-42"),
        "the key leaked: {err}"
    );
}

#[test]
fn the_origin_header_is_sent_and_can_be_chosen() {
    let allowed = "http://bench.example";
    let relay = Relay::start(&["--open", "--allowed-origin", allowed], &[]);
    let target = relay.http.to_string();
    let base = [
        "ws",
        "--target",
        &target,
        "--streams",
        "2",
        "--seconds",
        "0.5",
        "--grace-ms",
        "300",
        "--quiet",
    ];
    let default_origin = bench(&base);
    assert!(!default_origin.status.success());
    assert!(
        stderr(&default_origin).contains("HTTP 403"),
        "{}",
        stderr(&default_origin)
    );

    let mut chosen = base.to_vec();
    chosen.extend(["--origin", allowed]);
    let out = bench(&chosen);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn nothing_listening_fails_with_the_reason() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let out = bench(&["ws", "--target", &target, "--seconds", "0.5", "--quiet"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    // Whichever stream's worker fails first names itself.
    assert!(err.contains("stream ") && err.contains("refused"), "{err}");
}

#[test]
fn a_ramp_reports_the_largest_step_within_the_slo() {
    let relay = Relay::start(&["--open"], &[]);
    let json = temp_file("ramp.json");
    let target = relay.http.to_string();
    // An objective every step meets: the ramp climbs to --ramp-max and says so.
    let out = bench(
        &[
            &easy_ramp(&target, "0.5")[..],
            &["--quiet", "--json", json.to_str().expect("utf-8")],
        ]
        .concat(),
    );
    let (v, text) = succeeded(&out, &json);
    assert_eq!(v["max_streams"].as_u64(), Some(4), "{text}");
    let steps: Vec<u64> = ramp_steps(&v, "ramp").iter().map(|s| s.0).collect();
    assert_eq!(steps, vec![2, 4]);
    assert_eq!(
        v["streams"].as_u64(),
        Some(4),
        "figures of the last good step"
    );
    assert!(
        v.get("baseline_max_streams").is_none() && v.get("baseline_ramp").is_none(),
        "no baseline asked for: {text}"
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("max streams within SLO"), "{table}");
}

#[test]
fn the_baseline_carries_the_same_load_side_by_side() {
    let relay = Relay::start(&["--open"], &[]);
    let json = temp_file("baseline.json");
    let target = relay.http.to_string();
    let out = bench(&[
        "ws",
        "--target",
        &target,
        "--streams",
        "4",
        "--seconds",
        "1",
        "--grace-ms",
        "500",
        "--baseline",
        "--baseline-cores",
        "2",
        "--json",
        json.to_str().expect("utf-8"),
    ]);
    let (v, text) = succeeded(&out, &json);
    let base = &v["baseline"];
    // The same streams and messages went through moose-baseline, all of them delivered.
    assert_eq!(base["streams"], v["streams"], "{text}");
    assert_eq!(base["sent"], v["sent"], "{text}");
    let sent = base["sent"].as_u64().expect("baseline sent");
    assert!(sent > 0, "{text}");
    assert_eq!(base["received"].as_u64(), Some(sent), "lines of 2: {text}");
    assert_eq!(base["lost"].as_u64(), Some(0), "{text}");
    assert!(base["latency_us"]["p99"].as_f64().is_some(), "{text}");
    assert!(v["ratio"]["p50"].as_f64().is_some(), "{text}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("baseline"), "{table}");
}

/// The streams of each step of a ramp in `v[key]`, and whether each met the SLO.
/// A `ws` ramp against `target` of 2 then 4 streams, `step_seconds` each, under an
/// objective every step meets (p99 up to a minute, any loss).
fn easy_ramp<'a>(target: &'a str, step_seconds: &'a str) -> [&'a str; 18] {
    [
        "ws",
        "--target",
        target,
        "--ramp",
        "--ramp-start",
        "2",
        "--ramp-step",
        "2",
        "--ramp-max",
        "4",
        "--ramp-step-seconds",
        step_seconds,
        "--slo-p99-ms",
        "60000",
        "--slo-loss-percent",
        "100",
        "--grace-ms",
        "300",
    ]
}

fn ramp_steps(v: &Value, key: &str) -> Vec<(u64, bool)> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .iter()
        .map(|s| {
            let streams = s["streams"].as_u64().expect("streams");
            (streams, s["ok"].as_bool().expect("ok"))
        })
        .collect()
}

#[test]
fn a_ramp_with_the_baseline_ramps_both_servers_side_by_side() {
    let relay = Relay::start(&["--open"], &[]);
    let json = temp_file("ramp-baseline.json");
    let target = relay.http.to_string();
    let pid = relay.pid().to_string();
    // An objective every step meets: both servers climb to --ramp-max, 2 steps of 1 s each.
    let out = bench(
        &[
            &easy_ramp(&target, "1")[..],
            &[
                "--relay-pid",
                &pid,
                "--baseline",
                "--baseline-cores",
                "2",
                "--json",
                json.to_str().expect("utf-8"),
            ],
        ]
        .concat(),
    );
    let (v, text) = succeeded(&out, &json);
    let both_met = vec![(2, true), (4, true)];
    assert_eq!(ramp_steps(&v, "ramp"), both_met, "{text}");
    assert_eq!(ramp_steps(&v, "baseline_ramp"), both_met, "{text}");
    assert_eq!(v["max_streams"].as_u64(), Some(4), "{text}");
    assert_eq!(v["baseline_max_streams"].as_u64(), Some(4), "{text}");
    assert_eq!(v["ratio"]["max_streams"].as_f64(), Some(1.0), "{text}");

    // `baseline` is the baseline's own best step, carried whole.
    let base = &v["baseline"];
    assert_eq!(base["streams"], v["baseline_max_streams"], "{text}");
    let base_sent = base["sent"].as_u64().expect("baseline sent");
    assert!(
        (4 * 390..=4 * 391).contains(&base_sent),
        "4 streams for 1 s send 1560..=1564 messages, not {base_sent}"
    );
    assert_eq!(base["received"].as_u64(), Some(base_sent), "{text}");

    // The relay carried its two steps (2 streams, then 4) and none of the baseline's load.
    let sent = v["sent"].as_u64().expect("sent");
    let first_step = relay
        .metric("moose_ws_messages_in_total")
        .checked_sub(sent)
        .unwrap_or_else(|| panic!("the relay saw fewer than the {sent} of its best step"));
    assert!(
        (2 * 390..=2 * 391).contains(&first_step),
        "2 streams for 1 s send 780..=782 messages, not {first_step}"
    );

    let table = String::from_utf8_lossy(&out.stdout);
    let row = table
        .lines()
        .find_map(|l| l.strip_prefix("max streams within SLO"))
        .unwrap_or_else(|| panic!("no max streams row in {table}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        vec!["4", "4", "1.000"],
        "{table}"
    );
    let err = stderr(&out);
    for line in [
        "ramp step 4 streams, relay:",
        "ramp step 4 streams, baseline:",
    ] {
        assert!(err.contains(line), "no {line:?} in {err}");
    }
}

/// `--bind` for WebSocket streams: 4 streams from 2 source addresses fit a relay that lets
/// each address hold 2 connections; the relay's connection limit is what would refuse a
/// third from one address.
#[test]
fn bound_streams_come_from_their_addresses() {
    let relay = Relay::start(&["--open", "--max-connections-per-address", "2"], &[]);
    let json = temp_file("bind.json");
    let target = relay.http.to_string();
    let run = |bind: &str| {
        bench(&[
            "ws",
            "--target",
            &target,
            "--streams",
            "4",
            "--room-size",
            "2",
            "--seconds",
            "1",
            "--setup-timeout",
            "10",
            "--bind",
            bind,
            "--json",
            json.to_str().expect("utf-8"),
            "--quiet",
        ])
    };
    let (v, text) = succeeded(&run("127.0.0.7,127.0.0.8"), &json);
    assert_eq!(v["lost"].as_u64(), Some(0), "{text}");
    assert!(v["received"].as_u64().is_some_and(|r| r > 0), "{text}");
    let one = run("127.0.0.7");
    assert!(
        !one.status.success(),
        "4 streams from one address passed a limit of 2"
    );
}
