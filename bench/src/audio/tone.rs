//! Tone analysis, so a test can tell that a recording still holds the tone that was sent.
//!
//! The Goertzel algorithm measures the energy of one frequency in a block of samples. For a
//! block `x[0..N]` and angular frequency `w = 2π f / fs` it runs
//! `s[n] = x[n] + 2cos(w)·s[n-1] - s[n-2]` and gives
//! `|X(w)|² = s[N-1]² + s[N-2]² - 2cos(w)·s[N-1]·s[N-2]`, the squared magnitude of the
//! block's DTFT at `w`; `f` need not fall on a DFT bin. A pure sine of amplitude `A` at `f`
//! has `|X(w)| ≈ A·N/2` and energy `Σx² ≈ A²·N/2`, so `2|X(w)|² / (N·Σx²)` is the share of the
//! block's energy at `f`: about 1 for the tone, about 0 for anything a few `fs/N` away.

use std::f64::consts::TAU;

use super::SAMPLE_RATE;

/// Block length [`scan_tone`] judges separately: 100 ms, so its frequency resolution
/// (`fs/N` = 10 Hz) tells 440 Hz from 450 Hz while Opus' start-up and each concealed or
/// silent stretch spoil only a few blocks.
pub const SCAN_WINDOW: usize = SAMPLE_RATE as usize / 10;
/// Share of a block's energy that must sit at the tone's frequency for the block to count
/// as the tone.
pub const TONE_MIN_FRACTION: f64 = 0.5;
/// Blocks quieter than this RMS (about -50 dBFS) count as silence, whatever their spectrum.
pub const SILENCE_RMS: f64 = 100.0;

/// `samples` samples of a sine at `freq_hz` with peak `amplitude` (clamped to i16), at 48 kHz.
pub fn sine(freq_hz: f64, amplitude: f64, samples: usize) -> Vec<i16> {
    let w = TAU * freq_hz / f64::from(SAMPLE_RATE);
    (0..samples)
        .map(|n| (amplitude * (w * n as f64).sin()).clamp(-32_768.0, 32_767.0) as i16)
        .collect()
}

/// `|X(w)|²` at `freq_hz` over the block (48 kHz), by Goertzel.
pub fn goertzel_power(samples: &[i16], freq_hz: f64) -> f64 {
    let coeff = 2.0 * (TAU * freq_hz / f64::from(SAMPLE_RATE)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// Root mean square of the block (0 for an empty one).
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (energy(samples) / samples.len() as f64).sqrt()
}

/// Share of the block's energy at `freq_hz`, `2|X(w)|² / (N·Σx²)`, clamped to 0..=1
/// (0 for silence).
pub fn tone_fraction(samples: &[i16], freq_hz: f64) -> f64 {
    let e = energy(samples);
    if e == 0.0 {
        return 0.0;
    }
    (2.0 * goertzel_power(samples, freq_hz) / (samples.len() as f64 * e)).clamp(0.0, 1.0)
}

/// How a recording's 100 ms blocks divide between the tone, silence and anything else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ToneScan {
    /// Whole blocks looked at (a trailing partial block is ignored).
    pub windows: usize,
    /// Blocks where at least [`TONE_MIN_FRACTION`] of the energy is at the tone.
    pub tone_windows: usize,
    /// Blocks quieter than [`SILENCE_RMS`].
    pub silent_windows: usize,
    /// Blocks with sound, but not the tone.
    pub other_windows: usize,
    /// Longest run of consecutive tone blocks.
    pub longest_tone_run: usize,
}

impl ToneScan {
    /// Share of all blocks that hold the tone (0 when there are none).
    pub fn tone_share(&self) -> f64 {
        if self.windows == 0 {
            0.0
        } else {
            self.tone_windows as f64 / self.windows as f64
        }
    }

    /// Seconds of tone found (blocks × 100 ms).
    pub fn tone_seconds(&self) -> f64 {
        self.tone_windows as f64 * SCAN_WINDOW as f64 / f64::from(SAMPLE_RATE)
    }
}

/// Sorts each 100 ms block of `samples` (48 kHz) into tone at `freq_hz`, silence or other.
pub fn scan_tone(samples: &[i16], freq_hz: f64) -> ToneScan {
    let mut scan = ToneScan::default();
    let mut run = 0;
    for block in samples.chunks_exact(SCAN_WINDOW) {
        scan.windows += 1;
        if rms(block) < SILENCE_RMS {
            scan.silent_windows += 1;
            run = 0;
        } else if tone_fraction(block, freq_hz) >= TONE_MIN_FRACTION {
            scan.tone_windows += 1;
            run += 1;
            scan.longest_tone_run = scan.longest_tone_run.max(run);
        } else {
            scan.other_windows += 1;
            run = 0;
        }
    }
    scan
}

fn energy(samples: &[i16]) -> f64 {
    samples.iter().map(|&x| f64::from(x) * f64::from(x)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pure_tone_is_all_at_its_frequency() {
        let tone = sine(440.0, 10_000.0, SCAN_WINDOW);
        assert!(tone_fraction(&tone, 440.0) > 0.98);
        // 30 Hz away is three resolution steps off: almost nothing there.
        assert!(tone_fraction(&tone, 470.0) < 0.05);
        assert!(tone_fraction(&tone, 1_000.0) < 0.01);
    }

    #[test]
    fn off_bin_frequencies_are_measured_too() {
        // 1234.5 Hz is not a multiple of the 10 Hz block resolution.
        let tone = sine(1_234.5, 5_000.0, SCAN_WINDOW);
        assert!(tone_fraction(&tone, 1_234.5) > 0.98);
    }

    #[test]
    fn rms_of_a_sine_is_peak_over_root_two() {
        let tone = sine(1_000.0, 1_000.0, SAMPLE_RATE as usize);
        assert!((rms(&tone) - 1_000.0 / 2f64.sqrt()).abs() < 2.0);
        assert_eq!(rms(&[]), 0.0);
    }

    #[test]
    fn scan_sorts_blocks() {
        let mut pcm = sine(440.0, 8_000.0, 5 * SCAN_WINDOW);
        pcm.extend(std::iter::repeat_n(0i16, 2 * SCAN_WINDOW));
        pcm.extend(sine(880.0, 8_000.0, 3 * SCAN_WINDOW));
        pcm.extend(sine(440.0, 8_000.0, 2 * SCAN_WINDOW));
        pcm.extend(std::iter::repeat_n(0i16, SCAN_WINDOW / 2)); // partial: ignored
        let scan = scan_tone(&pcm, 440.0);
        assert_eq!(
            scan,
            ToneScan {
                windows: 12,
                tone_windows: 7,
                silent_windows: 2,
                other_windows: 3,
                longest_tone_run: 5,
            }
        );
        assert!((scan.tone_share() - 7.0 / 12.0).abs() < 1e-9);
        assert!((scan.tone_seconds() - 0.7).abs() < 1e-9);
    }

    #[test]
    fn silence_is_not_a_tone() {
        assert_eq!(tone_fraction(&[0; 100], 440.0), 0.0);
        assert_eq!(scan_tone(&[], 440.0).tone_share(), 0.0);
    }
}
