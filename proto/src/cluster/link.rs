//! Relay-link datagrams: a verified VoRS media packet on its way from the relay of its sender
//! to another relay hosting members of the same room.
//!
//! ```text
//!  0      dest core     the receiving relay's core that owns the room: the relay steers its
//!                       link sockets by this byte as it steers media (first byte % cores)
//!  1      kind          LINK_MEDIA (1); anything else is refused
//!  2      origin core   the sending relay's core (with the origin, one replay window)
//!  3      reserved      0
//!  4..12  origin        the sending relay's RelayId
//! 12..20  seq           per (origin relay, origin core), from 1, big-endian
//! 20..36  room          the RoomId
//! 36..n-16 payload      the VoRS media packet exactly as its sender sent it
//! n-16..n  tag          SipHash-2-4-128(K_link, receiving RelayId (8) || bytes 0..n-16),
//!                       as siphasher's little-endian h1 || h2
//! ```
//!
//! The tag covers the receiving relay's id, which the datagram does not carry: a datagram
//! sent to one relay does not verify at another, so replay windows can be per origin alone.
//! The caller checks, in order: [`parse`] (lengths, kind), that the origin is a live relay,
//! [`LinkDatagram::verify`], then the origin's [`ReplayWindow`](super::replay::ReplayWindow).
//!
//! For a send without copying the payload, [`LinkHeader::to_bytes`] and [`link_tag`] give the
//! two pieces around it (an iovec of header, payload, tag); [`encode`] writes all three into
//! one buffer.

use std::fmt;
use std::hash::Hasher as _;

use siphasher::sip128::{Hasher128 as _, SipHasher24};
use subtle::ConstantTimeEq;

use super::ids::{RELAY_ID_LEN, ROOM_ID_LEN, RelayId, RoomId};
use super::keys::LinkKey;
use crate::vors::packet::{MAX_MEDIA_LEN, MIN_MEDIA_LEN};

/// Bytes before the payload.
pub const LINK_HEADER_LEN: usize = 36;
/// Bytes of the tag.
pub const LINK_TAG_LEN: usize = 16;
/// What the link adds to a media packet.
pub const LINK_OVERHEAD: usize = LINK_HEADER_LEN + LINK_TAG_LEN;
/// Shortest link datagram: the shortest media packet (an empty Opus frame).
pub const MIN_LINK_LEN: usize = LINK_OVERHEAD + MIN_MEDIA_LEN;
/// Longest link datagram: the longest media packet.
pub const MAX_LINK_LEN: usize = LINK_OVERHEAD + MAX_MEDIA_LEN;
/// The kind byte of a media datagram, the only kind so far.
pub const LINK_MEDIA: u8 = 1;

const KIND: usize = 1;
const ORIGIN_CORE: usize = 2;
const RESERVED: usize = 3;
const ORIGIN: usize = 4;
const SEQ: usize = ORIGIN + RELAY_ID_LEN;
const ROOM: usize = SEQ + 8;

/// Everything before the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkHeader {
    /// The core of the receiving relay that owns the room (first byte: kernel steering).
    pub dest_core: u8,
    /// The sending relay's core.
    pub origin_core: u8,
    /// The sending relay.
    pub origin: RelayId,
    /// Sequence number of (origin, origin core), from 1.
    pub seq: u64,
    /// The room the payload belongs to.
    pub room: RoomId,
}

/// Why a datagram is not a link datagram (all counted as `malformed`), or could not be made.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// Shorter than [`MIN_LINK_LEN`] or longer than [`MAX_LINK_LEN`]; when encoding, a payload
    /// that is no media packet's length.
    Length,
    /// A kind byte other than [`LINK_MEDIA`].
    Kind,
    /// The reserved byte is not 0.
    Reserved,
    /// Encoding: the output buffer is shorter than the datagram.
    BufferTooSmall,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkError::Length => "link datagram length out of bounds",
            LinkError::Kind => "unknown link datagram kind",
            LinkError::Reserved => "reserved byte set",
            LinkError::BufferTooSmall => "output buffer too small",
        })
    }
}

