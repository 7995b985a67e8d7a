//! Real calls across a cluster: `moose-call` processes on three different relays of one
//! cluster. Alice (relay 0) sends a 1 kHz tone; Bob (relay 1) and Cat (relay 2) each record it
//! whole, with every packet Alice sent and none lost, and hear her join and leave.

use std::time::Duration;

use moose_testkit::call::CallProc;
use moose_testkit::cluster::Cluster;
use moose_testkit::metrics::{Metrics, wait_metrics};
use moose_testkit::temp::temp_dir;
use moose_testkit::tone::{assert_tone, tone_wav};

const ROOM: &str = "across-relays";
const LINE: Duration = Duration::from_secs(15);
const TONE_HZ: f64 = 1000.0;

#[test]
fn a_tone_crosses_relays_whole() {
    let cluster = Cluster::start(3, &[]);
    let dir = temp_dir("cluster-call");
    let tone = tone_wav(&dir, TONE_HZ, 3.0);
    let recorder = |r: usize, name: &str| {
        let rec = dir.join(format!("rec-{name}"));
        let call = CallProc::start(
            &cluster.relays[r],
            name,
            ROOM,
            &["--record", rec.to_str().expect("utf-8")],
        );
        (call, rec)
    };
    let (mut bob, bob_rec) = recorder(1, "bob");
    bob.expect_line("joined bob", LINE);
    let (mut cat, cat_rec) = recorder(2, "cat");
    cat.expect_line("joined cat", LINE);
    bob.expect_line("joined cat", LINE);
    let mut alice = CallProc::start(
        &cluster.relays[0],
        "alice",
        ROOM,
        &["--input", tone.to_str().expect("utf-8")],
    );
    alice.expect_line("joined alice", LINE);
    bob.expect_line("joined alice", LINE);
    cat.expect_line("joined alice", LINE);
    // 3 s of tone is 150 packets from relay 0's edge; alice leaves once 145 went through.
    let tone_forwarded = |m: &Metrics| m.get("moose_vors_packets_forwarded_total") >= 145;
    wait_metrics(&cluster.relays[0], LINE, "the tone", || {}, tone_forwarded);
    let alice = alice.hang_up(LINE);
    let sent = alice.summary().sent;
    for (mut call, rec, name) in [(bob, bob_rec, "bob"), (cat, cat_rec, "cat")] {
        call.expect_line("left alice", LINE);
        let done = call.hang_up(LINE);
        let heard = done.summary();
        assert_eq!(heard.lost, 0, "{name}: {heard:?}");
        assert_eq!(heard.received, sent, "{name} received all alice sent");
        assert_tone(&rec.join("alice.wav"), TONE_HZ, 2.5, 2.5);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
