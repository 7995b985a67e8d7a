//! UDP datagrams: media packets, cookies and keepalives.
//!
//! Media packet, all integers big-endian:
//!
//! ```text
//! SID(1) | PKT(3) | FRAME(3) | ChaCha20(opus) | TAG(8)
//! ```
//!
//! - ChaCha20 is the IETF variant (96-bit nonce, 32-bit block counter starting at 0) under the
//!   sender's cipher key, nonce `00 00 00 00 00 00 00 00 SID PKT2 PKT1 PKT0`.
//! - `TAG = SipHash-2-4(mac key, SID | PKT | FRAME | ciphertext)`, the 64-bit result written
//!   little-endian. Encrypt-then-MAC: the relay checks tags without the cipher key.
//! - PKT counts the sender's packets and must rise strictly (reordered and replayed packets
//!   are dropped); FRAME counts 20 ms audio frames, including those not sent while muted.

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use siphasher::sip::SipHasher24;
use subtle::ConstantTimeEq;

use super::keys::{MAC_KEY_LEN, SessionKeys};
use super::sid::Sid;

/// Bytes before the payload: SID, PKT, FRAME.
pub const HEADER_LEN: usize = 7;
/// Bytes of the SipHash tag at the end.
pub const TAG_LEN: usize = 8;
/// The shortest media packet: header and tag around an empty payload.
pub const MIN_MEDIA_LEN: usize = HEADER_LEN + TAG_LEN;
/// The longest Opus packet (RFC 6716 §3.4, R5); [`seal`] refuses longer payloads.
pub const MAX_OPUS_LEN: usize = 1275;
/// The longest media packet [`seal`] produces.
pub const MAX_MEDIA_LEN: usize = MIN_MEDIA_LEN + MAX_OPUS_LEN;
/// Bytes of a cookie datagram.
pub const COOKIE_LEN: usize = 16;
/// Bytes of a keepalive datagram (the SID alone).
pub const KEEPALIVE_LEN: usize = 1;
/// The largest PKT or FRAME value: the counters are 24 bits wide.
pub const MAX_COUNTER: u32 = 0x00FF_FFFF;

/// Why a media packet could not be built or opened.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// Shorter than [`MIN_MEDIA_LEN`].
    TooShort,
    /// The SipHash tag does not match: forged, corrupted, or under someone else's key.
    BadTag,
    /// PKT or FRAME does not fit in 24 bits.
    CounterOverflow,
    /// The Opus payload is longer than [`MAX_OPUS_LEN`].
    PayloadTooLong,
}

impl std::fmt::Display for PacketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PacketError::TooShort => "media packet is too short",
            PacketError::BadTag => "media packet tag does not match",
            PacketError::CounterOverflow => "packet or frame counter exceeds 24 bits",
            PacketError::PayloadTooLong => "Opus payload is too long",
        })
    }
}

impl std::error::Error for PacketError {}

/// A media packet, borrowed. [`MediaPacket::parse`] checks the length only; the tag is
/// checked by [`check_tag`] or [`open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaPacket<'a> {
    bytes: &'a [u8],
}

fn be24(b: &[u8]) -> u32 {
    u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2])
}

