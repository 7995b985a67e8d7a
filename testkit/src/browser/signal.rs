//! The real-browser call's test tone and the measurements that tell a tone from noise.
//!
//! Chromium loops the WAV as its fake microphone; the page resamples it to 200 kHz, so every
//! measurement here takes the sample rate as an argument.

use std::path::Path;

/// The fake microphone's tone. 1 kHz is no harmonic of the 390.625 Hz message rate, so
/// per-message artifacts cannot pass for the tone.
pub const TONE_HZ: f64 = 1000.0;
/// The WAV's rate; Chromium resamples it to the page's 200 kHz context.
pub const WAV_RATE: u32 = 48_000;
/// Peak amplitude of the tone as a fraction of full scale.
pub const TONE_AMPLITUDE: f64 = 0.5;

/// Writes a mono 16-bit PCM WAV of `seconds` of the tone. A whole number of seconds at 1 kHz
/// is a whole number of cycles, so Chromium's loop has no click.
pub fn write_tone_wav(path: &Path, seconds: u32) -> std::io::Result<()> {
    let frames = WAV_RATE * seconds;
    let data_len = frames * 2;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&WAV_RATE.to_le_bytes());
    wav.extend_from_slice(&(WAV_RATE * 2).to_le_bytes()); // byte rate
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for n in 0..frames {
        let x = TONE_AMPLITUDE
            * (std::f64::consts::TAU * TONE_HZ * f64::from(n) / f64::from(WAV_RATE)).sin();
        wav.extend_from_slice(&((x * 32767.0).round() as i16).to_le_bytes());
    }
    std::fs::write(path, wav)
}

/// Root mean square of the samples.
pub fn rms(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|x| x * x).sum::<f64>() / samples.len() as f64).sqrt()
}

/// The share of the signal's power that sits at `freq`, from 0 (none) to about 1 (a pure tone).
///
/// Goertzel: `s[n] = x[n] + 2cos(w)·s[n-1] − s[n-2]`, `w = 2π·freq/rate`; the bin's power is
/// s1² + s2² − 2cos(w)·s1·s2, and the amplitude of a sine at `freq` is 2·√power / N. A sine
/// of amplitude A has mean square A²/2, so (A²/2) / mean square is the tone's share.
pub fn tone_share(samples: &[f64], rate: f64, freq: f64) -> f64 {
    let mean_square = rms(samples).powi(2);
    if mean_square == 0.0 {
        return 0.0;
    }
    let coeff = 2.0 * (std::f64::consts::TAU * freq / rate).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in samples {
        let s = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let amplitude = 2.0 * power.max(0.0).sqrt() / samples.len() as f64;
    amplitude * amplitude / 2.0 / mean_square
}

/// The frequency estimated from rising zero crossings (interpolated between samples), or
/// `None` with fewer than two crossings.
pub fn zero_crossing_hz(samples: &[f64], rate: f64) -> Option<f64> {
    let mut first = None;
    let mut last = 0.0;
    let mut count = 0u32;
    for (i, pair) in samples.windows(2).enumerate() {
        let (a, b) = (pair[0], pair[1]);
        if a < 0.0 && b >= 0.0 {
            let t = i as f64 + a / (a - b);
            first.get_or_insert(t);
            last = t;
            count += 1;
        }
    }
    let first = first?;
    (count >= 2 && last > first).then(|| f64::from(count - 1) * rate / (last - first))
}

/// Pearson's chi-square of the byte histogram against the uniform distribution. For random
/// bytes it is about 255 ± 23 (255 degrees of freedom); PCM audio scores in the thousands.
pub fn byte_chi_square(bytes: &[u8]) -> f64 {
    let mut counts = [0u64; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let expected = bytes.len() as f64 / 256.0;
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

/// Reads int16 little-endian samples as floats in [-1, 1).
pub fn int16_le(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(2)
        .map(|p| f64::from(i16::from_le_bytes([p[0], p[1]])) / 32768.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: f64 = 200_000.0;

    fn sine(freq: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| 0.5 * (std::f64::consts::TAU * freq * i as f64 / RATE).sin())
            .collect()
    }

    /// Deterministic pseudo-random bytes (xorshift64), standing in for ciphertext.
    fn noise_bytes(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn a_pure_tone_holds_all_its_power_at_its_frequency() {
        let x = sine(TONE_HZ, 40_000);
        assert!(tone_share(&x, RATE, TONE_HZ) > 0.99);
        assert!(tone_share(&x, RATE, 1_500.0) < 0.01);
        let hz = zero_crossing_hz(&x, RATE).expect("crossings");
        assert!((hz - TONE_HZ).abs() < 1.0, "{hz}");
    }

    #[test]
    fn noise_has_no_tone_and_a_flat_histogram() {
        let bytes = noise_bytes(100_000);
        assert!(tone_share(&int16_le(&bytes), RATE, TONE_HZ) < 0.01);
        let chi = byte_chi_square(&bytes);
        assert!(chi < 400.0, "{chi}");
    }

    #[test]
    fn pcm_bytes_are_far_from_uniform() {
        let pcm: Vec<u8> = sine(TONE_HZ, 50_000)
            .iter()
            .flat_map(|x| ((x * 32767.0) as i16).to_le_bytes())
            .collect();
        assert!(byte_chi_square(&pcm) > 1000.0);
        assert!(tone_share(&int16_le(&pcm), RATE, TONE_HZ) > 0.99);
    }

    #[test]
    fn silence_has_no_frequency() {
        assert_eq!(zero_crossing_hz(&[0.0; 100], RATE), None);
        assert_eq!(tone_share(&[0.0; 100], RATE, TONE_HZ), 0.0);
    }

    #[test]
    fn the_wav_header_describes_the_data() {
        let dir = std::env::temp_dir().join(format!("moose-wav-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("tone.wav");
        write_tone_wav(&path, 1).expect("write wav");
        let wav = std::fs::read(&path).expect("read wav");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(wav.len(), 44 + 2 * WAV_RATE as usize);
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(&wav[36..40], b"data");
        assert_eq!(
            u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]),
            WAV_RATE
        );
        let samples = int16_le(&wav[44..]);
        let hz = zero_crossing_hz(&samples, f64::from(WAV_RATE)).expect("crossings");
        assert!((hz - TONE_HZ).abs() < 1.0, "{hz}");
    }
}
