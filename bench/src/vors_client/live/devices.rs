//! `--input-device` and `--output-device`: the microphone and the speaker straight on the
//! sound system, through cpal on ALSA (the `sound-devices` feature; `no_devices.rs` stands in
//! without it).
//!
//! A device plugs in where the pipes do: its callback, on cpal's thread and the device's clock,
//! moves samples between the device and the same bounded [`SampleQueue`] the call's 20 ms
//! clock takes frames from or gives frames to. A callback never waits:
//!
//! - capture pushes with [`SampleQueue::push_overwrite`]: a device faster than the call's
//!   clock drops its oldest samples past the queue's few frames, and one slower leaves the
//!   queue short at a tick (the frame is silence, a stretch), as with the pipes;
//! - playback takes what is queued with [`SampleQueue::pop_fill`] and plays silence for the
//!   rest; the call's own pushes drop the oldest frames past the queue's capacity.
//!
//! The VoRS format is 48 kHz mono 16-bit. Devices that do not take it as such are met half
//! way: any channel count (capture averages the channels, playback puts the same sound on
//! each), and 16- or 32-bit integer, 8-bit or float samples, converted. The rate is not
//! converted: a device that cannot run at 48 kHz is refused with the rates it can, and ALSA's
//! `plughw:` and `default` devices, which resample, are the way to use it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{
    BufferSize, FromSample, Sample, SampleFormat, StreamConfig, SupportedBufferSize,
    SupportedStreamConfigRange,
};

use super::pipes::{CAPTURE_QUEUE_FRAMES, PLAYBACK_QUEUE_FRAMES};
use super::queue::SampleQueue;
use super::{CaptureFrame, DeviceInfo, LiveEvent};
use crate::audio::FRAME_SAMPLES;
use crate::vors_client::error::CallError;
use crate::vors_client::net::Input;

/// The VoRS sample rate, which the device must run at.
const RATE: u32 = 48_000;
/// The device period asked for when the device allows it: 10 ms, half a frame, so the
/// device adds little delay and the call's tick finds a frame ready.
const PERIOD_FRAMES: u32 = 480;
/// What a device that does not say its period is assumed to hand over at most at once.
const LARGEST_PERIOD: usize = 4096;

/// Every sound device the system names, in ALSA's order.
pub fn list() -> Result<Vec<DeviceInfo>, CallError> {
    let host = cpal::default_host();
    let devices = host
        .devices()
        .map_err(|e| CallError::Live(format!("cannot list the sound devices: {e}")))?;
    Ok(devices
        .filter_map(|device| {
            let name = device.id().ok()?.id().to_owned();
            let description = device.description().ok().and_then(|d| {
                let lines: Vec<&str> = d.extended().collect();
                (!lines.is_empty()).then(|| lines.join(" · "))
            });
            Some(DeviceInfo {
                name,
                description,
                input: device.supports_input(),
                output: device.supports_output(),
            })
        })
        .collect())
}

/// Which way a device is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Input,
    Output,
}

impl Direction {
    fn noun(self) -> &'static str {
        match self {
            Direction::Input => "input",
            Direction::Output => "output",
        }
    }
}

/// A device found and its stream's format chosen, not started yet: the microphone is found
/// before the call connects (so a wrong name fails at once) and started when we join.
pub struct DeviceSetup {
    device: cpal::Device,
    name: String,
    config: StreamConfig,
    format: SampleFormat,
}

impl std::fmt::Debug for DeviceSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceSetup")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("format", &self.format)
            .finish()
    }
}

impl DeviceSetup {
    /// Finds the device `name` (`default`: the system's default) and chooses its format.
    fn find(name: &str, direction: Direction) -> Result<Self, CallError> {
        let host = cpal::default_host();
        let device = if name == "default" {
            match direction {
                Direction::Input => host.default_input_device(),
                Direction::Output => host.default_output_device(),
            }
        } else {
            host.devices()
                .ok()
                .and_then(|mut all| all.find(|d| d.id().is_ok_and(|id| id.id() == name)))
        };
        let device = device.ok_or_else(|| unknown_device(name, direction))?;
        let ranges: Vec<SupportedStreamConfigRange> = match direction {
            Direction::Input => device.supported_input_configs().map(Iterator::collect),
            Direction::Output => device.supported_output_configs().map(Iterator::collect),
        }
        .map_err(|e| {
            CallError::Live(format!(
                "sound device `{name}` cannot be opened for {}: {e}",
                direction.noun()
            ))
        })?;
        let (config, format) = choose(&ranges).map_err(|why| {
            CallError::Live(format!(
                "sound device `{name}` cannot be used for {}: {why}",
                direction.noun()
            ))
        })?;
        Ok(DeviceSetup {
            device,
            name: name.to_owned(),
            config,
            format,
        })
    }

