//! A member's process is killed (SIGKILL) in the middle of a call: the relay notices its
//! connection closing and tells the others at once, not after the 30 s PING timeout. The
//! room shrinks to two, the name is free again, and the room is gone once everyone left.

use std::time::{Duration, Instant};

use moose_testkit::call::CallProc;
use moose_testkit::metrics::{OnPanic, wait_metrics};
use moose_testkit::relay::Relay;
use moose_testkit::temp::temp_dir;
use moose_testkit::tone::tone_wav;

const ROOM: &str = "vanishing";
const LINE: Duration = Duration::from_secs(15);
/// How soon the others must hear that alice is gone. The kernel closes a killed process's
/// sockets at once; the relay's own timeout (30 s) is far beyond this.
const NOTICE: Duration = Duration::from_secs(5);

#[test]
fn member_vanishes() {
    let relay = Relay::start(&["--cores", "2"], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let dir = temp_dir("vanishes");
    let tone = tone_wav(&dir, 440.0, 20.0);

    let mut bob = CallProc::start(&relay, "bob", ROOM, &[]);
    bob.expect_line("joined bob", LINE);
    let mut alice = CallProc::start(
        &relay,
        "alice",
        ROOM,
        &["--input", tone.to_str().expect("utf-8")],
    );
    alice.expect_line("joined alice", LINE);
    let mut carol = CallProc::start(&relay, "carol", ROOM, &[]);
    carol.expect_line("joined carol", LINE);
    bob.expect_line("joined carol", LINE);
    wait_metrics(
        &relay,
        LINE,
        "3 members, alice talking",
        || {},
        |m| m.sum("moose_vors_members") == 3 && m.get("moose_vors_packets_forwarded_total") >= 25,
    );

    // Mid-tone, without a chance to leave.
    alice.kill9();
    let killed = Instant::now();
    bob.expect_line("left alice", NOTICE);
    carol.expect_line("left alice", NOTICE);
    let noticed = killed.elapsed();
    let m = wait_metrics(
        &relay,
        NOTICE,
        "2 members",
        || {},
        |m| m.sum("moose_vors_members") == 2,
    );
    assert_eq!(m.sum("moose_vors_rooms"), 1, "{}", m.vors());
    let exit = alice.wait(LINE);
    assert_eq!(exit.status.code(), None, "alice died by a signal");

    // Those left still talk to each other, and alice's name can be taken again.
    carol.type_line("is alice gone?");
    bob.expect_line("chat carol: is alice gone?", LINE);
    let mut again = CallProc::start(&relay, "alice", ROOM, &[]);
    again.expect_line("joined alice", LINE);
    bob.expect_line("joined alice", LINE);
    again.hang_up(LINE);
    bob.expect_line("left alice", LINE);

    carol.hang_up(LINE);
    bob.expect_line("left carol", LINE);
    let bob = bob.hang_up(LINE);
    assert_eq!(
        bob.lines,
        [
            "joined bob",
            "joined alice",
            "joined carol",
            "left alice",
            "chat carol: is alice gone?",
            "joined alice",
            "left alice",
            "left carol"
        ]
    );

    let m = wait_metrics(
        &relay,
        LINE,
        "room gone",
        || {},
        |m| m.sum("moose_vors_rooms") == 0 && m.sum("moose_vors_members") == 0,
    );
    assert_eq!(m.get("moose_vors_joins_total"), 4, "{}", m.vors());
    // Alice's last packets may have been in flight to a closing room; nothing else drops.
    assert_eq!(
        m.drops_except(&["cookie_repeat", "unknown_source"]),
        [],
        "{}",
        m.vors()
    );
    assert!(m.dropped("unknown_source") <= 5, "{}", m.vors());
    eprintln!("others heard of the kill after {noticed:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
