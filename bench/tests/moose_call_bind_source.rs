//! `moose-call --bind 127.0.0.7` reaches the relay from 127.0.0.7, TCP and UDP alike: the
//! relay lists the TCP peer at that address, counts it apart from 127.0.0.1 under
//! `--max-connections-per-address 1` (a second client from 127.0.0.1 is turned away), and
//! forwards its media, which it would drop as `wrong_address` had the UDP socket left from
//! another IP than the TCP connection.

use std::net::IpAddr;
use std::time::Duration;

use moose_testkit::call::CallProc;
use moose_testkit::metrics::{OnPanic, wait_rooms_gone};
use moose_testkit::relay::Relay;
use moose_testkit::temp::temp_dir;
use moose_testkit::tone::tone_wav;

const ROOM: &str = "bound";
const LINE: Duration = Duration::from_secs(15);
const SOURCE: [u8; 4] = [127, 0, 0, 7];

#[test]
fn bind_source() {
    let relay = Relay::start(&["--max-connections-per-address", "1"], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let dir = temp_dir("bind-source");
    let tone = tone_wav(&dir, 440.0, 2.0);

    let mut alice = CallProc::start(&relay, "alice", ROOM, &[]);
    alice.expect_line("joined alice", LINE);

    // The limit bites for a second client from alice's address...
    let carol = CallProc::start(&relay, "carol", ROOM, &["--seconds", "3"]).wait(LINE);
    assert_eq!(
        carol.status.code(),
        Some(1),
        "carol from 127.0.0.1 is refused"
    );

    // ...but not for one bound to 127.0.0.7.
    let tone_arg = tone.to_str().expect("utf-8");
    let mut bob = CallProc::start(
        &relay,
        "bob",
        ROOM,
        &["--bind", "127.0.0.7", "--input", tone_arg, "--seconds", "3"],
    );
    bob.expect_line("joined bob", LINE);
    alice.expect_line("joined bob", LINE);
    let peers = relay.vors_tcp_peers();
    assert!(
        peers.iter().any(|p| p.ip() == IpAddr::from(SOURCE)),
        "the relay sees no member from 127.0.0.7: {peers:?}"
    );

    alice.expect_line("left bob", LINE);
    let bob = bob.wait(LINE);
    bob.assert_success("bob");
    let alice = alice.hang_up(LINE);

    let sent = bob.summary().sent;
    assert_eq!(sent, 100, "2 s of tone:\n{}", bob.stderr);
    assert_eq!(alice.summary().received, sent, "{}", alice.stderr);
    let m = wait_rooms_gone(&relay, LINE);
    assert_eq!(m.dropped("wrong_address"), 0, "{}", m.vors());
    assert_eq!(m.get("moose_vors_packets_forwarded_total"), sent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `--bind` that is not an address, or not one of this host's, fails with exit 1 and says
/// why, before any room hears of the call.
#[test]
fn bad_bind_addresses_fail_clearly() {
    let relay = Relay::start(&[], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    for (bind, says) in [
        ("localhost", "not an IP address or IP:PORT"),
        ("127.0.0.7:notaport", "not an IP address or IP:PORT"),
        // TEST-NET-1: no interface of this host has it.
        ("192.0.2.1", "bind to 192.0.2.1:0"),
        ("::1", "no address of the family of --bind"),
    ] {
        let exit =
            CallProc::start(&relay, "x", ROOM, &["--bind", bind, "--seconds", "3"]).wait(LINE);
        assert_eq!(
            exit.status.code(),
            Some(1),
            "--bind {bind}:\n{}",
            exit.stderr
        );
        assert!(
            exit.stderr.contains(says),
            "--bind {bind}: expected {says:?} in:\n{}",
            exit.stderr
        );
        assert_eq!(
            exit.lines,
            Vec::<String>::new(),
            "--bind {bind} joined nothing"
        );
    }
}