impl std::error::Error for LinkError {}

impl LinkHeader {
    /// The header's bytes (kind [`LINK_MEDIA`], reserved 0).
    pub fn to_bytes(&self) -> [u8; LINK_HEADER_LEN] {
        let mut out = [0u8; LINK_HEADER_LEN];
        out[0] = self.dest_core;
        out[KIND] = LINK_MEDIA;
        out[ORIGIN_CORE] = self.origin_core;
        out[RESERVED] = 0;
        out[ORIGIN..SEQ].copy_from_slice(&self.origin.0);
        out[SEQ..ROOM].copy_from_slice(&self.seq.to_be_bytes());
        out[ROOM..ROOM + ROOM_ID_LEN].copy_from_slice(&self.room.0);
        out
    }

    fn from_bytes(b: &[u8; LINK_HEADER_LEN]) -> Self {
        let mut origin = [0u8; RELAY_ID_LEN];
        origin.copy_from_slice(&b[ORIGIN..SEQ]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[SEQ..ROOM]);
        let mut room = [0u8; ROOM_ID_LEN];
        room.copy_from_slice(&b[ROOM..]);
        LinkHeader {
            dest_core: b[0],
            origin_core: b[ORIGIN_CORE],
            origin: RelayId(origin),
            seq: u64::from_be_bytes(seq),
            room: RoomId(room),
        }
    }
}

/// The tag of a datagram for relay `to` made of `header` then `payload`:
/// `SipHash-2-4-128(K_link, to || header || payload)`.
pub fn link_tag(
    key: &LinkKey,
    to: RelayId,
    header: &[u8; LINK_HEADER_LEN],
    payload: &[u8],
) -> [u8; LINK_TAG_LEN] {
    let mut mac = SipHasher24::new_with_key(&key.0);
    mac.write(&to.0);
    mac.write(header);
    mac.write(payload);
    mac.finish128().as_bytes()
}

/// Writes the datagram carrying `payload` (a media packet) to relay `to` into `out`; returns
/// its length.
pub fn encode(
    key: &LinkKey,
    to: RelayId,
    header: &LinkHeader,
    payload: &[u8],
    out: &mut [u8],
) -> Result<usize, LinkError> {
    if !(MIN_MEDIA_LEN..=MAX_MEDIA_LEN).contains(&payload.len()) {
        return Err(LinkError::Length);
    }
    let len = LINK_OVERHEAD + payload.len();
    let out = out.get_mut(..len).ok_or(LinkError::BufferTooSmall)?;
    let head = header.to_bytes();
    let tag = link_tag(key, to, &head, payload);
    out[..LINK_HEADER_LEN].copy_from_slice(&head);
    out[LINK_HEADER_LEN..len - LINK_TAG_LEN].copy_from_slice(payload);
    out[len - LINK_TAG_LEN..].copy_from_slice(&tag);
    Ok(len)
}

/// A parsed link datagram, borrowed from the receive buffer. Nothing in it is authentic
/// until [`LinkDatagram::verify`] says so.
#[derive(Debug, Clone, Copy)]
pub struct LinkDatagram<'a> {
    /// The header's fields.
    pub header: LinkHeader,
    /// The media packet, as its sender sent it.
    pub payload: &'a [u8],
    head: &'a [u8; LINK_HEADER_LEN],
    tag: &'a [u8; LINK_TAG_LEN],
}

/// Parses `datagram`: its length, kind and reserved byte. Never panics on any input.
pub fn parse(datagram: &[u8]) -> Result<LinkDatagram<'_>, LinkError> {
    if !(MIN_LINK_LEN..=MAX_LINK_LEN).contains(&datagram.len()) {
        return Err(LinkError::Length);
    }
    let (head, rest) = datagram
        .split_first_chunk::<LINK_HEADER_LEN>()
        .ok_or(LinkError::Length)?;
    let (payload, tag) = rest
        .split_last_chunk::<LINK_TAG_LEN>()
        .ok_or(LinkError::Length)?;
    if head[KIND] != LINK_MEDIA {
        return Err(LinkError::Kind);
    }
    if head[RESERVED] != 0 {
        return Err(LinkError::Reserved);
    }
    Ok(LinkDatagram {
        header: LinkHeader::from_bytes(head),
        payload,
        head,
        tag,
    })
}

