//! A real call through `moose-relay` on two cores: bob records, alice sends a 440 Hz tone,
//! chats and mutes from stdin. Bob's recording holds the tone, his stdout tells the room's
//! story in order, and the relay forwarded exactly what alice sent and dropped nothing but
//! (perhaps) a cookie that crossed its SID.

use std::time::Duration;

use moose_testkit::call::CallProc;
use moose_testkit::metrics::{Metrics, OnPanic, wait_metrics};
use moose_testkit::relay::Relay;
use moose_testkit::temp::temp_dir;
use moose_testkit::tone::{assert_tone, tone_wav};

const ROOM: &str = "through-relay";
const LINE: Duration = Duration::from_secs(15);
const TONE_HZ: f64 = 440.0;

#[test]
fn call_through_relay() {
    let relay = Relay::start(&["--cores", "2"], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let dir = temp_dir("call");
    let rec = dir.join("rec");
    let tone = tone_wav(&dir, TONE_HZ, 4.0);

    // No --seconds: each call leaves when the test closes its stdin.
    let mut bob = CallProc::start(
        &relay,
        "bob",
        ROOM,
        &["--record", rec.to_str().expect("utf-8")],
    );
    bob.expect_line("joined bob", LINE);

    let mut alice = CallProc::start(
        &relay,
        "alice",
        ROOM,
        &["--input", tone.to_str().expect("utf-8")],
    );
    alice.expect_line("joined alice", LINE);
    alice.type_line("hello bob");
    assert_eq!(
        bob.expect_line("chat alice: hello bob", LINE),
        ["joined alice", "chat alice: hello bob"]
    );

    // 4 s of tone is 200 packets (a steady tone is never DTX). Mute once most of it went
    // through; whatever alice sent before the mute is what the relay must have forwarded.
    wait_metrics(
        &relay,
        Duration::from_secs(15),
        "180 packets forwarded",
        || {},
        |m| m.get("moose_vors_packets_forwarded_total") >= 180,
    );
    alice.type_line("/mute");
    assert_eq!(bob.expect_line("muted alice", LINE), ["muted alice"]);

    let alice = alice.hang_up(LINE);
    assert_eq!(bob.expect_line("left alice", LINE), ["left alice"]);
    let bob = bob.hang_up(LINE);

    assert_eq!(
        bob.lines,
        [
            "joined bob",
            "joined alice",
            "chat alice: hello bob",
            "muted alice",
            "left alice"
        ]
    );
    let mut alice_lines = alice.lines.clone();
    alice_lines.sort();
    assert_eq!(
        alice_lines,
        ["joined alice", "joined bob", "muted alice"],
        "alice printed {:?}",
        alice.lines
    );

    let sent = alice.summary().sent;
    let heard = bob.summary();
    assert!(
        (180..=200).contains(&sent),
        "alice sent {sent} packets:\n{}",
        alice.stderr
    );
    assert_eq!(heard.lost, 0, "bob: {heard:?}");
    assert_eq!(
        heard.received, sent,
        "bob received all alice sent: {heard:?}"
    );
    assert!(
        bob.stderr.contains(&format!(
            "moose-call: recorded alice to {}",
            rec.join("alice.wav").display()
        )),
        "{}",
        bob.stderr
    );
    // At least 3.5 s of the 3.6-4 s sent, in one piece.
    assert_tone(&rec.join("alice.wav"), TONE_HZ, 3.5, 3.5);

    // Once both left the room is gone; the counters are final.
    let m = wait_metrics(
        &relay,
        LINE,
        "room gone",
        || {},
        |m| m.sum("moose_vors_rooms") == 0 && m.sum("moose_vors_members") == 0,
    );
    check_counters(&m, sent);
    let _ = std::fs::remove_dir_all(&dir);
}

fn check_counters(m: &Metrics, sent: u64) {
    let vors = m.vors();
    let forwarded = m.get("moose_vors_packets_forwarded_total");
    assert_eq!(forwarded, sent, "forwarded vs alice's {sent}:\n{vors}");
    // One other member, bob: one copy per packet, none refused by the kernel.
    assert_eq!(m.get("moose_vors_datagrams_out_total"), forwarded, "{vors}");
    assert_eq!(m.get("moose_vors_send_dropped_total"), 0, "{vors}");
    assert_eq!(m.get("moose_vors_handshakes_total"), 2, "{vors}");
    assert_eq!(m.get("moose_vors_joins_total"), 2, "{vors}");
    assert_eq!(m.get("moose_vors_handshake_failures_total"), 0, "{vors}");
    assert_eq!(m.get("moose_vors_rejects_total"), 0, "{vors}");
    // A cookie resent as the SID crossed it is the only drop an honest call may cause.
    assert_eq!(m.drops_except(&["cookie_repeat"]), [], "{vors}");
    assert!(m.dropped("cookie_repeat") <= 2, "{vors}");
    // Alice's media, bob's and alice's keepalives and cookies: the media alone is a floor.
    assert!(m.get("moose_vors_datagrams_in_total") >= sent, "{vors}");
}
