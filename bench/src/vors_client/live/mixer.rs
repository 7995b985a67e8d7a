//! Playback: every other member through their own jitter buffer and Opus decoder, summed into
//! the one 20 ms frame the speaker plays at each tick of the call's frame clock.

use std::collections::BTreeMap;
use std::time::Instant;

use moose_proto::vors::Sid;
use moose_proto::vors::client::Received;

use super::jitter::{JitterBuffer, JitterStats, Slot};
use crate::audio::{FRAME_SAMPLES, VoiceDecoder, rms};

/// A member as the speaker hears them, for the terminal UI and the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceInfo {
    /// Their username.
    pub name: String,
    /// RMS of the last frame played (0 to 32767).
    pub level: f64,
    /// Whether they said they are muted.
    pub muted: bool,
    /// Their jitter buffer's counts and delays.
    pub stats: JitterStats,
    /// The delay their buffer aims at now, in ms.
    pub target_ms: f64,
}

#[derive(Debug)]
struct Voice {
    info: VoiceInfo,
    buffer: JitterBuffer,
    decoder: VoiceDecoder,
    pcm: [i16; FRAME_SAMPLES],
}

/// The members being played, keyed by SID.
#[derive(Debug)]
pub struct Mixer {
    epoch: Instant,
    voices: BTreeMap<Sid, Voice>,
    /// Voices that left, for the summary.
    gone: Vec<VoiceInfo>,
}

impl Mixer {
    /// No one to play yet; `epoch` is any instant before the first packet.
    pub fn new(epoch: Instant) -> Self {
        Mixer {
            epoch,
            voices: BTreeMap::new(),
            gone: Vec::new(),
        }
    }

    fn ms(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.epoch).as_secs_f64() * 1000.0
    }

    /// A member arrived (a SID reused without a DEL starts afresh).
    pub fn add(&mut self, sid: Sid, name: &str) {
        self.remove(sid);
        let Ok(decoder) = VoiceDecoder::new() else {
            return; // libopus out of memory: this member stays unheard.
        };
        let info = VoiceInfo {
            name: name.to_owned(),
            level: 0.0,
            muted: false,
            stats: JitterStats::default(),
            target_ms: 0.0,
        };
        self.voices.insert(
            sid,
            Voice {
                info,
                buffer: JitterBuffer::new(),
                decoder,
                pcm: [0; FRAME_SAMPLES],
            },
        );
    }

    /// A member left.
    pub fn remove(&mut self, sid: Sid) {
        if let Some(voice) = self.voices.remove(&sid) {
            self.gone.push(voice.snapshot());
        }
    }

    /// A member said they muted or unmuted.
    pub fn set_muted(&mut self, sid: Sid, muted: bool) {
        if let Some(voice) = self.voices.get_mut(&sid) {
            voice.info.muted = muted;
        }
    }

    /// A media packet from a member, opened by the session, that arrived at `at`.
    pub fn push(&mut self, at: Instant, from: Received, opus: &[u8]) {
        let ms = self.ms(at);
        if let Some(voice) = self.voices.get_mut(&from.sid) {
            voice.buffer.push(ms, from.pkt, from.frame, opus);
        }
    }

    /// The frame to play at the tick scheduled for `tick`: every member's slot, summed and
    /// clipped to 16 bits.
    pub fn mix(&mut self, tick: Instant, out: &mut [i16; FRAME_SAMPLES]) {
        let ms = self.ms(tick);
        let mut sum = [0i32; FRAME_SAMPLES];
        for voice in self.voices.values_mut() {
            voice.play(ms);
            for (acc, &s) in sum.iter_mut().zip(voice.pcm.iter()) {
                *acc += i32::from(s);
            }
        }
        for (o, s) in out.iter_mut().zip(sum) {
            *o = s.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
        }
    }

    /// The members present, in SID order.
    pub fn voices(&self) -> impl Iterator<Item = (Sid, VoiceInfo)> + '_ {
        self.voices.iter().map(|(&sid, v)| (sid, v.snapshot()))
    }

    /// Every member played in this call: those present, then those who left.
    pub fn all_voices(&self) -> Vec<VoiceInfo> {
        let mut all: Vec<VoiceInfo> = self.voices.values().map(Voice::snapshot).collect();
        all.extend(self.gone.iter().cloned());
        all
    }
}

impl Voice {
    fn play(&mut self, tick_ms: f64) {
        match self.buffer.pop(tick_ms) {
            Slot::Decode { opus, reset } => {
                if reset {
                    let _ = self.decoder.reset();
                }
                // A packet libopus refuses is the peer's fault: one silent frame.
                let _ = self.decoder.decode(&opus, &mut self.pcm);
            }
            Slot::Conceal => {
                if self.decoder.conceal(&mut self.pcm).is_err() {
                    self.pcm.fill(0);
                }
            }
            Slot::Silence => self.pcm.fill(0),
        }
        self.info.level = rms(&self.pcm);
    }

    fn snapshot(&self) -> VoiceInfo {
        VoiceInfo {
            stats: self.buffer.stats(),
            target_ms: self.buffer.target_ms(),
            ..self.info.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{Encoded, MAX_OPUS_PACKET, VoiceEncoder, sine, tone_fraction};
    use std::time::Duration;

    fn packets(freq: f64, count: usize) -> Vec<Vec<u8>> {
        let mut enc = VoiceEncoder::new().expect("encoder");
        let pcm = sine(freq, 6_000.0, count * FRAME_SAMPLES);
        pcm.chunks_exact(FRAME_SAMPLES)
            .map(|c| {
                let frame: &[i16; FRAME_SAMPLES] = c.try_into().expect("frame");
                let mut buf = [0u8; MAX_OPUS_PACKET];
                match enc.encode(frame, &mut buf).expect("encode") {
                    Encoded::Packet(n) => buf[..n].to_vec(),
                    Encoded::Dtx => panic!("a tone is not DTX"),
                }
            })
            .collect()
    }

    #[test]
    fn two_members_are_heard_together() {
        let epoch = Instant::now();
        let mut mixer = Mixer::new(epoch);
        mixer.add(Sid(1), "alice");
        mixer.add(Sid(2), "carol");
        let (a, c) = (packets(440.0, 60), packets(1000.0, 60));
        let mut heard = Vec::new();
        let mut out = [0i16; FRAME_SAMPLES];
        for i in 0..70u32 {
            let tick = epoch + Duration::from_millis(u64::from(i) * 20 + 10);
            if let (Some(pa), Some(pc)) = (a.get(i as usize), c.get(i as usize)) {
                let at = epoch + Duration::from_millis(u64::from(i) * 20 + 2);
                let from = |sid| Received {
                    sid: Sid(sid),
                    pkt: i + 1,
                    frame: i,
                    lost: 0,
                };
                mixer.push(at, from(1), pa);
                mixer.push(at, from(2), pc);
            }
            mixer.mix(tick, &mut out);
            heard.extend_from_slice(&out);
        }
        let middle = &heard[20 * FRAME_SAMPLES..50 * FRAME_SAMPLES];
        let (fa, fc) = (tone_fraction(middle, 440.0), tone_fraction(middle, 1000.0));
        assert!(fa > 0.3 && fc > 0.3, "440 Hz {fa:.2}, 1 kHz {fc:.2}");
        let voices: Vec<_> = mixer.voices().map(|(_, v)| v).collect();
        assert_eq!(voices.len(), 2);
        assert!(voices.iter().all(|v| v.stats.decoded == 60), "{voices:?}");
        mixer.remove(Sid(1));
        assert_eq!(mixer.all_voices().len(), 2);
    }
}
