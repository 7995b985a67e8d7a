//! A call through the real relay where bob's network path loses every 10th media packet:
//! bob counts the packets that reached him, his decoder conceals the gaps, and his
//! recording still holds alice's tone. The relay itself forwarded everything.

use std::time::Duration;

use moose_testkit::call::tone_call;
use moose_testkit::lossy_path::LossyPath;
use moose_testkit::metrics::{OnPanic, wait_rooms_gone};
use moose_testkit::relay::Relay;
use moose_testkit::temp::temp_dir;
use moose_testkit::tone::{assert_tone, tone_wav};

const ROOM: &str = "lossy";
const LINE: Duration = Duration::from_secs(15);
const TONE_HZ: f64 = 440.0;

#[test]
fn lossy_path() {
    let relay = Relay::start(&["--cores", "2"], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let path = LossyPath::start(relay.vors, 10);
    let dir = temp_dir("lossy");
    let rec = dir.join("rec");
    let tone = tone_wav(&dir, TONE_HZ, 3.0);

    let (alice, bob) = tone_call(&relay, path.addr, ROOM, &tone, 3, &rec);

    let sent = alice.summary().sent;
    assert_eq!(sent, 150, "3 s of steady tone, no DTX:\n{}", alice.stderr);
    let m = wait_rooms_gone(&relay, LINE);
    assert_eq!(
        m.get("moose_vors_packets_forwarded_total"),
        sent,
        "{}",
        m.vors()
    );
    // Every packet the relay forwarded went down bob's path, and every 10th was lost there.
    assert_eq!(path.dropped(), sent / 10);
    assert_eq!(path.passed() + path.dropped(), sent);

    let heard = bob.summary();
    // All that reached him: media that overtook alice's ADD waited for it (holdback.rs).
    assert_eq!(
        heard.received,
        path.passed(),
        "bob: {heard:?}, path passed {}",
        path.passed()
    );
    // Each lost packet but perhaps the last is a gap bob sees in the sequence numbers.
    assert!(
        (path.dropped() - 1..=path.dropped()).contains(&heard.lost),
        "bob: {heard:?}, path dropped {}",
        path.dropped()
    );
    let concealed = concealed_frames(&bob.stderr, "alice");
    assert!(
        concealed >= path.dropped() - 1,
        "{concealed} frames concealed for {} lost:\n{}",
        path.dropped(),
        bob.stderr
    );
    // 2.8 s of the 3 s in tone, the concealed 20 ms gaps included.
    assert_tone(&rec.join("alice.wav"), TONE_HZ, 2.8, 2.5);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads `C` from `moose-call: recorded NAME to PATH (D frames decoded, C concealed, ...)`.
fn concealed_frames(stderr: &str, name: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&format!("moose-call: recorded {name} to ")))
        .unwrap_or_else(|| panic!("no recording of {name} in stderr:\n{stderr}"));
    line.split(", ")
        .find_map(|part| part.strip_suffix(" concealed")?.parse().ok())
        .unwrap_or_else(|| panic!("no concealed count in {line:?}"))
}