    /// Samples the device hands over or asks for at once, at most.
    fn period_samples(&self) -> usize {
        match self.config.buffer_size {
            BufferSize::Fixed(frames) => frames as usize,
            BufferSize::Default => LARGEST_PERIOD,
        }
    }

    /// A queue for `frames` of the call's plus one period of the device's.
    fn queue(&self, frames: usize) -> Arc<SampleQueue> {
        Arc::new(SampleQueue::new(
            frames * FRAME_SAMPLES + self.period_samples(),
        ))
    }
}

/// The error for a name no device has, naming those there are.
fn unknown_device(name: &str, direction: Direction) -> CallError {
    let names: Vec<String> = list()
        .unwrap_or_default()
        .into_iter()
        .filter(|d| match direction {
            Direction::Input => d.input,
            Direction::Output => d.output,
        })
        .map(|d| d.name)
        .collect();
    let known = if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    };
    CallError::Live(format!(
        "no sound {} device `{name}`; the system has: {known} (moose-call --list-devices)",
        direction.noun()
    ))
}

/// The sample formats we convert, in order of preference (16-bit first: no conversion).
const FORMATS: [SampleFormat; 7] = [
    SampleFormat::I16,
    SampleFormat::F32,
    SampleFormat::I32,
    SampleFormat::U16,
    SampleFormat::F64,
    SampleFormat::I8,
    SampleFormat::U8,
];

/// The stream to ask for among what the device supports: 48 kHz, the fewest channels, the
/// most convenient format, a 10 ms period where allowed. Or why none will do.
fn choose(ranges: &[SupportedStreamConfigRange]) -> Result<(StreamConfig, SampleFormat), String> {
    let at_our_rate = |r: &&SupportedStreamConfigRange| {
        (r.min_sample_rate()..=r.max_sample_rate()).contains(&RATE)
    };
    let best = ranges
        .iter()
        .filter(at_our_rate)
        .filter_map(|r| {
            let rank = FORMATS.iter().position(|&f| f == r.sample_format())?;
            Some((r.channels(), rank, r))
        })
        .filter(|(channels, _, _)| *channels > 0)
        .min_by_key(|(channels, rank, _)| (*channels, *rank));
    let Some((channels, _, range)) = best else {
        return Err(if ranges.iter().any(|r| at_our_rate(&r)) {
            let formats: Vec<String> = ranges
                .iter()
                .map(|r| r.sample_format().to_string())
                .collect();
            format!(
                "no sample format moose-call converts (it offers {})",
                dedup(formats).join(", ")
            )
        } else {
            format!(
                "it does not run at 48 kHz (it offers {}); use its `plughw:` device or \
                 `default`, which convert the rate",
                rates(ranges)
            )
        });
    };
    let buffer_size = match *range.buffer_size() {
        SupportedBufferSize::Range { min, max } if (min..=max).contains(&PERIOD_FRAMES) => {
            BufferSize::Fixed(PERIOD_FRAMES)
        }
        _ => BufferSize::Default,
    };
    let config = StreamConfig {
        channels,
        sample_rate: RATE,
        buffer_size,
    };
    Ok((config, range.sample_format()))
}

/// The rates the ranges offer, for an error message.
fn rates(ranges: &[SupportedStreamConfigRange]) -> String {
    let spans: Vec<String> = ranges
        .iter()
        .map(|r| {
            let (min, max) = (r.min_sample_rate(), r.max_sample_rate());
            if min == max {
                format!("{min} Hz")
            } else {
                format!("{min}-{max} Hz")
            }
        })
        .collect();
    let spans = dedup(spans);
    if spans.is_empty() {
        "no configuration at all".to_owned()
    } else {
        spans.join(", ")
    }
}

fn dedup(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items.dedup();
    items
}

