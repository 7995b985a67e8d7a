//! A live call over a bad path: bob's side of the network loses every 20th media packet (5 %)
//! and delays each by a random 0 to 20 ms. Alice's microphone (`--input-cmd`) plays 5 s of a
//! 1 kHz tone; bob's speaker (`--output-cmd`) plays it with no gap: every loss is concealed
//! (PLC), the jitter buffer holds packets no longer than its bound, and the length of the
//! tone changes by no more than its few adjustments.

use std::time::Duration;

use moose_testkit::call::CallProc;
use moose_testkit::lossy_path::LossyPath;
use moose_testkit::pcm::{read_raw, scan_frames, tone_raw};
use moose_testkit::relay::Relay;
use moose_testkit::temp::temp_dir;

const LINE: Duration = Duration::from_secs(15);
const TONE_HZ: f64 = 1000.0;
const JITTER: Duration = Duration::from_millis(20);
/// The most the buffer may add at 20 ms of jitter: the jitter, its 5 ms margin, one frame of
/// tick phase and its 10 ms of hysteresis, with 10 ms for a loaded test machine.
const MAX_DELAY_MS: f64 = 20.0 + 5.0 + 20.0 + 10.0 + 10.0;

#[test]
fn jittery_path() {
    let relay = Relay::start(&[], &[]);
    let path = LossyPath::jittery(relay.vors, 20, JITTER);
    let dir = temp_dir("jittery");
    let tone = tone_raw(&dir, TONE_HZ, 5.0);
    let capture = dir.join("bob.raw");
    let output = format!("cat > '{}'", capture.display());
    let mut bob = CallProc::start_via(
        path.addr,
        &relay,
        "bob",
        "jitter",
        &["--output-cmd", &output],
    );
    bob.expect_line("joined bob", LINE);
    let input = format!("cat '{}'", tone.display());
    let alice = CallProc::start(
        &relay,
        "alice",
        "jitter",
        &["--input-cmd", &input, "--seconds", "6"],
    );
    bob.expect_line("left alice", LINE);
    let alice = alice.hang_up(LINE);
    // Each time alice's input command was late for her clock, a silent frame went out.
    let behind = alice.input_fell_behind() as usize;
    let bob = bob.hang_up(LINE);
    assert!(path.dropped() >= 12, "5% of 250 lost: {}", path.dropped());

    let played = played_line(&bob.stderr, "alice");
    // For docs/moose-call.md: what the buffer did on this path (`--no-capture` shows it).
    eprintln!("bob: {played:?}; path lost {}", path.dropped());
    let scan = scan_frames(&read_raw(&capture), TONE_HZ, 4_000.0);
    let context = format!("{scan:?}\n{played:?}\n{}", bob.stderr);
    // No gap: every lost or late packet was concealed, none became silence. One frame is
    // allowed for the test machine's own scheduling jitter on top of the path's (seen once
    // under a full test run on 2 CPUs).
    assert!(scan.silent_in_span <= behind + 1, "{context}");
    assert!(played.concealed >= path.dropped() - 1, "{context}");
    // 250 frames sent; the buffer's adjustments (skips, stretches) change that by a few.
    let span = scan.span_frames() as i64;
    assert!((245..=256 + behind as i64).contains(&span), "{context}");
    assert!(played.delay_max_ms <= MAX_DELAY_MS, "{context}");
    assert!(played.delay_mean_ms <= 20.0 + 5.0 + 20.0, "{context}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What bob's `moose-call: played NAME: ...` summary line says.
#[derive(Debug)]
struct Played {
    concealed: u64,
    delay_mean_ms: f64,
    delay_max_ms: f64,
}

fn played_line(stderr: &str, name: &str) -> Played {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix(&format!("moose-call: played {name}: ")))
        .unwrap_or_else(|| panic!("no played line for {name}:\n{stderr}"));
    let number_before = |word: &str| -> f64 {
        line.split([',', ';'])
            .find_map(|part| part.trim().strip_suffix(word)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {word:?} in {line:?}"))
    };
    let after = |word: &str| -> f64 {
        let rest = &line[line
            .find(word)
            .unwrap_or_else(|| panic!("no {word:?} in {line:?}"))
            + word.len()..];
        rest.trim_start()
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number after {word:?} in {line:?}"))
    };
    Played {
        concealed: number_before("concealed") as u64,
        delay_mean_ms: after("buffer delay mean"),
        delay_max_ms: after("max"),
    }
}
