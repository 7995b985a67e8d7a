//! What every benchmark message carries, and how a receiver checks it whole.
//!
//! ```text
//! offset  size  field (little-endian)
//! 0       4     stream: the sending stream's index in the run
//! 4       4     seq: the stream's message counter, from 0
//! 8       8     sent_ns: send time, ns since the run's clock origin
//! 16      4     check: low 32 bits of mix(bytes 0..16)
//! 20      ..    the stream's pattern: PATTERN[offset(stream) + 20 ..]
//! ```
//!
//! The stamp makes every delivery attributable (who sent it, which one) and timeable (the
//! send time travels with it; the same process receives it, so one clock serves both ends).
//! The check word catches a damaged stamp; the pattern, a window into one shared random
//! buffer that starts at a different place for each stream, catches damaged bodies, bodies
//! of another stream and messages cut or glued at read boundaries (the expected length is
//! checked too). Checking is a compare against memory, no per-byte arithmetic.

use std::sync::LazyLock;

/// Bytes of the stamp at the start of every message.
pub const STAMP_LEN: usize = 20;
/// Bytes of one Moose PCM message (512 int16 samples at 200 kHz, 2.56 ms of audio).
pub const PCM_MESSAGE_LEN: usize = 1024;
/// The longest payload a pattern is kept for.
pub const MAX_PAYLOAD: usize = PCM_MESSAGE_LEN;
/// How many different pattern windows there are (streams share one every this many).
const WINDOWS: usize = 4093;

/// The shared random buffer every stream's pattern is a window of.
static PATTERN: LazyLock<Box<[u8]>> = LazyLock::new(|| {
    let mut state = 0x6d6f_6f73_6562_656e_u64; // "moosebencn": any fixed seed will do
    (0..WINDOWS + MAX_PAYLOAD)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            mix(state) as u8
        })
        .collect()
});

/// SplitMix64's finaliser: a cheap, well-spread 64-bit mix.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The decoded stamp of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The sending stream.
    pub stream: u32,
    /// The sender's message counter.
    pub seq: u32,
    /// When it was sent, ns since the run's clock origin.
    pub sent_ns: u64,
}

/// Why a message failed its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corrupt {
    /// Not the length its stamp says it was sent with.
    Length,
    /// The check word does not match bytes 0..16.
    Stamp,
    /// The body is not the sending stream's pattern.
    Body,
}

fn check_word(head: &[u8]) -> u32 {
    let a = u64::from_le_bytes(head[0..8].try_into().unwrap_or_default());
    let b = u64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
    mix(a ^ mix(b)) as u32
}

fn window(stream: u32) -> &'static [u8] {
    let start = (stream as usize).wrapping_mul(61) % WINDOWS;
    &PATTERN[start..start + MAX_PAYLOAD]
}

/// Fills `payload` (at least [`STAMP_LEN`], at most [`MAX_PAYLOAD`] bytes) with `stream`'s
/// pattern and a stamp for (`stream`, 0, 0). Done once per stream; each send then only
/// rewrites the stamp with [`write_stamp`].
pub fn fill(payload: &mut [u8], stream: u32) {
    payload.copy_from_slice(&window(stream)[..payload.len()]);
    payload[..STAMP_LEN].copy_from_slice(&encode(stream, 0, 0));
}

/// The 20 stamp bytes for one message.
pub fn encode(stream: u32, seq: u32, sent_ns: u64) -> [u8; STAMP_LEN] {
    let mut out = [0u8; STAMP_LEN];
    out[0..4].copy_from_slice(&stream.to_le_bytes());
    out[4..8].copy_from_slice(&seq.to_le_bytes());
    out[8..16].copy_from_slice(&sent_ns.to_le_bytes());
    let check = check_word(&out[..16]);
    out[16..20].copy_from_slice(&check.to_le_bytes());
    out
}

/// Overwrites the stamp at the start of a payload prepared by [`fill`].
pub fn write_stamp(payload: &mut [u8], stream: u32, seq: u32, sent_ns: u64) {
    payload[..STAMP_LEN].copy_from_slice(&encode(stream, seq, sent_ns));
}

