//! Sound for `moose-call`: the VoRS audio profile and the pieces that move PCM around it.
//!
//! VoRS fixes one format end to end: 48 kHz, mono, 16-bit signed little-endian PCM, cut into
//! 20 ms frames of [`FRAME_SAMPLES`] samples, each Opus-coded at about 24 kbit/s with DTX on,
//! and libopus' packet loss concealment for up to [`MAX_CONCEALED_FRAMES`] lost frames.
//!
//! - [`wav`]: read a WAV file into frames, write a WAV file as frames arrive.
//! - [`codec`]: the Opus encoder and decoder set up as the profile says (DTX, PLC).
//! - [`playout`]: turns a member's packet and frame counters into "conceal N, silence M,
//!   then decode", so a recording keeps the sender's timeline.
//! - [`track`]: one member's recording: decoder + playout + WAV file.
//! - [`tone`]: Goertzel tone analysis, so tests can tell a recording still holds a tone.

use std::fmt;
use std::path::PathBuf;

pub mod codec;
pub mod playout;
pub mod tone;
pub mod track;
pub mod wav;

pub use codec::{Encoded, VoiceDecoder, VoiceEncoder};
pub use playout::{Gap, Placement, Playout};
pub use tone::{ToneScan, rms, scan_tone, sine, tone_fraction};
pub use track::{Track, TrackStats};
pub use wav::{WavFrames, WavSink, read_wav, write_wav};

/// Samples per second, the only rate VoRS carries.
pub const SAMPLE_RATE: u32 = 48_000;
/// Channels: VoRS is mono.
pub const CHANNELS: u16 = 1;
/// Bits per sample in the WAV files moose-call reads and writes.
pub const BITS_PER_SAMPLE: u16 = 16;
/// Length of one audio frame; the FRAME counter advances once per frame.
pub const FRAME_MS: u32 = 20;
/// Samples in one 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = (SAMPLE_RATE / 1000 * FRAME_MS) as usize;
/// Opus target bitrate the profile is tuned for (bits per second).
pub const BITRATE: i32 = 24_000;
/// Longest run of lost frames that is filled with libopus' packet loss concealment; a longer
/// gap is concealed for this many frames and silent for the rest.
pub const MAX_CONCEALED_FRAMES: u32 = 32;
/// Largest Opus packet for one frame (RFC 6716 §3.2.1: 1275 bytes of frame data plus TOC and
/// length bytes stay below this).
pub const MAX_OPUS_PACKET: usize = 1500;

/// What went wrong reading, writing or coding audio.
#[non_exhaustive]
#[derive(Debug)]
pub enum AudioError {
    /// The WAV file could not be read or written (I/O or malformed header).
    Wav {
        /// The file concerned.
        path: PathBuf,
        /// What `hound` reported.
        source: hound::Error,
    },
    /// The WAV file is valid but not 48 kHz mono 16-bit integer PCM.
    WavFormat {
        /// The file concerned.
        path: PathBuf,
        /// Its sample rate.
        sample_rate: u32,
        /// Its channel count.
        channels: u16,
        /// Its bits per sample.
        bits_per_sample: u16,
    },
    /// libopus refused a call (bad argument, corrupt packet, ...).
    Opus(opus::Error),
}

impl fmt::Display for AudioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioError::Wav { path, source } => write!(f, "{}: {source}", path.display()),
            AudioError::WavFormat {
                path,
                sample_rate,
                channels,
                bits_per_sample,
            } => write!(
                f,
                "{}: need {SAMPLE_RATE} Hz mono {BITS_PER_SAMPLE}-bit integer PCM, found \
                 {sample_rate} Hz, {channels} channel(s), {bits_per_sample}-bit",
                path.display()
            ),
            AudioError::Opus(e) => write!(f, "opus: {e}"),
        }
    }
}

impl std::error::Error for AudioError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AudioError::Wav { source, .. } => Some(source),
            AudioError::WavFormat { .. } => None,
            AudioError::Opus(e) => Some(e),
        }
    }
}

impl From<opus::Error> for AudioError {
    fn from(e: opus::Error) -> Self {
        AudioError::Opus(e)
    }
}

/// WAV header spec of every file moose-call writes.
pub fn wav_spec() -> hound::WavSpec {
    hound::WavSpec {
        channels: CHANNELS,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: BITS_PER_SAMPLE,
        sample_format: hound::SampleFormat::Int,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_960_samples() {
        assert_eq!(FRAME_SAMPLES, 960);
    }

    #[test]
    fn format_error_names_what_was_found() {
        let e = AudioError::WavFormat {
            path: PathBuf::from("x.wav"),
            sample_rate: 44_100,
            channels: 2,
            bits_per_sample: 16,
        };
        let text = e.to_string();
        assert!(text.contains("44100 Hz"), "{text}");
        assert!(text.contains("2 channel"), "{text}");
    }
}
