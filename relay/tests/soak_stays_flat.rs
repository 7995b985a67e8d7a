//! A short soak (the long one is `scripts/soak.sh`): PCM lines and VoRS rooms run through one
//! relay at once, both driven by `moose-bench`, while the test samples the relay's resident
//! memory and open descriptors every half second. Nothing is lost or damaged, the
//! descriptors stay exactly where the load put them, and memory stops growing once the load
//! is up.

use std::thread;
use std::time::{Duration, Instant};

use moose_testkit::bench::BenchRun;
use moose_testkit::relay::Relay;

/// Sending time of each bench run.
const SECONDS: u64 = 10;
/// Memory growth allowed over the second half of the run, beyond what it held at its middle.
/// Queues and buffers are sized by the first seconds of load; a leak of even 100 bytes a
/// message (some 40 000 messages in that half) would pass this.
const MAX_LATE_GROWTH_KIB: u64 = 3072;

fn bench(args: &[&str], json: &std::path::Path) -> BenchRun {
    BenchRun::start(args, SECONDS, json)
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
    ws.finished(&ws_json, "ws");
    vors.finished(&vors_json, "vors");

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