/// Checks a received message whole. `expected_len` gives the length the sender used for
/// (stream, seq): fixed for PCM, from [`opus_len`] for VoRS.
pub fn check(message: &[u8], expected_len: impl Fn(u32, u32) -> usize) -> Result<Stamp, Corrupt> {
    if message.len() < STAMP_LEN || message.len() > MAX_PAYLOAD {
        return Err(Corrupt::Length);
    }
    let word = u32::from_le_bytes([message[16], message[17], message[18], message[19]]);
    if word != check_word(&message[..16]) {
        return Err(Corrupt::Stamp);
    }
    let stamp = Stamp {
        stream: u32::from_le_bytes([message[0], message[1], message[2], message[3]]),
        seq: u32::from_le_bytes([message[4], message[5], message[6], message[7]]),
        sent_ns: u64::from_le_bytes(message[8..16].try_into().unwrap_or_default()),
    };
    if message.len() != expected_len(stamp.stream, stamp.seq) {
        return Err(Corrupt::Length);
    }
    if message[STAMP_LEN..] != window(stamp.stream)[STAMP_LEN..message.len()] {
        return Err(Corrupt::Body);
    }
    Ok(stamp)
}

/// Opus payload size of a stream's `seq`-th 20 ms frame, as a 24 kbit/s voice encoder
/// gives them: mostly 40..=80 bytes (60 on average, 24 kbit/s), and once every 20 frames
/// (400 ms, Opus's DTX refresh interval) a small comfort-noise-like frame, as short as the
/// stamp allows. Deterministic, so the receiver knows the length to expect.
pub fn opus_len(stream: u32, seq: u32) -> usize {
    let r = mix((u64::from(stream) << 32) | u64::from(seq));
    if (u64::from(seq) + u64::from(stream)) % 20 == 19 {
        STAMP_LEN
    } else {
        40 + (r % 41) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcm(stream: u32, seq: u32, sent_ns: u64) -> Vec<u8> {
        let mut payload = vec![0u8; PCM_MESSAGE_LEN];
        fill(&mut payload, stream);
        write_stamp(&mut payload, stream, seq, sent_ns);
        payload
    }

    const PCM_LEN: fn(u32, u32) -> usize = |_, _| PCM_MESSAGE_LEN;

    #[test]
    fn a_stamped_message_checks_and_decodes() {
        let message = pcm(7, 41, 123_456_789);
        let stamp = check(&message, PCM_LEN).expect("valid");
        assert_eq!(
            stamp,
            Stamp {
                stream: 7,
                seq: 41,
                sent_ns: 123_456_789
            }
        );
    }

    #[test]
    fn any_flipped_bit_fails_the_check() {
        let message = pcm(3, 9, 5_000);
        for i in (0..message.len()).step_by(7).chain(0..STAMP_LEN) {
            let mut bad = message.clone();
            bad[i] ^= 0x10;
            assert!(check(&bad, PCM_LEN).is_err(), "flip at {i} passed");
        }
    }

    #[test]
    fn cut_or_glued_messages_fail_on_length() {
        let message = pcm(1, 2, 3);
        assert_eq!(check(&message[..600], PCM_LEN), Err(Corrupt::Length));
        assert_eq!(check(&message[..10], PCM_LEN), Err(Corrupt::Length));
        let mut glued = message.clone();
        glued.extend_from_slice(&message[..100]);
        assert_eq!(check(&glued, PCM_LEN), Err(Corrupt::Length));
    }

    #[test]
    fn another_streams_body_under_a_valid_stamp_fails() {
        let mut message = pcm(1, 0, 0);
        let other = pcm(2, 0, 0);
        message[STAMP_LEN..].copy_from_slice(&other[STAMP_LEN..]);
        assert_eq!(check(&message, PCM_LEN), Err(Corrupt::Body));
    }

    #[test]
    fn opus_sizes_are_voice_like_and_known_to_the_receiver() {
        let sizes: Vec<usize> = (0..1000).map(|seq| opus_len(5, seq)).collect();
        assert!(
            sizes
                .iter()
                .all(|&n| n == STAMP_LEN || (40..=80).contains(&n))
        );
        let small = sizes.iter().filter(|&&n| n == STAMP_LEN).count();
        assert_eq!(small, 50, "one small frame in 20");
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        assert!((50.0..65.0).contains(&mean), "mean {mean}");
        assert!(sizes.windows(2).any(|w| w[0] != w[1]), "sizes vary");

        let mut message = vec![0u8; opus_len(5, 12)];
        fill(&mut message, 5);
        write_stamp(&mut message, 5, 12, 99);
        assert_eq!(check(&message, opus_len).map(|s| s.seq), Ok(12));
        // The same bytes claimed as another frame of the stream have the wrong length.
        let other_len = (0..100)
            .find(|&s| opus_len(5, s) != message.len())
            .unwrap_or(0);
        write_stamp(&mut message, 5, other_len, 99);
        assert_eq!(check(&message, opus_len), Err(Corrupt::Length));
    }
}
