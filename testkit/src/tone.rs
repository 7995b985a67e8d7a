//! Tones as the VoRS tests use them: a sine written as moose-call's input WAV, real Opus
//! frames of a tone, and the check that a call's recording holds the tone.

use std::path::{Path, PathBuf};

use moose_bench::audio::{
    Encoded, FRAME_SAMPLES, MAX_OPUS_PACKET, SAMPLE_RATE, VoiceEncoder, read_wav, scan_tone, sine,
    write_wav,
};

/// Writes `seconds` of a sine at `freq` Hz (48 kHz mono 16-bit) and returns its path.
pub fn tone_wav(dir: &Path, freq: f64, seconds: f64) -> PathBuf {
    let path = dir.join(format!("tone-{freq}.wav"));
    let samples = (seconds * f64::from(SAMPLE_RATE)) as usize;
    write_wav(&path, &sine(freq, 8_000.0, samples)).expect("write tone");
    path
}

/// Checks that the recording at `path` holds the tone at `freq` for most of its sound:
/// at least 90% of the non-silent 100 ms blocks, at least `min_seconds` of tone, and one
/// unbroken run of at least `min_run_seconds`.
pub fn assert_tone(path: &Path, freq: f64, min_seconds: f64, min_run_seconds: f64) {
    let pcm = read_wav(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let scan = scan_tone(&pcm, freq);
    let sounding = scan.windows - scan.silent_windows;
    let share = if sounding == 0 {
        0.0
    } else {
        scan.tone_windows as f64 / sounding as f64
    };
    let seconds = pcm.len() as f64 / f64::from(SAMPLE_RATE);
    let context = format!("{}: {seconds:.2} s recorded, {scan:?}", path.display());
    assert!(share >= 0.9, "tone in {share:.2} of the sound; {context}");
    assert!(
        scan.tone_seconds() >= min_seconds,
        "only {:.1} s of tone; {context}",
        scan.tone_seconds()
    );
    let run = scan.longest_tone_run as f64 * 0.1;
    assert!(
        run >= min_run_seconds,
        "longest tone run {run:.1} s; {context}"
    );
}

/// `count` real Opus frames of a sine at `freq` Hz, 20 ms each, as moose-call would send them:
/// media a test member sends is sound, not noise, in the others' recordings.
pub fn opus_frames(freq: f64, count: usize) -> Vec<Vec<u8>> {
    let mut encoder = VoiceEncoder::new().expect("encoder");
    let pcm = sine(freq, 8_000.0, FRAME_SAMPLES * count);
    pcm.chunks_exact(FRAME_SAMPLES)
        .map(|chunk| {
            let frame: &[i16; FRAME_SAMPLES] = chunk.try_into().expect("one frame");
            let mut out = vec![0u8; MAX_OPUS_PACKET];
            match encoder.encode(frame, &mut out).expect("encode") {
                Encoded::Packet(len) => out[..len].to_vec(),
                Encoded::Dtx => panic!("a tone is not silence"),
            }
        })
        .collect()
}
