//! `moose-bench ws` against a real relay: a short run whose every message arrives whole, the
//! JSON it writes, and the ways a server can refuse it (wrong apikey, Origin not allowed,
//! nothing listening), each a non-zero exit that names the reason.

#[path = "../../relay/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::Relay;

/// 2 s of sending at 390.625 messages/s: each stream sends 781 or 782 (by its phase).
const SECONDS: &str = "2";
const PER_STREAM: [u64; 2] = [781, 782];

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moose-bench"))
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
    let out = bench(&[
        "ws",
        "--target",
        &target,
        "--ramp",
        "--ramp-start",
        "2",
        "--ramp-step",
        "2",
        "--ramp-max",
        "4",
        "--ramp-step-seconds",
        "0.5",
        "--slo-p99-ms",
        "60000",
        "--slo-loss-percent",
        "100",
        "--grace-ms",
        "300",
        "--quiet",
        "--json",
        json.to_str().expect("utf-8"),
    ]);
    let (v, text) = succeeded(&out, &json);
    assert_eq!(v["max_streams"].as_u64(), Some(4), "{text}");
    let steps: Vec<u64> = v["ramp"]
        .as_array()
        .expect("ramp steps")
        .iter()
        .map(|s| s["streams"].as_u64().expect("streams"))
        .collect();
    assert_eq!(steps, vec![2, 4]);
    assert_eq!(
        v["streams"].as_u64(),
        Some(4),
        "figures of the last good step"
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