impl<'a> MediaPacket<'a> {
    /// Views `bytes` as a media packet if it is at least [`MIN_MEDIA_LEN`] long.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PacketError> {
        if bytes.len() < MIN_MEDIA_LEN {
            return Err(PacketError::TooShort);
        }
        Ok(MediaPacket { bytes })
    }

    /// The sender's SID.
    pub fn sid(&self) -> Sid {
        Sid(self.bytes[0])
    }

    /// The sender's packet counter (PKT, 24 bits): one more for each packet it sent, so a
    /// gap is loss, and a PKT not above the last accepted one a replay or a reorder.
    pub fn pkt(&self) -> u32 {
        be24(&self.bytes[1..4])
    }

    /// The sender's audio frame counter (FRAME, 24 bits, wrapping): one per 20 ms frame,
    /// sent or not, so a FRAME gap wider than the PKT gap is time the sender was muted.
    pub fn frame(&self) -> u32 {
        be24(&self.bytes[4..7])
    }

    /// The encrypted Opus payload.
    pub fn ciphertext(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..self.bytes.len() - TAG_LEN]
    }

    /// The bytes the tag covers: everything before it.
    pub fn authenticated(&self) -> &'a [u8] {
        &self.bytes[..self.bytes.len() - TAG_LEN]
    }

    /// The last 8 bytes: the SipHash-2-4 tag, little-endian as it travels.
    pub fn tag(&self) -> &'a [u8] {
        &self.bytes[self.bytes.len() - TAG_LEN..]
    }

    /// The whole packet, as received (and as the relay forwards it).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether the tag is right under `mac_key` (constant-time comparison).
    pub fn tag_is_valid(&self, mac_key: &[u8; MAC_KEY_LEN]) -> bool {
        compute_tag(mac_key, self.authenticated())
            .ct_eq(self.tag())
            .into()
    }
}

/// `SipHash-2-4(mac_key, data)` as the 8 little-endian bytes a packet carries.
pub fn compute_tag(mac_key: &[u8; MAC_KEY_LEN], data: &[u8]) -> [u8; TAG_LEN] {
    SipHasher24::new_with_key(mac_key).hash(data).to_le_bytes()
}

/// The relay's edge check: is `packet` a media packet whose tag is right under `mac_key`?
/// No decryption; constant-time tag comparison.
pub fn check_tag(packet: &[u8], mac_key: &[u8; MAC_KEY_LEN]) -> bool {
    MediaPacket::parse(packet).is_ok_and(|p| p.tag_is_valid(mac_key))
}

/// The ChaCha20 nonce of a packet: `00*8 | SID | PKT (3 bytes, big-endian)`.
fn nonce(sid: Sid, pkt: u32) -> [u8; 12] {
    let pkt = pkt.to_be_bytes();
    [0, 0, 0, 0, 0, 0, 0, 0, sid.0, pkt[1], pkt[2], pkt[3]]
}

/// Appends the media packet for `opus` to `out`: header, ChaCha20 ciphertext, tag.
pub fn seal(
    keys: &SessionKeys,
    sid: Sid,
    pkt: u32,
    frame: u32,
    opus: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), PacketError> {
    if pkt > MAX_COUNTER || frame > MAX_COUNTER {
        return Err(PacketError::CounterOverflow);
    }
    if opus.len() > MAX_OPUS_LEN {
        return Err(PacketError::PayloadTooLong);
    }
    let start = out.len();
    out.reserve(MIN_MEDIA_LEN + opus.len());
    out.push(sid.0);
    out.extend_from_slice(&pkt.to_be_bytes()[1..]);
    out.extend_from_slice(&frame.to_be_bytes()[1..]);
    out.extend_from_slice(opus);
    ChaCha20::new(&keys.cipher.into(), &nonce(sid, pkt).into())
        .apply_keystream(&mut out[start + HEADER_LEN..]);
    let tag = compute_tag(&keys.mac, &out[start..]);
    out.extend_from_slice(&tag);
    Ok(())
}

/// Checks the tag of `packet` under the sender's `keys` and appends the decrypted Opus payload
/// to `out`. Returns `(PKT, FRAME)`; replay and order checks are the caller's.
pub fn open(
    keys: &SessionKeys,
    packet: &[u8],
    out: &mut Vec<u8>,
) -> Result<(u32, u32), PacketError> {
    let packet = MediaPacket::parse(packet)?;
    if !packet.tag_is_valid(&keys.mac) {
        return Err(PacketError::BadTag);
    }
    let start = out.len();
    out.extend_from_slice(packet.ciphertext());
    ChaCha20::new(
        &keys.cipher.into(),
        &nonce(packet.sid(), packet.pkt()).into(),
    )
    .apply_keystream(&mut out[start..]);
    Ok((packet.pkt(), packet.frame()))
}

