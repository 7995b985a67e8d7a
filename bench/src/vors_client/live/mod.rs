//! Live sound for a call: a microphone and a speaker instead of (or besides) the WAV file
//! and the recordings.
//!
//! - [`pipes`]: `--input-cmd` / `--output-cmd`, raw PCM through shell commands;
//! - [`jitter`]: one member's adaptive, bounded jitter buffer (what to play at each tick);
//! - [`mixer`]: every other member through their jitter buffer and decoder, summed;
//! - [`queue`]: the bounded sample queue between a sound clock and the call's 20 ms clock.
//!
//! The call's frame clock drives both directions: at each 20 ms tick it takes one frame from
//! the microphone ([`Capture::next_frame`]) and gives one mixed frame to the speaker
//! ([`Playback::play`]). The sound's own clocks only fill or drain the bounded queues between.

pub mod jitter;
pub mod mixer;
pub mod pipes;
pub(crate) mod queue;

use crate::audio::{FRAME_SAMPLES, rms};

pub use jitter::{JitterBuffer, JitterStats, Slot};
pub use mixer::{Mixer, VoiceInfo};
pub use pipes::{InputPipe, OutputPipe};

/// What a microphone or speaker thread tells the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveEvent {
    /// The input command finished with status 0: nothing more to send; the call goes on.
    InputEnded(String),
    /// A command failed or a device stopped: the call leaves with this error.
    Failed(String),
}

/// What the microphone had at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFrame {
    /// A whole frame.
    Ready,
    /// Not enough yet: the source is behind the call's clock (the frame is silence).
    Behind,
    /// The source has ended and everything it made was taken.
    Ended,
}

/// Where the microphone's frames come from.
#[derive(Debug)]
pub enum Capture {
    /// `--input-cmd`.
    Pipe(InputPipe),
}

impl Capture {
    /// The next 20 ms (silence unless [`CaptureFrame::Ready`]).
    pub fn next_frame(&mut self, out: &mut [i16; FRAME_SAMPLES]) -> CaptureFrame {
        match self {
            Capture::Pipe(pipe) => pipe.next_frame(out),
        }
    }

    /// Stops the source.
    pub fn stop(self) {
        match self {
            Capture::Pipe(pipe) => pipe.stop(),
        }
    }
}

/// Where the mixed playback goes.
#[derive(Debug)]
pub enum Playback {
    /// `--output-cmd`.
    Pipe(OutputPipe),
}

impl Playback {
    /// Queues one mixed frame.
    pub fn play(&mut self, frame: &[i16; FRAME_SAMPLES]) {
        match self {
            Playback::Pipe(pipe) => pipe.play(frame),
        }
    }

    /// Plays out what is queued, then stops.
    pub fn stop(self) {
        match self {
            Playback::Pipe(pipe) => pipe.stop(),
        }
    }
}

/// A level meter reading: the frame's RMS as a share of full scale, in dBFS (-90 for
/// silence).
pub fn level_dbfs(frame: &[i16]) -> f64 {
    let r = rms(frame);
    if r < 1.0 {
        -90.0
    } else {
        (20.0 * (r / 32_768.0).log10()).max(-90.0)
    }
}
