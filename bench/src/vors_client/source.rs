//! What moose-call "hears": the `--input` WAV played once from the moment we join, or the
//! live microphone (`--input-cmd`, a device), 20 ms per frame, Opus-coded; nothing at all
//! without either, or once the file or the input command has ended.

use std::path::Path;

use super::live::{Capture, CaptureFrame, level_dbfs};
use crate::audio::{AudioError, Encoded, FRAME_SAMPLES, MAX_OPUS_PACKET, VoiceEncoder, WavFrames};

/// The microphone: one call to [`AudioSource::next_frame`] per 20 ms.
#[derive(Debug)]
pub(crate) struct AudioSource {
    frames: Option<WavFrames>,
    capture: Option<Capture>,
    encoder: VoiceEncoder,
    pcm: [i16; FRAME_SAMPLES],
    packet: [u8; MAX_OPUS_PACKET],
    /// Level of the last frame taken, in dBFS (the meter of the terminal UI).
    pub(crate) level_dbfs: f64,
    /// Ticks at which the live source had no full frame ready (played as silence).
    pub(crate) underruns: u64,
    /// Whether the live source has given a frame yet (before it has, nothing is sent).
    capture_started: bool,
}

impl AudioSource {
    /// Reads the whole input file now, so a bad file fails the call before it connects.
    pub(crate) fn new(input: Option<&Path>) -> Result<Self, AudioError> {
        Ok(AudioSource {
            frames: input.map(WavFrames::open).transpose()?,
            capture: None,
            encoder: VoiceEncoder::new()?,
            pcm: [0; FRAME_SAMPLES],
            packet: [0; MAX_OPUS_PACKET],
            level_dbfs: -90.0,
            underruns: 0,
            capture_started: false,
        })
    }

    /// Takes the live microphone as the source (instead of the file, if both were given).
    pub(crate) fn set_capture(&mut self, capture: Capture) {
        self.frames = None;
        self.capture = Some(capture);
        self.capture_started = false;
    }

    /// Stops the live source now.
    pub(crate) fn stop_capture(&mut self) {
        if let Some(capture) = self.capture.take() {
            capture.stop();
        }
        self.level_dbfs = -90.0;
    }

    /// The next 20 ms: the Opus packet to send, or `None` (DTX, muted, no input, or input
    /// over). While muted the file or microphone keeps running unheard.
    pub(crate) fn next_frame(&mut self, muted: bool) -> Result<Option<&[u8]>, AudioError> {
        if let Some(capture) = self.capture.as_mut() {
            // Short of a frame, the source is behind the call's clock: this frame is silence
            // (encoded, so the stream stays continuous), which stretches the sound by 20 ms.
            match capture.next_frame(&mut self.pcm) {
                CaptureFrame::Ready => self.capture_started = true,
                // A command just started has nothing yet: no sound, so nothing to send.
                CaptureFrame::Behind if !self.capture_started => return Ok(None),
                CaptureFrame::Behind => self.underruns += 1,
                CaptureFrame::Ended => {
                    self.stop_capture();
                    return Ok(None);
                }
            }
        } else if let Some(frames) = self.frames.as_mut() {
            if !frames.next_frame(&mut self.pcm) {
                self.frames = None;
                return Ok(None);
            }
        } else {
            return Ok(None);
        }
        self.level_dbfs = level_dbfs(&self.pcm);
        if muted {
            return Ok(None);
        }
        match self.encoder.encode(&self.pcm, &mut self.packet)? {
            Encoded::Packet(n) => Ok(self.packet.get(..n)),
            Encoded::Dtx => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{sine, write_wav};

    #[test]
    fn input_plays_once_and_mute_skips_but_advances() {
        let path = std::env::temp_dir().join(format!("moose-src-{}.wav", std::process::id()));
        write_wav(&path, &sine(440.0, 8_000.0, 10 * FRAME_SAMPLES)).expect("write");
        let mut src = AudioSource::new(Some(&path)).expect("source");
        let mut sent = 0;
        for i in 0..15 {
            let muted = (3..6).contains(&i);
            if src.next_frame(muted).expect("frame").is_some() {
                sent += 1;
            }
        }
        // 10 frames of file, 3 of them muted; frames 10..15 are past the end.
        assert_eq!(sent, 7);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn no_input_sends_nothing() {
        let mut src = AudioSource::new(None).expect("source");
        assert_eq!(src.next_frame(false).expect("frame"), None);
    }
}
