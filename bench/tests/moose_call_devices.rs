//! Sound devices (`--input-device`, `--output-device`, `--list-devices`) on ALSA, with no sound
//! card: each test writes an `.asoundrc` into a HOME of its own whose PCMs are ALSA's `file`
//! plugin over its `null` plugin (capture reads a raw file, playback writes one).
//!
//! Needs the `sound-devices` feature (scripts/test.sh builds with it); without it this file
//! holds no test.
#![cfg(feature = "sound-devices")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use moose_bench::audio::{rms, tone_fraction};
use moose_testkit::call::CallProc;
use moose_testkit::pcm::{SILENT_RMS, read_raw, tone_raw};
use moose_testkit::relay::Relay;
use moose_testkit::temp::temp_dir;

const LINE: Duration = Duration::from_secs(15);
const TONE_HZ: f64 = 1000.0;
/// The period moose-call asks a device for: 10 ms.
const PERIOD: usize = 480;
/// 1 ms of the 48 kHz mono files.
const MS: usize = 48;

/// A HOME whose `.asoundrc` defines `tonein` (capture from `tone`), `roomout` (playback into
/// `out`) and `brokenout` (playback into /dev/full, where every write fails).
fn alsa_home(dir: &Path, tone: &Path, out: &Path) -> PathBuf {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("make HOME");
    let asoundrc = format!(
        r#"pcm.tonein {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{tone}"
    format "raw"
    hint {{ show on description "a tone from a file" }}
}}
pcm.roomout {{
    type file
    slave.pcm "null"
    file "{out}"
    format "raw"
    hint {{ show on description "the room into a file" }}
}}
pcm.brokenout {{
    type file
    slave.pcm "null"
    file "/dev/full"
    format "raw"
}}
"#,
        tone = tone.display(),
        out = out.display()
    );
    std::fs::write(home.join(".asoundrc"), asoundrc).expect("write .asoundrc");
    home
}

