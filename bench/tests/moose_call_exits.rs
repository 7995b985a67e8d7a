//! `moose-call` fails with exit 1 and a one-line reason, never hanging and never clap's 2,
//! when it cannot start a call: a public key that is not 64 hex digits, a relay whose key is
//! not the one given (the Noise handshake fails), a port nobody listens on, and a usage
//! error. Refusals by the room (exit 3) are `relay/tests/vors_rejections.rs`.

use std::net::TcpListener;
use std::time::Duration;

use moose_testkit::call::CallProc;
use moose_testkit::metrics::{Metrics, OnPanic, wait_metrics};
use moose_testkit::relay::Relay;

/// Every failure here is immediate; the deadline only keeps a regression from hanging.
const EXIT: Duration = Duration::from_secs(15);

/// Runs `moose-call ARGS` (with `--seconds 3`, so a call let in by mistake ends on its own
/// with exit 0) and checks exit 1 with a message containing `says`.
fn fails_with(name: &str, args: &[&str], says: &str) {
    let exit = CallProc::spawn(name, args).wait(EXIT);
    assert_eq!(
        exit.status.code(),
        Some(1),
        "{name}: expected exit 1; stderr:\n{}",
        exit.stderr
    );
    assert!(
        exit.stderr.contains(says),
        "{name}: expected {says:?} in stderr:\n{}",
        exit.stderr
    );
    assert_eq!(exit.lines, Vec::<String>::new(), "{name} joined nothing");
}

#[test]
fn exits() {
    let relay = Relay::start(&["--cores", "2"], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let server = relay.vors.to_string();
    let call = ["--name", "a", "--room", "r", "--seconds", "3"];

    // Not hex: refused before any connection.
    let args = [&["--server", &server, "--pubkey", "xyz"][..], &call].concat();
    fails_with("bad-hex", &args, "64 hex digits");
    let short = "ab".repeat(31);
    let args = [&["--server", &server, "--pubkey", &short][..], &call].concat();
    fails_with("short-key", &args, "64 hex digits");
    assert_eq!(Metrics::read(&relay).get("moose_vors_handshakes_total"), 0);

    // A well-formed key that is not the relay's: the relay cannot decrypt message 1, and
    // closes the connection, which is all the client learns.
    let other = "11".repeat(32);
    assert_ne!(other, relay.vors_pubkey);
    let args = [&["--server", &server, "--pubkey", &other][..], &call].concat();
    fails_with("wrong-key", &args, "the server closed the connection");
    let m = wait_metrics(
        &relay,
        EXIT,
        "the failed handshake counted",
        || {},
        |m| m.get("moose_vors_handshake_failures_total") == 1,
    );
    assert_eq!(m.get("moose_vors_joins_total"), 0, "{}", m.vors());
    assert_eq!(m.sum("moose_vors_rooms"), 0, "{}", m.vors());

    // Nobody listening: the port was bound and let go.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let args = [
        &["--server", &closed, "--pubkey", &relay.vors_pubkey][..],
        &call,
    ]
    .concat();
    fails_with("refused", &args, "cannot connect");

    // Usage errors are 1 too: moose-call promises 0, 1 and 3 only.
    fails_with("no-args", &[], "Usage: moose-call");
    let args = [
        &["--server", &server, "--pubkey", &relay.vors_pubkey][..],
        &call,
        &["--bogus"],
    ]
    .concat();
    fails_with("unknown-flag", &args, "unexpected argument '--bogus'");
}
