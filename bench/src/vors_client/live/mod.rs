//! Live sound for a call: a microphone and a speaker instead of (or besides) the WAV file
//! and the recordings.
//!
//! - [`pipes`]: `--input-cmd` / `--output-cmd`, raw PCM through shell commands;
//! - [`devices`]: `--input-device` / `--output-device`, the sound system's devices through cpal
//!   (with the `sound-devices` feature; without it, naming a device is an error that says so);
//! - [`jitter`]: one member's adaptive, bounded jitter buffer (what to play at each tick);
//! - [`mixer`]: every other member through their jitter buffer and decoder, summed;
//! - [`queue`]: the bounded sample queue between a sound clock and the call's 20 ms clock.
//!
//! The call's frame clock drives both directions: at each 20 ms tick it takes one frame from
//! the microphone ([`Capture::next_frame`]) and gives one mixed frame to the speaker
//! ([`Playback::play`]). The sound's own clocks only fill or drain the bounded queues between:
//! a pipe's thread or a device's callback on one side, the call's tick on the other.

#[cfg(feature = "sound-devices")]
pub mod devices;
#[cfg(not(feature = "sound-devices"))]
#[path = "no_devices.rs"]
pub mod devices;
pub mod jitter;
pub mod mixer;
pub mod pipes;
pub(crate) mod queue;

use crate::audio::{FRAME_SAMPLES, rms};

pub use devices::{InputDevice, OutputDevice, list as list_devices};
pub use jitter::{JitterBuffer, JitterStats, Slot};
pub use mixer::{Mixer, VoiceInfo};
pub use pipes::{InputPipe, OutputPipe};

use std::sync::mpsc::Sender;

use super::CallConfig;
use super::error::CallError;
use super::net::Input;

/// Whether this build has the sound devices (the `sound-devices` feature).
pub const SOUND_DEVICES: bool = cfg!(feature = "sound-devices");

/// A sound device as `moose-call --list-devices` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The name `--input-device` and `--output-device` take (ALSA's PCM name).
    pub name: String,
    /// ALSA's description, its lines joined, if it has one.
    pub description: Option<String>,
    /// Whether it may record (ALSA's hint; a device listed for both may still refuse one).
    pub input: bool,
    /// Whether it may play.
    pub output: bool,
}

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
    /// `--input-device`.
    Device(InputDevice),
}

impl Capture {
    /// The next 20 ms (silence unless [`CaptureFrame::Ready`]).
    pub fn next_frame(&mut self, out: &mut [i16; FRAME_SAMPLES]) -> CaptureFrame {
        match self {
            Capture::Pipe(pipe) => pipe.next_frame(out),
            Capture::Device(device) => device.next_frame(out),
        }
    }

    /// Stops the source.
    pub fn stop(self) {
        match self {
            Capture::Pipe(pipe) => pipe.stop(),
            Capture::Device(device) => device.stop(),
        }
    }
}

/// Where the mixed playback goes.
#[derive(Debug)]
pub enum Playback {
    /// `--output-cmd`.
    Pipe(OutputPipe),
    /// `--output-device`.
    Device(OutputDevice),
}

impl Playback {
    /// Queues one mixed frame.
    pub fn play(&mut self, frame: &[i16; FRAME_SAMPLES]) {
        match self {
            Playback::Pipe(pipe) => pipe.play(frame),
            Playback::Device(device) => device.play(frame),
        }
    }

    /// Plays out what is queued, then stops.
    pub fn stop(self) {
        match self {
            Playback::Pipe(pipe) => pipe.stop(),
            Playback::Device(device) => device.stop(),
        }
    }

    /// Starts the speaker the configuration names, if any: an output command or device.
    pub(crate) fn start(
        config: &CallConfig,
        events: &Sender<Input>,
    ) -> Result<Option<Playback>, CallError> {
        if let Some(command) = config.output_cmd.as_deref() {
            let pipe = OutputPipe::start(command, config.quiet_commands, events.clone())?;
            return Ok(Some(Playback::Pipe(pipe)));
        }
        if let Some(name) = config.output_device.as_deref() {
            let device = OutputDevice::start(name, events.clone())?;
            return Ok(Some(Playback::Device(device)));
        }
        Ok(None)
    }
}

/// The microphone the configuration names, chosen before the call connects (a device that
/// does not exist fails at once) and started when we join, so it holds no sound from before.
#[derive(Debug)]
pub(crate) enum CaptureSource {
    /// `--input-cmd` and whether its stderr goes to /dev/null.
    Command(String, bool),
    /// `--input-device`, found and its format chosen.
    Device(devices::DeviceSetup),
}

impl CaptureSource {
    /// The configured microphone, if any: an input command or device.
    pub(crate) fn choose(config: &CallConfig) -> Result<Option<CaptureSource>, CallError> {
        if let Some(command) = config.input_cmd.as_deref() {
            return Ok(Some(CaptureSource::Command(
                command.to_owned(),
                config.quiet_commands,
            )));
        }
        config
            .input_device
            .as_deref()
            .map(|name| InputDevice::find(name).map(CaptureSource::Device))
            .transpose()
    }

    /// Starts it; its end or failure goes to `events`.
    pub(crate) fn start(self, events: &Sender<Input>) -> Result<Capture, CallError> {
        Ok(match self {
            CaptureSource::Command(command, quiet) => {
                Capture::Pipe(InputPipe::start(&command, quiet, events.clone())?)
            }
            CaptureSource::Device(setup) => {
                Capture::Device(InputDevice::start(setup, events.clone())?)
            }
        })
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