#[test]
fn list_devices_names_the_asoundrc_pcms() {
    let dir = temp_dir("devices-list");
    let tone = tone_raw(&dir, TONE_HZ, 1.0);
    let home = alsa_home(&dir, &tone, &dir.join("out.raw"));
    let list = CallProc::spawn_with_env("lister", &["--list-devices"], &[("HOME", &home)]);
    let exit = list.wait(LINE);
    exit.assert_success("moose-call --list-devices");
    let names: Vec<&str> = exit
        .lines
        .iter()
        .filter_map(|line| line.split('\t').next())
        .collect();
    for pcm in ["tonein", "roomout", "brokenout", "null"] {
        assert!(names.contains(&pcm), "{pcm} not listed: {:?}", exit.lines);
    }
    let tonein = exit
        .lines
        .iter()
        .find(|line| line.starts_with("tonein\t"))
        .expect("tonein's line");
    assert!(tonein.contains("a tone from a file"), "{tonein}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_device_is_refused_naming_those_there_are() {
    let dir = temp_dir("devices-unknown");
    let tone = tone_raw(&dir, TONE_HZ, 1.0);
    let home = alsa_home(&dir, &tone, &dir.join("out.raw"));
    let key = "0f".repeat(32);
    for flag in ["--input-device", "--output-device"] {
        // Refused before connecting: nobody listens on the discard port.
        let args = [
            "--server",
            "127.0.0.1:9",
            "--pubkey",
            &key,
            "--name",
            "ann",
            "--room",
            "r",
            flag,
            "no-such-pcm",
        ];
        let exit = CallProc::spawn_with_env("ann", &args, &[("HOME", &home)]).wait(LINE);
        assert_eq!(exit.status.code(), Some(1), "{}", exit.stderr);
        let way = if flag == "--input-device" {
            "input"
        } else {
            "output"
        };
        assert!(
            exit.stderr.contains(&format!(
                "moose-call: no sound {way} device `no-such-pcm`; the system has: "
            )),
            "{}",
            exit.stderr
        );
        assert!(exit.stderr.contains("roomout"), "{}", exit.stderr);
        assert!(!exit.stderr.contains("cannot connect"), "{}", exit.stderr);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_tone_from_an_alsa_device_plays_into_an_alsa_device() {
    let relay = Relay::start(&[], &[]);
    let dir = temp_dir("devices-tone");
    let tone = tone_raw(&dir, TONE_HZ, 2.0);
    let out = dir.join("bob.raw");
    let home = alsa_home(&dir, &tone, &out);
    let env = [("HOME", home.as_path())];
    let mut bob = CallProc::start_with_env(
        &relay,
        "bob",
        "devices",
        &["--output-device", "roomout"],
        &env,
    );
    bob.expect_line("joined bob", LINE);
    let alice = CallProc::start_with_env(
        &relay,
        "alice",
        "devices",
        &["--input-device", "tonein", "--seconds", "2"],
        &env,
    );
    bob.expect_line("left alice", LINE);
    let alice = alice.hang_up(LINE);
    let bob = bob.hang_up(LINE);

    // Alice's microphone is a tone, never silence (which DTX would not send): 100 frames.
    let sent = alice.summary().sent;
    assert!(sent >= 98, "alice sent {sent} packets:\n{}", alice.stderr);
    let (decoded, stretched) = played(&bob.stderr, "alice");
    // The frames still in bob's jitter buffer when alice leaves (its target plus one frame,
    // 3 frames on a machine this loaded) are not played.
    assert!(
        decoded + 4 >= sent,
        "bob played {decoded} of {sent}:\n{}",
        bob.stderr
    );

    // The null plugin has no clock: bob's speaker takes a period (10 ms) whenever it asks,
    // and between the call's frames that is silence. So the file is mostly silence, and
    // every 20 ms frame played is 20 ms of sound in it: all of them, and the tone. A frame
    // need not start on a period's edge (it lands wherever the speaker's queue stood), so the
    // sound is counted in 1 ms blocks: 20 per frame, give or take a part-filled block at
    // either end.
    let pcm = read_raw(&out);
    let sounding_ms = pcm
        .chunks_exact(MS)
        .filter(|block| rms(block) >= SILENT_RMS)
        .count();
    // A stretch mid-speech is a frame of PLC: sound too. Opus' start-up is quieter: 40 ms.
    let (least, most) = (19 * decoded as usize, 21 * (decoded + stretched) as usize);
    assert!(
        (least.saturating_sub(40)..=most).contains(&sounding_ms),
        "{sounding_ms} ms of sound for {decoded} frames decoded and {stretched} stretched"
    );
    let sounding: Vec<&[i16]> = pcm
        .chunks_exact(PERIOD)
        .filter(|block| rms(block) >= SILENT_RMS)
        .collect();
    let tone = sounding
        .iter()
        .filter(|block| tone_fraction(block, TONE_HZ) > 0.9)
        .count();
    // Opus' start-up is not quite the tone.
    assert!(
        tone + 6 >= sounding.len(),
        "{tone} of {} periods are the tone",
        sounding.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// D and T from `moose-call: played NAME: D frames decoded, C concealed, S silent, L late,
/// K skipped, T stretched; ...`.
fn played(stderr: &str, name: &str) -> (u64, u64) {
    let prefix = format!("moose-call: played {name}: ");
    let counts: Vec<u64> = stderr
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no `played {name}` line:\n{stderr}"))
        .split(", ")
        .filter_map(|part| part.split_whitespace().next()?.parse().ok())
        .collect();
    (counts[0], counts[5])
}

#[test]
fn a_device_that_fails_ends_the_call() {
    let relay = Relay::start(&[], &[]);
    let dir = temp_dir("devices-broken");
    let tone = tone_raw(&dir, TONE_HZ, 1.0);
    let home = alsa_home(&dir, &tone, &dir.join("out.raw"));
    // The speaker starts before the call connects, and its first write fails: carol may or
    // may not get into the room first, and leaves either way.
    let carol = CallProc::start_with_env(
        &relay,
        "carol",
        "devices-broken",
        &["--output-device", "brokenout"],
        &[("HOME", home.as_path())],
    );
    let carol = carol.wait(LINE);
    assert_eq!(carol.status.code(), Some(1), "{}", carol.stderr);
    assert!(
        carol
            .stderr
            .contains("moose-call: sound output device `brokenout` failed: "),
        "{}",
        carol.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}