/// Runs `$body` with `$T` the Rust sample type of `$format` (one of [`FORMATS`]).
macro_rules! with_sample_type {
    ($format:expr, $T:ident => $body:expr) => {
        match $format {
            SampleFormat::I16 => {
                type $T = i16;
                $body
            }
            SampleFormat::F32 => {
                type $T = f32;
                $body
            }
            SampleFormat::I32 => {
                type $T = i32;
                $body
            }
            SampleFormat::U16 => {
                type $T = u16;
                $body
            }
            SampleFormat::F64 => {
                type $T = f64;
                $body
            }
            SampleFormat::I8 => {
                type $T = i8;
                $body
            }
            SampleFormat::U8 => {
                type $T = u8;
                $body
            }
            // `choose` picks only from FORMATS.
            other => Err(CallError::Live(format!(
                "sample format {other} is not converted"
            ))),
        }
    };
}

/// Mono 16-bit from interleaved frames of `channels`: the channels' mean.
fn downmix<T>(interleaved: &[T], channels: usize, out: &mut Vec<i16>)
where
    T: Sample,
    i16: FromSample<T>,
{
    out.clear();
    out.extend(interleaved.chunks_exact(channels.max(1)).map(|frame| {
        let sum: i32 = frame.iter().map(|&s| i32::from(i16::from_sample(s))).sum();
        // The mean of 16-bit values fits 16 bits.
        i16::try_from(sum / frame.len() as i32).unwrap_or(0)
    }));
}

/// Interleaved frames of `channels` from mono 16-bit: the same sound on every channel.
fn upmix<T>(mono: &[i16], channels: usize, out: &mut [T])
where
    T: Sample + FromSample<i16>,
{
    for (frame, &sample) in out.chunks_exact_mut(channels.max(1)).zip(mono) {
        frame.fill(T::from_sample(sample));
    }
}

/// A stream running and the queue between its callback and the call.
struct Running {
    stream: cpal::Stream,
    queue: Arc<SampleQueue>,
    /// Set when we stop it, so the error callback stays quiet.
    stopping: Arc<AtomicBool>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl Running {
    fn stop(self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.queue.close();
        // Dropping the stream ends cpal's thread and closes the device.
        drop(self.stream);
    }
}

/// The error callback: an xrun (the device's buffer ran over or under) is part of life; any
/// other error ends the call, once, unless we are stopping the stream ourselves.
fn on_error(
    name: &str,
    direction: Direction,
    stopping: &Arc<AtomicBool>,
    events: Sender<Input>,
) -> impl FnMut(cpal::Error) + Send + 'static {
    let (name, stopping) = (name.to_owned(), Arc::clone(stopping));
    let mut reported = false;
    move |error| {
        if error.kind() == cpal::ErrorKind::Xrun || stopping.load(Ordering::Relaxed) {
            return;
        }
        if !std::mem::replace(&mut reported, true) {
            let _ = events.send(Input::Live(LiveEvent::Failed(format!(
                "sound {} device `{name}` failed: {error}",
                direction.noun()
            ))));
        }
    }
}

fn stream_error(
    setup: &DeviceSetup,
    direction: Direction,
) -> impl FnOnce(cpal::Error) -> CallError {
    let name = setup.name.clone();
    move |e| {
        CallError::Live(format!(
            "cannot start sound {} device `{name}`: {e}",
            direction.noun()
        ))
    }
}

/// The microphone on a sound device.
#[derive(Debug)]
pub struct InputDevice(Running);

impl InputDevice {
    /// Finds `name` for recording and chooses its format; [`InputDevice::start`] opens it.
    pub(crate) fn find(name: &str) -> Result<DeviceSetup, CallError> {
        DeviceSetup::find(name, Direction::Input)
    }

    /// Opens and starts the device; a failure later goes to `events`.
    pub(crate) fn start(setup: DeviceSetup, events: Sender<Input>) -> Result<Self, CallError> {
        let stopping = Arc::new(AtomicBool::new(false));
        let queue = setup.queue(CAPTURE_QUEUE_FRAMES);
        let channels = usize::from(setup.config.channels);
        let errors = on_error(&setup.name, Direction::Input, &stopping, events);
        let stream = with_sample_type!(setup.format, T => {
            let queue = Arc::clone(&queue);
            let mut mono = Vec::new();
            setup.device.build_input_stream::<T, _, _>(
                setup.config,
                move |data: &[T], _: &cpal::InputCallbackInfo| {
                    downmix(data, channels, &mut mono);
                    queue.push_overwrite(&mono);
                },
                errors,
                None,
            )
            .map_err(stream_error(&setup, Direction::Input))
        })?;
        stream
            .play()
            .map_err(stream_error(&setup, Direction::Input))?;
        Ok(InputDevice(Running {
            stream,
            queue,
            stopping,
        }))
    }

