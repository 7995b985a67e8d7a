//! One member's recording: their packets in, a continuous 48 kHz WAV out.
//!
//! The file starts at the first packet heard from the member and follows the member's own
//! FRAME counter from there ([`super::playout`]): lost frames are concealed (up to 32), frames
//! never sent are silence, so 10 s of a sender's microphone time is 10 s of file whatever the
//! network did. A corrupt packet becomes one silent frame; it is the peer's fault, not a
//! reason to stop recording.

use std::path::Path;
use std::time::{Duration, Instant};

use super::playout::{Placement, Playout};
use super::{AudioError, FRAME_MS, FRAME_SAMPLES, MAX_CONCEALED_FRAMES, VoiceDecoder, WavSink};

const FRAME: Duration = Duration::from_millis(FRAME_MS as u64);

/// What a track has written so far, in frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackStats {
    /// Frames decoded from packets.
    pub decoded: u64,
    /// Frames filled by packet loss concealment.
    pub concealed: u64,
    /// Frames written as silence (never sent, or lost beyond the PLC limit).
    pub silent: u64,
    /// Packets dropped because they were not after the last one played.
    pub stale: u64,
    /// Packets libopus could not decode (written as one silent frame each).
    pub corrupt: u64,
}

/// A member's decoder, timeline and WAV file.
#[derive(Debug)]
pub struct Track {
    decoder: VoiceDecoder,
    playout: Playout,
    sink: WavSink,
    last_at: Option<Instant>,
    stats: TrackStats,
    pcm: [i16; FRAME_SAMPLES],
}

impl Track {
    /// Creates the WAV file at `path` (truncating it) and a fresh decoder.
    pub fn create(path: &Path) -> Result<Self, AudioError> {
        Ok(Track {
            decoder: VoiceDecoder::new()?,
            playout: Playout::new(),
            sink: WavSink::create(path)?,
            last_at: None,
            stats: TrackStats::default(),
            pcm: [0; FRAME_SAMPLES],
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        self.sink.path()
    }

    /// Counts so far.
    pub fn stats(&self) -> TrackStats {
        self.stats
    }

    /// Adds the packet numbered `pkt` holding frame `frame` (both 24-bit counters from the
    /// media header) and Opus payload `opus`, received at `now`. Errors only when the file
    /// cannot be written.
    pub fn push(
        &mut self,
        now: Instant,
        pkt: u32,
        frame: u32,
        opus: &[u8],
    ) -> Result<Placement, AudioError> {
        let wall_frames = self.last_at.map_or(0, |t| frames_between(t, now));
        let placement = self.playout.place(pkt, frame, wall_frames);
        let Placement::Play { conceal, silence } = placement else {
            self.stats.stale += 1;
            return Ok(placement);
        };
        self.last_at = Some(now);
        for _ in 0..conceal {
            if self.decoder.conceal(&mut self.pcm).is_err() {
                self.pcm.fill(0);
            }
            self.sink.write(&self.pcm)?;
        }
        self.stats.concealed += u64::from(conceal);
        if silence > 0 {
            self.sink
                .write_silence(u64::from(silence) * FRAME_SAMPLES as u64)?;
            self.stats.silent += u64::from(silence);
        }
        // After a gap longer than PLC covers, the old decoder state belongs to audio from
        // before the gap; start clean so it does not bleed into the first new frame.
        if conceal + silence > MAX_CONCEALED_FRAMES {
            self.decoder.reset()?;
        }
        match self.decoder.decode(opus, &mut self.pcm) {
            Ok(()) => self.stats.decoded += 1,
            Err(_) => self.stats.corrupt += 1,
        }
        self.sink.write(&self.pcm)?;
        Ok(placement)
    }

    /// Brings the WAV header up to date, closes the file and returns the final counts.
    pub fn finish(self) -> Result<TrackStats, AudioError> {
        self.sink.finish()?;
        Ok(self.stats)
    }
}

/// Whole 20 ms frames from `from` to `to`, rounded up (0 if `to` is not later).
fn frames_between(from: Instant, to: Instant) -> u32 {
    let d = to.saturating_duration_since(from);
    let frames = d.as_micros().div_ceil(FRAME.as_micros());
    u32::try_from(frames).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{Encoded, MAX_OPUS_PACKET, VoiceEncoder, read_wav, scan_tone, sine};

    /// Encodes `seconds` of a 440 Hz tone; returns (frame number, packet) for each frame sent.
    fn tone_packets(seconds: usize) -> Vec<(u32, Vec<u8>)> {
        let mut enc = VoiceEncoder::new().expect("encoder");
        let pcm = sine(440.0, 8_000.0, seconds * 50 * FRAME_SAMPLES);
        let mut buf = [0u8; MAX_OPUS_PACKET];
        let mut out = Vec::new();
        for (i, chunk) in pcm.chunks_exact(FRAME_SAMPLES).enumerate() {
            let mut frame = [0i16; FRAME_SAMPLES];
            frame.copy_from_slice(chunk);
            if let Encoded::Packet(n) = enc.encode(&frame, &mut buf).expect("encode") {
                out.push((i as u32, buf[..n].to_vec()));
            }
        }
        out
    }

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("moose-track-{}-{name}.wav", std::process::id()))
    }

    #[test]
    fn lossy_stream_keeps_its_length_and_its_tone() {
        let path = temp_path("lossy");
        let mut track = Track::create(&path).expect("track");
        let packets = tone_packets(4);
        let start = Instant::now();
        let mut pkt = 0u32;
        for (frame, opus) in &packets {
            pkt += 1;
            // Lose every tenth packet; PKT still advances for it, as the sender counted it.
            if pkt % 10 == 0 {
                continue;
            }
            let now = start + FRAME * *frame;
            track.push(now, pkt, *frame, opus).expect("push");
        }
        let stats = track.finish().expect("finish");
        // 20 packets lost; the last one (packet 200) is never known to be missing, as no
        // packet follows it, so 19 frames are concealed and the file ends at frame 199.
        assert_eq!(packets.len(), 200, "a loud tone is never DTX");
        assert_eq!(stats.decoded, 180);
        assert_eq!(stats.concealed, 19);
        let pcm = read_wav(&path).expect("read");
        assert_eq!(pcm.len(), 199 * FRAME_SAMPLES);
        let scan = scan_tone(&pcm, 440.0);
        assert!(scan.tone_share() > 0.9, "{scan:?}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn stale_and_corrupt_packets_are_counted() {
        let path = temp_path("stale");
        let mut track = Track::create(&path).expect("track");
        let packets = tone_packets(1);
        let now = Instant::now();
        track.push(now, 1, 0, &packets[0].1).expect("push");
        assert_eq!(
            track.push(now, 1, 0, &packets[0].1).expect("push"),
            Placement::Stale
        );
        track.push(now + FRAME, 2, 1, &[0xFB, 0x00]).expect("push");
        let stats = track.finish().expect("finish");
        assert_eq!(stats.stale, 1);
        assert_eq!(stats.corrupt, 1);
        assert_eq!(read_wav(&path).expect("read").len(), 2 * FRAME_SAMPLES);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn frames_between_rounds_up() {
        let t = Instant::now();
        assert_eq!(frames_between(t, t), 0);
        assert_eq!(frames_between(t, t + Duration::from_millis(21)), 2);
        assert_eq!(frames_between(t + FRAME, t), 0);
    }
}
