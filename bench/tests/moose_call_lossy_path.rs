//! A call through the real relay where bob's network path loses every 10th media packet:
//! bob counts the packets that reached him, his decoder conceals the gaps, and his
//! recording still holds alice's tone. The relay itself forwarded everything.

#[path = "../../relay/tests/support/mod.rs"]
mod support;
mod vors_support;

use std::time::Duration;

use support::Relay;
use vors_support::lossy::LossyPath;
use vors_support::{CallProc, OnPanic, assert_tone, temp_dir, tone_wav, wait_metrics};

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

    let server = path.addr.to_string();
    let mut bob = CallProc::spawn(
        "bob",
        &[
            "--server",
            &server,
            "--pubkey",
            &relay.vors_pubkey,
            "--name",
            "bob",
            "--room",
            ROOM,
            "--record",
            rec.to_str().expect("utf-8"),
        ],
    );
    bob.expect_line("joined bob", LINE);

    // Alice talks for 3 s and leaves after 4: her last packet is long delivered when bob
    // hears she left.
    let mut alice = CallProc::start(
        &relay,
        "alice",
        ROOM,
        &["--input", tone.to_str().expect("utf-8"), "--seconds", "4"],
    );
    bob.expect_line("left alice", LINE);
    alice.close_stdin();
    let alice = alice.wait(LINE);
    alice.assert_success("alice");
    bob.close_stdin();
    let bob = bob.wait(LINE);
    bob.assert_success("bob");
    assert_eq!(bob.lines, ["joined bob", "joined alice", "left alice"]);

    let sent = alice.summary().sent;
    assert_eq!(sent, 150, "3 s of steady tone, no DTX:\n{}", alice.stderr);
    let m = wait_metrics(
        &relay,
        LINE,
        "room gone",
        || {},
        |m| m.sum("moose_vors_rooms") == 0,
    );
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
    // All that reached him, but perhaps the first packet: it can overtake alice's ADD
    // (docs/wire-vors.md §10), and moose-call drops a packet from a SID it does not know.
    assert!(
        (path.passed() - 1..=path.passed()).contains(&heard.received),
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
