//! Commands against the real relay that the other scenarios do not type: `/unmute` brings a
//! muted talker's media back, and a program driving a call in-process can queue commands
//! before the call is in the room (applied once it is) and is told when a chat is too long.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use moose_bench::vors_client::{Call, CallConfig, CallEvent, Command, parse_public_key};
use moose_testkit::call::CallProc;
use moose_testkit::metrics::{Metrics, OnPanic, wait_metrics, wait_rooms_gone};
use moose_testkit::relay::Relay;
use moose_testkit::temp::temp_dir;
use moose_testkit::tone::tone_wav;

const LINE: Duration = Duration::from_secs(15);
const FORWARDED: &str = "moose_vors_packets_forwarded_total";

#[test]
fn unmute_resumes_media() {
    let relay = Relay::start(&["--cores", "2"], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let dir = temp_dir("unmute");
    // Longer than the test: alice is still talking when she unmutes.
    let tone = tone_wav(&dir, 440.0, 30.0);

    let mut bob = CallProc::start(&relay, "bob", "unmute", &[]);
    bob.expect_line("joined bob", LINE);
    let mut alice = CallProc::start(
        &relay,
        "alice",
        "unmute",
        &["--input", tone.to_str().expect("utf-8")],
    );
    alice.expect_line("joined alice", LINE);
    wait_metrics(
        &relay,
        LINE,
        "alice talking",
        || {},
        |m| m.get(FORWARDED) >= 25,
    );

    alice.type_line("/mute");
    bob.expect_line("muted alice", LINE);
    alice.type_line("/unmute");
    assert_eq!(bob.expect_line("unmuted alice", LINE), ["unmuted alice"]);
    // A second's worth of packets after the unmute: the tone goes on where it is now.
    let at_unmute = Metrics::read(&relay).get(FORWARDED);
    wait_metrics(
        &relay,
        LINE,
        "media after /unmute",
        || {},
        |m| m.get(FORWARDED) >= at_unmute + 50,
    );

    let alice = alice.hang_up(LINE);
    let mut own = alice.lines.clone();
    own.retain(|l| l != "joined bob");
    assert_eq!(own, ["joined alice", "muted alice", "unmuted alice"]);
    bob.expect_line("left alice", LINE);
    let bob = bob.hang_up(LINE);
    assert_eq!(
        bob.lines,
        [
            "joined bob",
            "joined alice",
            "muted alice",
            "unmuted alice",
            "left alice"
        ]
    );
    // Bob heard the media from both sides of the mute. Alice leaves while talking, so her
    // last packet may trail her DEL (docs/wire-vors.md §10): bob no longer has her key.
    let (sent, heard) = (alice.summary().sent, bob.summary().received);
    assert!(
        heard + 1 >= sent && heard <= sent,
        "bob heard {heard} of {sent}"
    );
    assert!(
        sent >= 75,
        "25 before the mute and 50 after the unmute; sent {sent}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn commands_queued_in_process() {
    let relay = Relay::start(&["--cores", "2"], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let key = parse_public_key(&relay.vors_pubkey).expect("relay key");
    let mut config = CallConfig::new(&relay.vors.to_string(), key, "solo", "quiet");
    // A backstop only: the queued Leave ends the call long before.
    config.duration = Some(LINE);
    let call = Call::connect(config).expect("connect");
    let commands = call.commands();
    // Queued before the call is in the room: applied once it is, in order.
    assert!(commands.send(Command::Mute));
    assert!(commands.send(Command::Chat("x".repeat(2_000))));
    assert!(commands.send(Command::Chat("short".to_owned())));
    assert!(commands.send(Command::Leave));
    let mut events = Vec::new();
    let summary = call
        .run(&AtomicBool::new(false), |e| events.push(e))
        .expect("run");
    assert!(summary.sid.is_some(), "joined: {events:?}");
    assert_eq!(summary.stats.packets_sent, 0);
    assert_eq!(events.first(), Some(&CallEvent::Joined("solo".to_owned())));
    assert_eq!(events.get(1), Some(&CallEvent::Muted("solo".to_owned())));
    // Over the 1024-byte chat limit: not sent, and said so; the call goes on.
    assert!(
        matches!(events.get(2), Some(CallEvent::Notice(n)) if n.starts_with("chat not sent")),
        "{events:?}"
    );
    assert_eq!(events.len(), 3, "{events:?}");

    // One member joined and left; nothing it sent was dropped.
    let m = wait_rooms_gone(&relay, LINE);
    assert_eq!(m.get("moose_vors_joins_total"), 1, "{}", m.vors());
    assert_eq!(m.drops_except(&["cookie_repeat"]), [], "{}", m.vors());
}
