//! The relay refuses a wrong password, a taken name and a full room (`--max-members 2`): the
//! refused `moose-call` exits 3 with the reason, `moose_vors_rejects_total` counts each one,
//! nobody in the room hears of the refused, and the members keep talking.

use std::time::Duration;

use moose_testkit::call::CallProc;
use moose_testkit::metrics::{Metrics, OnPanic, wait_rooms_gone};
use moose_testkit::relay::Relay;

const ROOM: &str = "locked";
const LINE: Duration = Duration::from_secs(15);

/// Runs a `moose-call` that must be refused and checks its exit and message.
fn expect_refused(relay: &Relay, name: &str, password: &str, reason: &str) {
    // --seconds: were it let in by mistake, it would leave (exit 0) instead of hanging.
    let call = CallProc::start(
        relay,
        name,
        ROOM,
        &["--password", password, "--seconds", "3"],
    );
    let exit = call.wait(LINE);
    assert_eq!(
        exit.status.code(),
        Some(3),
        "{name} with {password:?}: expected refusal {reason:?}; stderr:\n{}",
        exit.stderr
    );
    assert_eq!(exit.stderr.trim(), format!("moose-call: refused: {reason}"));
    assert_eq!(
        exit.lines,
        Vec::<String>::new(),
        "a refused call joins nothing"
    );
}

#[test]
fn rejections() {
    let relay = Relay::start(&["--cores", "2", "--max-members", "2"], &[]);
    let _metrics_on_failure = OnPanic(&relay);

    // The first member sets the password.
    let mut bob = CallProc::start(&relay, "bob", ROOM, &["--password", "secret"]);
    bob.expect_line("joined bob", LINE);

    expect_refused(&relay, "eve", "guess", "wrong password");
    expect_refused(&relay, "bob", "secret", "name is taken");

    let mut alice = CallProc::start(&relay, "alice", ROOM, &["--password", "secret"]);
    alice.expect_line("joined alice", LINE);
    assert_eq!(bob.expect_line("joined alice", LINE), ["joined alice"]);

    expect_refused(&relay, "carol", "secret", "room is full");
    // The password is checked first, so a stranger learns nothing about names or size.
    expect_refused(&relay, "bob", "guess", "wrong password");

    let m = Metrics::read(&relay);
    let vors = m.vors();
    assert_eq!(m.get("moose_vors_rejects_total"), 4, "{vors}");
    // Refused clients still complete the handshake: the ERR is in message 2.
    assert_eq!(m.get("moose_vors_handshakes_total"), 6, "{vors}");
    assert_eq!(m.get("moose_vors_handshake_failures_total"), 0, "{vors}");
    assert_eq!(m.get("moose_vors_joins_total"), 2, "{vors}");
    assert_eq!(m.sum("moose_vors_members"), 2, "{vors}");
    assert_eq!(m.sum("moose_vors_rooms"), 1, "{vors}");

    // The members were not disturbed: chat still goes both ways.
    alice.type_line("still here");
    assert_eq!(
        bob.expect_line("chat alice: still here", LINE),
        ["chat alice: still here"]
    );
    bob.type_line("me too");
    let seen = alice.expect_line("chat bob: me too", LINE);
    assert_eq!(seen.last().map(String::as_str), Some("chat bob: me too"));

    alice.hang_up(LINE);
    bob.expect_line("left alice", LINE);
    let bob = bob.hang_up(LINE);
    // Nobody refused ever showed up in the room.
    assert_eq!(
        bob.lines,
        [
            "joined bob",
            "joined alice",
            "chat alice: still here",
            "left alice"
        ]
    );

    // The room is gone with its last member; the next first member sets a new password.
    wait_rooms_gone(&relay, LINE);
    let mut carol = CallProc::start(&relay, "carol", ROOM, &["--password", "other"]);
    carol.expect_line("joined carol", LINE);
    carol.hang_up(LINE);
    assert_eq!(Metrics::read(&relay).get("moose_vors_rejects_total"), 4);
}