impl LinkDatagram<'_> {
    /// Whether the tag is right for a datagram sent to relay `me` (constant-time compare).
    pub fn verify(&self, key: &LinkKey, me: RelayId) -> bool {
        link_tag(key, me, self.head, self.payload)
            .ct_eq(self.tag)
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: LinkKey = LinkKey([0x11; 16]);
    const ME: RelayId = RelayId([2; 8]);

    fn header() -> LinkHeader {
        LinkHeader {
            dest_core: 3,
            origin_core: 1,
            origin: RelayId([9; 8]),
            seq: 0x0102_0304_0506_0708,
            room: RoomId([0xAA; 16]),
        }
    }

    fn datagram(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; MAX_LINK_LEN];
        let n = encode(&KEY, ME, &header(), payload, &mut out).expect("encode");
        out.truncate(n);
        out
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let payload = [0x55u8; MIN_MEDIA_LEN + 4];
        let d = datagram(&payload);
        assert_eq!(d.len(), LINK_OVERHEAD + payload.len());
        assert_eq!(&d[..4], &[3, LINK_MEDIA, 1, 0]);
        assert_eq!(&d[4..12], &[9; 8]);
        assert_eq!(&d[12..20], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&d[20..36], &[0xAA; 16]);
        assert_eq!(&d[36..36 + payload.len()], &payload);
        let mut whole = SipHasher24::new_with_key(&KEY.0);
        let mut signed = ME.0.to_vec();
        signed.extend_from_slice(&d[..d.len() - 16]);
        whole.write(&signed);
        assert_eq!(d[d.len() - 16..], whole.finish128().as_bytes());
    }

    #[test]
    fn a_datagram_verifies_only_at_the_relay_it_was_made_for() {
        let payload = [0x55u8; 40];
        let d = datagram(&payload);
        let parsed = parse(&d).expect("parse");
        assert_eq!(parsed.header, header());
        assert_eq!(parsed.payload, &payload);
        assert!(parsed.verify(&KEY, ME));
        assert!(
            !parsed.verify(&KEY, RelayId([3; 8])),
            "sent to another relay"
        );
        assert!(
            !parsed.verify(&LinkKey([0x12; 16]), ME),
            "another cluster key"
        );
        for i in 0..d.len() {
            let mut bent = d.clone();
            bent[i] ^= 0x80;
            let ok = parse(&bent).is_ok_and(|p| p.verify(&KEY, ME));
            assert!(!ok, "byte {i} altered and still accepted");
        }
    }

    #[test]
    fn malformed_datagrams_are_named() {
        let d = datagram(&[0u8; MIN_MEDIA_LEN]);
        assert_eq!(d.len(), MIN_LINK_LEN);
        assert!(parse(&d).is_ok());
        assert_eq!(parse(&d[..d.len() - 1]).err(), Some(LinkError::Length));
        assert_eq!(parse(&[]).err(), Some(LinkError::Length));
        assert_eq!(
            parse(&vec![0; MAX_LINK_LEN + 1]).err(),
            Some(LinkError::Length)
        );
        let mut kind = d.clone();
        kind[1] = 2;
        assert_eq!(parse(&kind).err(), Some(LinkError::Kind));
        let mut reserved = d.clone();
        reserved[3] = 1;
        assert_eq!(parse(&reserved).err(), Some(LinkError::Reserved));
        let mut small = [0u8; MIN_LINK_LEN - 1];
        assert_eq!(
            encode(&KEY, ME, &header(), &[0; MIN_MEDIA_LEN], &mut small),
            Err(LinkError::BufferTooSmall)
        );
        let mut out = [0u8; MAX_LINK_LEN];
        assert_eq!(
            encode(&KEY, ME, &header(), &[0; MIN_MEDIA_LEN - 1], &mut out),
            Err(LinkError::Length)
        );
    }
}