/// What a UDP datagram is, judged by its length (VoRS datagrams carry no type byte).
///
/// Lengths 1 and 16 are ambiguous only in theory: a keepalive is exactly 1 byte and no media
/// packet is shorter than 15, but a cookie and a media packet with a 1-byte Opus payload are
/// both 16 bytes. The rule, which the caller supplies through `from_member`:
///
/// - a 16-byte datagram from an address that no member has registered is a [`Cookie`]
///   (media is only accepted from registered addresses, so nothing is lost);
/// - a 16-byte datagram from a registered member's address is [`Media`]; a late cookie
///   retransmission from that member then fails the tag check, which the room recognises
///   and drops without counting it as forged.
///
/// [`Cookie`]: Datagram::Cookie
/// [`Media`]: Datagram::Media
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// 1 byte: the sender's SID, sent every second to keep NAT bindings open.
    Keepalive(Sid),
    /// 16 bytes from an unregistered address: the cookie from message 2.
    Cookie(&'a [u8; COOKIE_LEN]),
    /// 15 bytes or more (16 only from a registered address): a media packet.
    Media(MediaPacket<'a>),
    /// Any other length (0, 2..=14).
    Invalid,
}

/// Classifies `datagram`; `from_member` says whether its source address is a registered
/// member's (see [`Datagram`] for why that matters).
pub fn classify(datagram: &[u8], from_member: bool) -> Datagram<'_> {
    match datagram.len() {
        KEEPALIVE_LEN => Datagram::Keepalive(Sid(datagram[0])),
        COOKIE_LEN if !from_member => match datagram.try_into() {
            Ok(cookie) => Datagram::Cookie(cookie),
            Err(_) => Datagram::Invalid,
        },
        _ => match MediaPacket::parse(datagram) {
            Ok(packet) => Datagram::Media(packet),
            Err(_) => Datagram::Invalid,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SessionKeys {
        let mut wire = [0u8; 48];
        for (i, b) in wire.iter_mut().enumerate() {
            *b = i as u8;
        }
        SessionKeys::from_wire(&wire)
    }

    #[test]
    fn siphash_matches_the_reference_vector() {
        // SipHash paper, Appendix A: key 00..0f, message 00..0e, result 0xa129ca6149be45e5.
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let msg: Vec<u8> = (0..15u8).collect();
        assert_eq!(
            compute_tag(&key, &msg),
            0xa129_ca61_49be_45e5u64.to_le_bytes()
        );
    }

    #[test]
    fn chacha20_block_counter_starts_at_zero() {
        // RFC 8439 A.1 test vector 1: all-zero key and nonce, counter 0.
        let zero = SessionKeys::from_wire(&[0; 48]);
        let mut out = Vec::new();
        seal(&zero, Sid(0), 0, 0, &[0; 16], &mut out).expect("seal");
        let expected = [
            0x76, 0xb8, 0xe0, 0xad, 0xa0, 0xf1, 0x3d, 0x90, 0x40, 0x5d, 0x6a, 0xe5, 0x53, 0x86,
            0xbd, 0x28,
        ];
        assert_eq!(out[HEADER_LEN..HEADER_LEN + 16], expected);
    }

    #[test]
    fn seal_lays_out_header_ciphertext_and_tag() {
        let keys = keys();
        let mut out = vec![0xEE];
        seal(&keys, Sid(7), 0x01_0203, 0x0A_0B0C, b"opus", &mut out).expect("seal");
        let packet = &out[1..];
        assert_eq!(packet.len(), MIN_MEDIA_LEN + 4);
        assert_eq!(packet[..HEADER_LEN], [7, 1, 2, 3, 0x0A, 0x0B, 0x0C]);
        assert_ne!(&packet[HEADER_LEN..HEADER_LEN + 4], b"opus");
        let tag = compute_tag(&keys.mac, &packet[..packet.len() - TAG_LEN]);
        assert_eq!(packet[packet.len() - TAG_LEN..], tag);
        let view = MediaPacket::parse(packet).expect("long enough");
        assert_eq!(
            (view.sid(), view.pkt(), view.frame()),
            (Sid(7), 0x01_0203, 0x0A_0B0C)
        );
        assert!(check_tag(packet, &keys.mac));
    }

    #[test]
    fn worked_example_of_docs_wire_vors() {
        // Keys 00..2f (cipher 00..1f, MAC 20..2f), SID 7, PKT 1, FRAME 0, Opus "hello".
        let mut out = Vec::new();
        seal(&keys(), Sid(7), 1, 0, b"hello", &mut out).expect("seal");
        let expected = [
            0x07, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // SID, PKT, FRAME
            0xf3, 0x96, 0xb7, 0xd9, 0xd5, // ChaCha20("hello")
            0xeb, 0xb2, 0xbd, 0x98, 0x8e, 0xb7, 0x46, 0xc1, // SipHash-2-4, little-endian
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn open_reverses_seal_and_rejects_any_flipped_bit() {
        let keys = keys();
        let mut packet = Vec::new();
        seal(&keys, Sid(3), 9, 12, b"hello opus", &mut packet).expect("seal");
        let mut plain = Vec::new();
        assert_eq!(open(&keys, &packet, &mut plain), Ok((9, 12)));
        assert_eq!(plain, b"hello opus");
        for i in 0..packet.len() {
            let mut forged = packet.clone();
            forged[i] ^= 0x01;
            assert!(!check_tag(&forged, &keys.mac), "bit flip at {i} accepted");
            assert_eq!(
                open(&keys, &forged, &mut Vec::new()),
                Err(PacketError::BadTag)
            );
        }
        let other = SessionKeys::from_wire(&[9; 48]);
        assert_eq!(
            open(&other, &packet, &mut Vec::new()),
            Err(PacketError::BadTag)
        );
    }

    #[test]
    fn nonce_depends_on_sid_and_pkt() {
        let keys = keys();
        let mut a = Vec::new();
        let mut b = Vec::new();
        let mut c = Vec::new();
        seal(&keys, Sid(1), 1, 0, &[0; 32], &mut a).expect("seal");
        seal(&keys, Sid(2), 1, 0, &[0; 32], &mut b).expect("seal");
        seal(&keys, Sid(1), 2, 0, &[0; 32], &mut c).expect("seal");
        assert_ne!(a[HEADER_LEN..39], b[HEADER_LEN..39]);
        assert_ne!(a[HEADER_LEN..39], c[HEADER_LEN..39]);
    }

    #[test]
    fn seal_refuses_wide_counters_and_long_payloads() {
        let keys = keys();
        let mut out = Vec::new();
        let err = seal(&keys, Sid(0), MAX_COUNTER + 1, 0, b"", &mut out);
        assert_eq!(err, Err(PacketError::CounterOverflow));
        let err = seal(&keys, Sid(0), 0, MAX_COUNTER + 1, b"", &mut out);
        assert_eq!(err, Err(PacketError::CounterOverflow));
        let long = vec![0; MAX_OPUS_LEN + 1];
        assert_eq!(
            seal(&keys, Sid(0), 0, 0, &long, &mut out),
            Err(PacketError::PayloadTooLong)
        );
        assert!(out.is_empty());
        assert_eq!(MediaPacket::parse(&[0; 14]), Err(PacketError::TooShort));
    }

    #[test]
    fn classification_by_length_and_source() {
        assert_eq!(classify(&[5], false), Datagram::Keepalive(Sid(5)));
        assert_eq!(classify(&[], true), Datagram::Invalid);
        assert_eq!(classify(&[0; 14], true), Datagram::Invalid);
        assert!(matches!(classify(&[0; 15], false), Datagram::Media(_)));
        assert!(matches!(classify(&[1; 16], false), Datagram::Cookie(c) if c == &[1; 16]));
        assert!(matches!(classify(&[1; 16], true), Datagram::Media(_)));
        assert!(matches!(classify(&[0; 17], false), Datagram::Media(_)));
    }
}