    /// The next 20 ms of microphone.
    pub fn next_frame(&self, out: &mut [i16; FRAME_SAMPLES]) -> CaptureFrame {
        self.0.queue.next_frame(out)
    }

    /// Closes the device.
    pub fn stop(self) {
        self.0.stop();
    }
}

/// The speaker on a sound device.
#[derive(Debug)]
pub struct OutputDevice(Running);

impl OutputDevice {
    /// Finds `name` for playing, chooses its format, opens and starts it; a failure later goes
    /// to `events`.
    pub(crate) fn start(name: &str, events: Sender<Input>) -> Result<Self, CallError> {
        let setup = DeviceSetup::find(name, Direction::Output)?;
        let stopping = Arc::new(AtomicBool::new(false));
        let queue = setup.queue(PLAYBACK_QUEUE_FRAMES);
        let channels = usize::from(setup.config.channels);
        let errors = on_error(&setup.name, Direction::Output, &stopping, events);
        let stream = with_sample_type!(setup.format, T => {
            let queue = Arc::clone(&queue);
            let mut mono = Vec::new();
            setup.device.build_output_stream::<T, _, _>(
                setup.config,
                move |data: &mut [T], _: &cpal::OutputCallbackInfo| {
                    // Grows to the period once; a callback allocates nothing after that.
                    mono.resize(data.len() / channels.max(1), 0);
                    queue.pop_fill(&mut mono);
                    upmix(&mono, channels, data);
                },
                errors,
                None,
            )
            .map_err(stream_error(&setup, Direction::Output))
        })?;
        stream
            .play()
            .map_err(stream_error(&setup, Direction::Output))?;
        Ok(OutputDevice(Running {
            stream,
            queue,
            stopping,
        }))
    }

    /// Queues one mixed frame; the oldest queued frames go if the device is behind.
    pub fn play(&self, frame: &[i16; FRAME_SAMPLES]) {
        self.0.queue.push_overwrite(frame);
    }

    /// Closes the device (what is queued is not played out: a sound card's own buffer is a
    /// few milliseconds).
    pub fn stop(self) {
        self.0.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(
        channels: u16,
        min: u32,
        max: u32,
        format: SampleFormat,
    ) -> SupportedStreamConfigRange {
        SupportedStreamConfigRange::new(
            channels,
            min,
            max,
            SupportedBufferSize::Range { min: 64, max: 8192 },
            format,
        )
    }

    #[test]
    fn choose_prefers_mono_16_bit_at_48_khz_with_a_10_ms_period() {
        let ranges = [
            range(2, 8_000, 192_000, SampleFormat::I16),
            range(1, 8_000, 192_000, SampleFormat::F32),
            range(1, 8_000, 192_000, SampleFormat::I16),
        ];
        let (config, format) = choose(&ranges).expect("a config");
        assert_eq!(format, SampleFormat::I16);
        assert_eq!(config.channels, 1);
        assert_eq!(config.sample_rate, 48_000);
        assert_eq!(config.buffer_size, BufferSize::Fixed(PERIOD_FRAMES));
    }

    #[test]
    fn choose_takes_stereo_float_when_that_is_all() {
        let ranges = [range(2, 48_000, 48_000, SampleFormat::F32)];
        let (config, format) = choose(&ranges).expect("a config");
        assert_eq!((config.channels, format), (2, SampleFormat::F32));
    }

    #[test]
    fn choose_refuses_other_rates_naming_them() {
        let ranges = [
            range(2, 44_100, 44_100, SampleFormat::I16),
            range(2, 96_000, 96_000, SampleFormat::I16),
        ];
        let why = choose(&ranges).expect_err("no 48 kHz");
        assert!(why.contains("44100 Hz, 96000 Hz"), "{why}");
        assert!(why.contains("plughw:"), "{why}");
    }

    #[test]
    fn stereo_is_averaged_and_mono_is_copied_to_each_channel() {
        let mut mono = Vec::new();
        downmix(&[100i16, 300, -50, -150], 2, &mut mono);
        assert_eq!(mono, [200, -100]);
        downmix(&[0.5f32, 0.5], 2, &mut mono);
        assert_eq!(mono, [16_384]);
        let mut stereo = [0i16; 4];
        upmix(&[7, -7], 2, &mut stereo);
        assert_eq!(stereo, [7, 7, -7, -7]);
        let mut float = [0f32; 2];
        upmix(&[-32_768], 2, &mut float);
        assert_eq!(float, [-1.0, -1.0]);
    }
}
