//! Media that overtakes its ADD: bob's control path is 100 ms slower than his media path, so
//! alice's first packets reach him before he knows she is in the room. moose-call holds them
//! until her ADD arrives (docs/wire-vors.md §10) and loses none of them.

use std::time::Duration;

use moose_testkit::call::tone_call;
use moose_testkit::lossy_path::LossyPath;
use moose_testkit::metrics::OnPanic;
use moose_testkit::relay::Relay;
use moose_testkit::temp::temp_dir;
use moose_testkit::tone::{assert_tone, tone_wav};

const ROOM: &str = "overtaken";
const TONE_HZ: f64 = 523.0;
/// Well below moose-call's 200 ms hold, well above loopback's jitter.
const CONTROL_DELAY: Duration = Duration::from_millis(100);

#[test]
fn media_before_add() {
    let relay = Relay::start(&["--cores", "2"], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let path = LossyPath::slow_control(relay.vors, CONTROL_DELAY);
    let dir = temp_dir("overtaken");
    let rec = dir.join("rec");
    let tone = tone_wav(&dir, TONE_HZ, 2.0);

    let (alice, bob) = tone_call(&relay, path.addr, ROOM, &tone, 2, &rec);

    // The scenario happened: some of alice's media reached bob ahead of control bytes the
    // relay had sent before it (her ADD among them).
    assert!(
        path.overtaking() > 0,
        "no media overtook control; path passed {}",
        path.passed()
    );
    let sent = alice.summary().sent;
    assert_eq!(sent, 100, "2 s of steady tone, no DTX:\n{}", alice.stderr);
    assert_eq!(path.passed(), sent, "the path loses nothing");
    let heard = bob.summary();
    assert_eq!(
        (heard.received, heard.lost),
        (sent, 0),
        "bob: {heard:?}\n{}",
        bob.stderr
    );
    assert_tone(&rec.join("alice.wav"), TONE_HZ, 1.9, 1.7);
    let _ = std::fs::remove_dir_all(&dir);
}
