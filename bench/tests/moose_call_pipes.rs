//! Live audio through pipes: alice's microphone is `--input-cmd` (a command printing 3 s of a
//! 1 kHz tone as raw PCM), bob's speaker is `--output-cmd` (a command writing what it gets to
//! a file). Bob's speaker plays the tone, 3 s of it to within a frame or two, unbroken.
//! Then the commands' failures: one that cannot run, and one that dies mid-call, each end the
//! call with a clear error after a clean leave.

use std::time::Duration;

use moose_testkit::call::CallProc;
use moose_testkit::pcm::{read_raw, scan_frames, tone_raw};
use moose_testkit::relay::Relay;
use moose_testkit::temp::temp_dir;

const LINE: Duration = Duration::from_secs(15);
const TONE_HZ: f64 = 1000.0;

#[test]
fn pipes_carry_a_tone_from_microphone_to_speaker() {
    let relay = Relay::start(&[], &[]);
    let dir = temp_dir("pipes");
    let tone = tone_raw(&dir, TONE_HZ, 3.0);
    let capture = dir.join("bob.raw");
    let output = format!("cat > '{}'", capture.display());
    let mut bob = CallProc::start(&relay, "bob", "pipes", &["--output-cmd", &output]);
    bob.expect_line("joined bob", LINE);
    let input = format!("cat '{}'", tone.display());
    let alice = CallProc::start(
        &relay,
        "alice",
        "pipes",
        &["--input-cmd", &input, "--seconds", "4"],
    );
    bob.expect_line("left alice", LINE);
    let alice = alice.hang_up(LINE);
    // A loaded machine may leave the input command behind the call's clock now and then:
    // each time, one frame of silence goes out (and is counted) in the middle of the tone.
    let behind = alice.input_fell_behind();
    assert_eq!(
        alice.summary().sent,
        150 + behind,
        "3 s of tone, no DTX:\n{}",
        alice.stderr
    );
    assert!(
        alice.stderr.contains("input command `cat "),
        "the end of the input is told:\n{}",
        alice.stderr
    );
    let bob = bob.hang_up(LINE);

    let pcm = read_raw(&capture);
    // The tone's own level (peak 8000, RMS 5657) give or take 3 dB: PLC's fade after the
    // last packet is not the tone any more.
    let scan = scan_frames(&pcm, TONE_HZ, 4_000.0);
    assert!(
        // Give or take two frames, and one more for the jitter buffer finding its target
        // in the first packets (a stretch).
        (148..=153 + behind as usize).contains(&scan.span_frames()),
        "150 frames of tone sent; {scan:?}\n{}",
        bob.stderr
    );
    assert!(scan.silent_in_span as u64 <= behind, "{scan:?}");
    // Opus' start-up and that stretch are not quite the tone.
    assert!(scan.off_tone_in_span as u64 <= 4 + behind, "{scan:?}");
    assert!(
        bob.stderr.contains("moose-call: played alice: "),
        "{}",
        bob.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_input_command_that_fails_ends_the_call() {
    let relay = Relay::start(&[], &[]);
    let mut bob = CallProc::start(&relay, "bob", "pipes-fail", &[]);
    bob.expect_line("joined bob", LINE);
    let alice = CallProc::start(
        &relay,
        "alice",
        "pipes-fail",
        &["--input-cmd", "head -c 48000 /dev/zero; exit 7"],
    );
    bob.expect_line("joined alice", LINE);
    // Alice's input died after half a second: she leaves, and says why.
    bob.expect_line("left alice", LINE);
    let alice = alice.wait(LINE);
    assert_eq!(alice.status.code(), Some(1), "{}", alice.stderr);
    assert!(
        alice
            .stderr
            .contains("input command `head -c 48000 /dev/zero; exit 7` failed: exit status: 7"),
        "{}",
        alice.stderr
    );
    bob.hang_up(LINE);
}

#[test]
fn an_output_command_that_cannot_run_ends_the_call() {
    let relay = Relay::start(&[], &[]);
    let carol = CallProc::start(
        &relay,
        "carol",
        "pipes-fail",
        &["--output-cmd", "no-such-player-here"],
    );
    let carol_exit = carol.wait(LINE);
    assert_eq!(carol_exit.status.code(), Some(1), "{}", carol_exit.stderr);
    assert!(
        carol_exit
            .stderr
            .contains("output command `no-such-player-here` failed: exit status: 127"),
        "{}",
        carol_exit.stderr
    );
}
