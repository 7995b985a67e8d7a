//! Ctrl-C (SIGINT) and SIGTERM make `moose-call` leave the room cleanly: it exits 0 with
//! its summary, and the others hear `left NAME` at once, as for a typed `/quit`.

use std::time::Duration;

use moose_testkit::call::CallProc;
use moose_testkit::metrics::{OnPanic, wait_rooms_gone};
use moose_testkit::relay::Relay;

const ROOM: &str = "signals";
const LINE: Duration = Duration::from_secs(15);

/// Joins `name` with stdin held open and no `--seconds`, so only the signal ends the call;
/// sends `signal` and checks the clean leave from both sides.
fn leaves_on(relay: &Relay, bob: &mut CallProc, name: &str, signal: &str) {
    let mut call = CallProc::start(relay, name, ROOM, &[]);
    call.expect_line(&format!("joined {name}"), LINE);
    bob.expect_line(&format!("joined {name}"), LINE);
    call.signal(signal);
    let exit = call.wait(LINE);
    exit.assert_success(name);
    // The summary is printed only on the way out of a call that ran to its end.
    assert_eq!(exit.summary().sent, 0, "{name} sent nothing (no --input)");
    bob.expect_line(&format!("left {name}"), LINE);
}

#[test]
fn signal_leaves() {
    let relay = Relay::start(&["--cores", "2"], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let mut bob = CallProc::start(&relay, "bob", ROOM, &[]);
    bob.expect_line("joined bob", LINE);

    leaves_on(&relay, &mut bob, "alice", "INT");
    leaves_on(&relay, &mut bob, "carol", "TERM");

    let bob = bob.hang_up(LINE);
    assert_eq!(
        bob.lines,
        [
            "joined bob",
            "joined alice",
            "left alice",
            "joined carol",
            "left carol"
        ]
    );
    let m = wait_rooms_gone(&relay, LINE);
    assert_eq!(m.get("moose_vors_joins_total"), 3, "{}", m.vors());
}
