//! Raw PCM files as `moose-call --input-cmd` / `--output-cmd` carry them (48 kHz mono signed
//! 16-bit little-endian, no header), and the frame-by-frame reading of a captured playback:
//! where the tone starts and ends, and what lies between.

use std::path::{Path, PathBuf};

use moose_bench::audio::{FRAME_SAMPLES, SAMPLE_RATE, rms, sine, tone_fraction};

/// RMS below which a 20 ms frame counts as silence (about -50 dBFS).
pub const SILENT_RMS: f64 = 100.0;

/// Writes `seconds` of a sine at `freq` Hz (peak 8000) as raw s16le and returns its path.
pub fn tone_raw(dir: &Path, freq: f64, seconds: f64) -> PathBuf {
    let path = dir.join(format!("tone-{freq}.raw"));
    let samples = (seconds * f64::from(SAMPLE_RATE)) as usize;
    let bytes: Vec<u8> = sine(freq, 8_000.0, samples)
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Reads a raw s16le file (a trailing odd byte is ignored).
pub fn read_raw(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// A capture read 20 ms frame by 20 ms frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameScan {
    /// Whole frames in the capture.
    pub frames: usize,
    /// Index of the first and last frame that holds the tone, if any does.
    pub tone_span: Option<(usize, usize)>,
    /// Frames in the span that do not hold the tone.
    pub off_tone_in_span: usize,
    /// Silent frames in the span.
    pub silent_in_span: usize,
    /// The longest run of silent frames in the span.
    pub longest_silence_in_span: usize,
}

impl FrameScan {
    /// Frames from the first tone frame to the last, both included.
    pub fn span_frames(&self) -> usize {
        self.tone_span.map_or(0, |(a, b)| b - a + 1)
    }
}

/// Sorts the capture's frames into tone (`freq` Hz holds most of the energy, and the frame is
/// louder than `min_rms`), silence, and other.
pub fn scan_frames(pcm: &[i16], freq: f64, min_rms: f64) -> FrameScan {
    let frames: Vec<&[i16]> = pcm.chunks_exact(FRAME_SAMPLES).collect();
    let is_tone = |f: &[i16]| rms(f) >= min_rms && tone_fraction(f, freq) > 0.5;
    let first = frames.iter().position(|f| is_tone(f));
    let last = frames.iter().rposition(|f| is_tone(f));
    let mut scan = FrameScan {
        frames: frames.len(),
        tone_span: first.zip(last),
        off_tone_in_span: 0,
        silent_in_span: 0,
        longest_silence_in_span: 0,
    };
    if let Some((a, b)) = scan.tone_span {
        let mut run = 0;
        for f in &frames[a..=b] {
            if !is_tone(f) {
                scan.off_tone_in_span += 1;
            }
            if rms(f) < SILENT_RMS {
                scan.silent_in_span += 1;
                run += 1;
                scan.longest_silence_in_span = scan.longest_silence_in_span.max(run);
            } else {
                run = 0;
            }
        }
    }
    scan
}
