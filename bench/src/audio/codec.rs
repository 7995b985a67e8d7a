//! Opus as VoRS profiles it: 48 kHz mono, 20 ms frames, 24 kbit/s, DTX on; the decoder
//! fills lost frames with libopus' packet loss concealment (PLC).

use opus::{Application, Bitrate, Channels};

use super::{AudioError, BITRATE, FRAME_SAMPLES, SAMPLE_RATE};

/// Opus packets this short are the encoder's way of saying "nothing to send" under DTX
/// (opus.h, `opus_encode`: "If the return value is 2 bytes or less, then the packet does not
/// need to be transmitted (DTX)").
const DTX_MAX_LEN: usize = 2;

/// What the encoder made of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoded {
    /// A packet of this many bytes, at the start of the output buffer, to send.
    Packet(usize),
    /// DTX: the frame is silence the receiver can fill in itself; send nothing (the FRAME
    /// counter still advances).
    Dtx,
}

/// The sending side: one 20 ms frame of PCM in, at most one Opus packet out.
#[derive(Debug)]
pub struct VoiceEncoder {
    inner: opus::Encoder,
}

impl VoiceEncoder {
    /// An encoder for VoIP at 24 kbit/s with DTX on.
    pub fn new() -> Result<Self, AudioError> {
        let mut inner = opus::Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Voip)?;
        inner.set_bitrate(Bitrate::Bits(BITRATE))?;
        inner.set_dtx(true)?;
        Ok(VoiceEncoder { inner })
    }

    /// Encodes one frame into `out` (at least [`super::MAX_OPUS_PACKET`] bytes is always
    /// enough).
    pub fn encode(
        &mut self,
        frame: &[i16; FRAME_SAMPLES],
        out: &mut [u8],
    ) -> Result<Encoded, AudioError> {
        let len = self.inner.encode(frame, out)?;
        Ok(if len <= DTX_MAX_LEN {
            Encoded::Dtx
        } else {
            Encoded::Packet(len)
        })
    }
}

/// The receiving side for one member: packets in, 20 ms frames of PCM out.
#[derive(Debug)]
pub struct VoiceDecoder {
    inner: opus::Decoder,
}

impl VoiceDecoder {
    /// A fresh decoder (one per member: Opus decoders carry state between frames).
    pub fn new() -> Result<Self, AudioError> {
        Ok(VoiceDecoder {
            inner: opus::Decoder::new(SAMPLE_RATE, Channels::Mono)?,
        })
    }

    /// Decodes one packet into one frame. A corrupt packet, or one holding more than 20 ms,
    /// is an error and leaves the frame silent; one holding less is padded with silence.
    pub fn decode(
        &mut self,
        packet: &[u8],
        frame: &mut [i16; FRAME_SAMPLES],
    ) -> Result<(), AudioError> {
        // An empty packet would mean "lost" to libopus; a peer that sends one gets silence.
        if packet.is_empty() {
            frame.fill(0);
            return Ok(());
        }
        let n = self.inner.decode(packet, frame, false);
        self.finish_frame(n, frame)
    }

    /// Fills one lost frame with packet loss concealment: libopus extrapolates from what it
    /// decoded last, fading towards silence over a long gap.
    pub fn conceal(&mut self, frame: &mut [i16; FRAME_SAMPLES]) -> Result<(), AudioError> {
        let n = self.inner.decode(&[], frame, false);
        self.finish_frame(n, frame)
    }

    /// Forgets the past, so the next packet after a long silence starts clean instead of
    /// blending with audio from before the gap.
    pub fn reset(&mut self) -> Result<(), AudioError> {
        self.inner.reset_state()?;
        Ok(())
    }

    fn finish_frame(
        &mut self,
        decoded: Result<usize, opus::Error>,
        frame: &mut [i16; FRAME_SAMPLES],
    ) -> Result<(), AudioError> {
        match decoded {
            // Longer than 20 ms cannot happen (libopus refuses with BufferTooSmall); shorter
            // (a 10 ms packet from a peer off the profile) keeps the timeline by padding.
            Ok(n) => {
                frame[n.min(FRAME_SAMPLES)..].fill(0);
                Ok(())
            }
            Err(e) => {
                frame.fill(0);
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{MAX_OPUS_PACKET, sine, tone_fraction};

    fn tone_frames(count: usize) -> Vec<[i16; FRAME_SAMPLES]> {
        let pcm = sine(440.0, 8_000.0, count * FRAME_SAMPLES);
        pcm.chunks_exact(FRAME_SAMPLES)
            .map(|c| {
                let mut f = [0i16; FRAME_SAMPLES];
                f.copy_from_slice(c);
                f
            })
            .collect()
    }

    #[test]
    fn tone_survives_encode_decode() {
        let mut enc = VoiceEncoder::new().expect("encoder");
        let mut dec = VoiceDecoder::new().expect("decoder");
        let mut buf = [0u8; MAX_OPUS_PACKET];
        let mut out = [0i16; FRAME_SAMPLES];
        let mut decoded = Vec::new();
        for frame in tone_frames(50) {
            match enc.encode(&frame, &mut buf).expect("encode") {
                Encoded::Packet(n) => {
                    // 24 kbit/s is 60 bytes per 20 ms; VBR may overshoot a little.
                    assert!(n < 200, "packet of {n} bytes");
                    dec.decode(&buf[..n], &mut out).expect("decode");
                }
                Encoded::Dtx => panic!("a loud tone must not be DTX"),
            }
            decoded.extend_from_slice(&out);
        }
        // Skip the codec's start-up; the rest is the tone.
        let tail = &decoded[10 * FRAME_SAMPLES..];
        assert!(
            tone_fraction(tail, 440.0) > 0.9,
            "{}",
            tone_fraction(tail, 440.0)
        );
    }

    #[test]
    fn silence_goes_dtx() {
        let mut enc = VoiceEncoder::new().expect("encoder");
        let mut buf = [0u8; MAX_OPUS_PACKET];
        let silent = [0i16; FRAME_SAMPLES];
        let dtx = (0..100)
            .filter(|_| enc.encode(&silent, &mut buf).expect("encode") == Encoded::Dtx)
            .count();
        // DTX still sends a comfort-noise update every 400 ms; most frames are skipped.
        assert!(dtx > 80, "only {dtx} of 100 silent frames were DTX");
    }

    #[test]
    fn concealment_continues_a_tone() {
        let mut enc = VoiceEncoder::new().expect("encoder");
        let mut dec = VoiceDecoder::new().expect("decoder");
        let mut buf = [0u8; MAX_OPUS_PACKET];
        let mut out = [0i16; FRAME_SAMPLES];
        for frame in tone_frames(30) {
            if let Encoded::Packet(n) = enc.encode(&frame, &mut buf).expect("encode") {
                dec.decode(&buf[..n], &mut out).expect("decode");
            }
        }
        let mut concealed = Vec::new();
        for _ in 0..3 {
            dec.conceal(&mut out).expect("conceal");
            concealed.extend_from_slice(&out);
        }
        assert!(tone_fraction(&concealed, 440.0) > 0.5);
    }

    #[test]
    fn garbage_is_an_error_and_silence() {
        let mut dec = VoiceDecoder::new().expect("decoder");
        let mut out = [3i16; FRAME_SAMPLES];
        // TOC code 3 with a frame count of 0 is invalid (RFC 6716 §3.2.5).
        assert!(dec.decode(&[0x03 | 0xF8, 0x00], &mut out).is_err());
        assert!(out.iter().all(|&s| s == 0));
    }
}
