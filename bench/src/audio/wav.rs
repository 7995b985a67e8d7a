//! WAV in and out, in the one format VoRS carries (48 kHz mono 16-bit integer PCM).
//!
//! Input is read whole (a call's worth of 48 kHz mono is about 5.8 MB per minute) and handed
//! out one 20 ms frame at a time. Output is streamed: [`WavSink`] rewrites the header every
//! [`FLUSH_EVERY_SAMPLES`] so a recording stays a valid file even if the process is killed.

use std::fmt;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::{AudioError, BITS_PER_SAMPLE, CHANNELS, FRAME_SAMPLES, SAMPLE_RATE, wav_spec};

/// How often (in samples, one second) [`WavSink`] brings the header up to date on disk.
pub const FLUSH_EVERY_SAMPLES: u64 = SAMPLE_RATE as u64;

/// Reads a 48 kHz mono 16-bit WAV file into memory; any other format is refused rather than
/// resampled, so what is sent is exactly what the file holds.
pub fn read_wav(path: &Path) -> Result<Vec<i16>, AudioError> {
    let wav_err = |source| AudioError::Wav {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = hound::WavReader::open(path).map_err(wav_err)?;
    let spec = reader.spec();
    if spec.sample_rate != SAMPLE_RATE
        || spec.channels != CHANNELS
        || spec.bits_per_sample != BITS_PER_SAMPLE
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(AudioError::WavFormat {
            path: path.to_path_buf(),
            sample_rate: spec.sample_rate,
            channels: spec.channels,
            bits_per_sample: spec.bits_per_sample,
        });
    }
    reader
        .samples::<i16>()
        .collect::<Result<Vec<i16>, _>>()
        .map_err(wav_err)
}

/// Writes `samples` as a complete 48 kHz mono 16-bit WAV file (tests use it to make inputs).
pub fn write_wav(path: &Path, samples: &[i16]) -> Result<(), AudioError> {
    let mut sink = WavSink::create(path)?;
    sink.write(samples)?;
    sink.finish()
}

/// A recording's samples cut into 20 ms frames; the last partial frame is padded with
/// silence so every frame handed to the encoder is whole.
#[derive(Debug, Clone)]
pub struct WavFrames {
    samples: Vec<i16>,
    next: usize,
}

impl WavFrames {
    /// Frames over samples already in memory.
    pub fn new(samples: Vec<i16>) -> Self {
        WavFrames { samples, next: 0 }
    }

    /// Frames over a WAV file (see [`read_wav`] for the accepted format).
    pub fn open(path: &Path) -> Result<Self, AudioError> {
        read_wav(path).map(WavFrames::new)
    }

    /// Number of frames in total, the padded last one included.
    pub fn frame_count(&self) -> usize {
        self.samples.len().div_ceil(FRAME_SAMPLES)
    }

    /// Fills `frame` with the next 20 ms and returns true, or returns false at the end.
    pub fn next_frame(&mut self, frame: &mut [i16; FRAME_SAMPLES]) -> bool {
        let Some(rest) = self.samples.get(self.next..).filter(|r| !r.is_empty()) else {
            return false;
        };
        let take = rest.len().min(FRAME_SAMPLES);
        frame[..take].copy_from_slice(&rest[..take]);
        frame[take..].fill(0);
        self.next += take;
        true
    }
}

/// A WAV file being written as audio arrives.
pub struct WavSink {
    path: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    written: u64,
    unflushed: u64,
}

impl fmt::Debug for WavSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WavSink")
            .field("path", &self.path)
            .field("open", &self.writer.is_some())
            .field("written", &self.written)
            .finish()
    }
}

