//! A short soak (the long one is `scripts/soak.sh`): PCM lines and VoRS rooms run through one
//! relay at once, both driven by `moose-bench`, while the test samples the relay's resident
//! memory and open descriptors every half second. Nothing is lost or damaged, the
//! descriptors stay exactly where the load put them, and memory stops growing once the load
//! is up.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use moose_testkit::relay::Relay;
use serde_json::Value;

/// Sending time of each bench run.
const SECONDS: u64 = 10;
/// Memory growth allowed over the second half of the run, beyond what it held at its middle.
/// Queues and buffers are sized by the first seconds of load; a leak of even 100 bytes a
/// message (some 40 000 messages in that half) would pass this.
const MAX_LATE_GROWTH_KIB: u64 = 3072;

/// A running `moose-bench` and its stderr, line by line (the progress line among them).
struct BenchRun {
    child: Child,
    lines: Receiver<String>,
    reader: JoinHandle<Vec<String>>,
}

fn bench(args: &[&str], json: &std::path::Path) -> BenchRun {
    let mut child = Command::new(moose_testkit::binary::moose_bench())
        .args(args)
        .args(["--seconds", &SECONDS.to_string(), "--json"])
        .arg(json)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start moose-bench");
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, lines) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push(line);
        }
        all
    });
    BenchRun {
        child,
        lines,
        reader,
    }
}

impl BenchRun {
    /// Waits for the first progress line: every stream is set up and sending.
    fn wait_sending(&self, what: &str) {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("{what}: no progress line ({e})"));
            if line.contains(" sent ") {
                return;
            }
        }
    }
}

/// Waits for a bench run and returns its JSON, checked for no loss and no damage.
fn finished(mut run: BenchRun, json: &std::path::Path, what: &str) -> Value {
    let status = run.child.wait().expect("moose-bench ran");
    let stderr = run.reader.join().expect("stderr reader").join("\n");
    assert!(status.success(), "{what}: {stderr}");
    let text = std::fs::read_to_string(json).expect("JSON written");
    let v: Value = serde_json::from_str(&text).expect("well-formed JSON");
    assert!(v["sent"].as_u64().expect("sent") > 0, "{what}: {text}");
    assert_eq!(v["lost"].as_u64(), Some(0), "{what} lost messages: {text}");
    assert_eq!(v["corrupted"].as_u64(), Some(0), "{what}: {text}");
    v
}

#[test]
fn soak_stays_flat() {
    let relay = Relay::start(&["--open"], &[]);
    let dir = std::env::temp_dir().join(format!("moose-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (ws_json, vors_json) = (dir.join("ws.json"), dir.join("vors.json"));
    let http = relay.http.to_string();
    let vors = relay.vors.to_string();
    let started = Instant::now();
    let ws = bench(
        &[
            "ws",
            "--target",
            &http,
            "--streams",
            "8",
            "--room-size",
            "2",
        ],
        &ws_json,
    );
    let vors = bench(
        &[
            "vors",
            "--target",
            &vors,
            "--pubkey",
            &relay.vors_pubkey,
            "--streams",
            "8",
            "--room-size",
            "4",
        ],
        &vors_json,
    );

    // Samples from the moment both loads are sending to (nearly) the end of sending.
    ws.wait_sending("ws");
    vors.wait_sending("vors");
    let mut samples = Vec::new();
    let end = started + Duration::from_secs(SECONDS);
    while Instant::now() < end {
        samples.push((relay.rss_kib(), relay.open_fds()));
        // Sampling at a fixed rate, not waiting for an event.
        thread::sleep(Duration::from_millis(500));
    }
    finished(ws, &ws_json, "ws");
    finished(vors, &vors_json, "vors");

    assert!(samples.len() >= 10, "{samples:?}");
    let fds: Vec<usize> = samples.iter().map(|s| s.1).collect();
    assert!(
        fds.iter().all(|&n| n == fds[0]),
        "descriptors moved under a steady load: {fds:?}"
    );
    let middle = samples[samples.len() / 2].0;
    let last = samples.last().expect("samples").0;
    assert!(
        last <= middle + MAX_LATE_GROWTH_KIB,
        "memory still growing: {middle} KiB at the middle, {last} KiB at the end; {samples:?}"
    );
    // Everything the load held is given back once it has gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay.metric_sum("moose_line_peers") + relay.metric_sum("moose_vors_members") > 0 {
        assert!(Instant::now() < deadline, "members left behind");
        thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