impl WavSink {
    /// Creates (or truncates) `path` and writes a header for an empty recording.
    pub fn create(path: &Path) -> Result<Self, AudioError> {
        let writer =
            hound::WavWriter::create(path, wav_spec()).map_err(|source| AudioError::Wav {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(WavSink {
            path: path.to_path_buf(),
            writer: Some(writer),
            written: 0,
            unflushed: 0,
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Samples written so far.
    pub fn samples_written(&self) -> u64 {
        self.written
    }

    /// Appends samples.
    pub fn write(&mut self, samples: &[i16]) -> Result<(), AudioError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let mut out = writer.get_i16_writer(len_u32(samples.len()));
        for &s in samples {
            out.write_sample(s);
        }
        let flushed = out.flush();
        flushed.map_err(|source| self.error(source))?;
        self.account(samples.len() as u64)
    }

    /// Appends `count` samples of silence.
    pub fn write_silence(&mut self, mut count: u64) -> Result<(), AudioError> {
        let zeros = [0i16; FRAME_SAMPLES];
        while count > 0 {
            let n = count.min(FRAME_SAMPLES as u64) as usize;
            self.write(&zeros[..n])?;
            count -= n as u64;
        }
        Ok(())
    }

    /// Brings the header up to date and closes the file.
    pub fn finish(mut self) -> Result<(), AudioError> {
        self.close()
    }

    fn close(&mut self) -> Result<(), AudioError> {
        match self.writer.take() {
            Some(w) => w.finalize().map_err(|source| self.error(source)),
            None => Ok(()),
        }
    }

    fn account(&mut self, n: u64) -> Result<(), AudioError> {
        self.written += n;
        self.unflushed += n;
        if self.unflushed >= FLUSH_EVERY_SAMPLES {
            self.unflushed = 0;
            if let Some(w) = self.writer.as_mut() {
                let flushed = w.flush();
                flushed.map_err(|source| self.error(source))?;
            }
        }
        Ok(())
    }

    fn error(&self, source: hound::Error) -> AudioError {
        AudioError::Wav {
            path: self.path.clone(),
            source,
        }
    }
}

impl Drop for WavSink {
    /// A sink dropped without [`WavSink::finish`] (an error path) still leaves a valid file.
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// `hound` counts a buffer's samples in u32; moose-call never writes more than a frame's worth
/// at once, so saturating is only a guard.
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("moose-wav-{}-{name}.wav", std::process::id()))
    }

    #[test]
    fn write_then_read_round_trips() {
        let path = temp_path("roundtrip");
        let samples: Vec<i16> = (0..2_000).map(|i| (i * 7 - 5_000) as i16).collect();
        write_wav(&path, &samples).expect("write");
        assert_eq!(read_wav(&path).expect("read"), samples);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn other_formats_are_refused() {
        let path = temp_path("stereo");
        let spec = hound::WavSpec {
            channels: 2,
            ..wav_spec()
        };
        let mut w = hound::WavWriter::create(&path, spec).expect("create");
        w.write_sample(1i16).expect("sample");
        w.write_sample(2i16).expect("sample");
        w.finalize().expect("finalize");
        match read_wav(&path) {
            Err(AudioError::WavFormat { channels: 2, .. }) => {}
            other => panic!("expected WavFormat, got {other:?}"),
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn frames_pad_the_last_one_with_silence() {
        let mut frames = WavFrames::new(vec![1; FRAME_SAMPLES + 10]);
        assert_eq!(frames.frame_count(), 2);
        let mut frame = [7i16; FRAME_SAMPLES];
        assert!(frames.next_frame(&mut frame));
        assert!(frame.iter().all(|&s| s == 1));
        assert!(frames.next_frame(&mut frame));
        assert!(frame[..10].iter().all(|&s| s == 1));
        assert!(frame[10..].iter().all(|&s| s == 0));
        assert!(!frames.next_frame(&mut frame));
    }

    #[test]
    fn sink_is_readable_before_finish() {
        let path = temp_path("flush");
        let mut sink = WavSink::create(&path).expect("create");
        sink.write_silence(FLUSH_EVERY_SAMPLES).expect("silence");
        sink.write(&[5; 10]).expect("write");
        // The header was rewritten after the first second: a reader sees at least that much
        // even though the file is still open.
        let seen = hound::WavReader::open(&path).expect("open").len();
        assert!(u64::from(seen) >= FLUSH_EVERY_SAMPLES, "{seen}");
        assert_eq!(sink.samples_written(), FLUSH_EVERY_SAMPLES + 10);
        sink.finish().expect("finish");
        assert_eq!(
            read_wav(&path).expect("read").len() as u64,
            FLUSH_EVERY_SAMPLES + 10
        );
        let _ = std::fs::remove_file(&path);
    }
}
