//! Sealing what Redis stores for a member: its media keys and username (the "member record"),
//! and the chat it sends to other relays.
//!
//! `sealed = nonce (24) || XChaCha20-Poly1305(K_seal, nonce, aad)(plaintext) || tag (16)`
//!
//! with a random nonce the caller draws (192 bits: random nonces never repeat in practice) and
//! associated data that binds the box to where it belongs:
//!
//! - member record: `"moose-cluster-v1 member" || room id (16) || SID (1)`, plaintext
//!   `keys (48: ChaCha20 key || SipHash key, as ADD carries them) || username (UTF-8)`;
//! - chat: `"moose-cluster-v1 chat" || room id (16) || SID (1)`, plaintext the message.
//!
//! A record moved to another room or SID, or a chat message moved to another author, does not
//! open. Redis (or whoever can write to it) can still drop or replay a box it has seen in
//! its own place; docs/cluster.md says what that allows.

use std::fmt;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, Tag, XChaCha20Poly1305, XNonce};

use super::ids::RoomId;
use super::keys::SealKey;
use crate::vors::Sid;
use crate::vors::control::MAX_CHAT_LEN;
use crate::vors::hello::MAX_USERNAME_LEN;
use crate::vors::keys::{KEY_WIRE_LEN, SessionKeys};

/// Bytes of a sealing nonce.
pub const NONCE_LEN: usize = 24;
/// Bytes of the Poly1305 tag.
pub const SEAL_TAG_LEN: usize = 16;
/// What sealing adds to a plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + SEAL_TAG_LEN;
/// Longest sealed member record: the keys and the longest username.
pub const MAX_SEALED_RECORD: usize = SEAL_OVERHEAD + KEY_WIRE_LEN + MAX_USERNAME_LEN;
/// Longest sealed chat message.
pub const MAX_SEALED_CHAT: usize = SEAL_OVERHEAD + MAX_CHAT_LEN;

const MEMBER_AAD: &[u8] = b"moose-cluster-v1 member";
const CHAT_AAD: &[u8] = b"moose-cluster-v1 chat";

/// What the other relays need to announce a member: its media keys (ADD's KEY) and name.
#[derive(Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// The member's media keys, as its session derived them.
    pub keys: SessionKeys,
    /// Its username, 1 to [`MAX_USERNAME_LEN`] bytes.
    pub username: String,
}

impl fmt::Debug for MemberRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberRecord")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why a sealed box did not open, or a plaintext could not be sealed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    /// Shorter than a nonce and a tag, or longer than any box of its kind.
    Length,
    /// The tag does not match: another key, another room or SID, or altered bytes.
    Forged,
    /// It opened, but what is inside is not a record (a username that is empty, too long or
    /// not UTF-8) or not chat text (not UTF-8).
    Contents,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SealError::Length => "sealed box has an impossible length",
            SealError::Forged => "sealed box does not authenticate",
            SealError::Contents => "sealed box holds no valid contents",
        })
    }
}

impl std::error::Error for SealError {}

fn aad(label: &[u8], room: &RoomId, sid: Sid) -> [u8; 48] {
    // Every label is shorter than 48 - 17 bytes; the rest stays zero and is covered too.
    let mut out = [0u8; 48];
    out[..label.len()].copy_from_slice(label);
    out[label.len()..label.len() + 16].copy_from_slice(&room.0);
    out[label.len() + 16] = sid.0;
    out
}

fn seal(key: &SealKey, aad: &[u8], plaintext: &[u8], nonce: [u8; NONCE_LEN]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let mut out = Vec::with_capacity(SEAL_OVERHEAD + plaintext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), aad, &mut out[NONCE_LEN..])
        .expect("XChaCha20-Poly1305 seals any plaintext under 256 GiB");
    out.extend_from_slice(&tag);
    out
}

fn open(key: &SealKey, aad: &[u8], sealed: &[u8], max: usize) -> Result<Vec<u8>, SealError> {
    if sealed.len() < SEAL_OVERHEAD || sealed.len() > max {
        return Err(SealError::Length);
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(rest.len() - SEAL_TAG_LEN);
    let mut plain = body.to_vec();
    XChaCha20Poly1305::new((&key.0).into())
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            aad,
            &mut plain,
            Tag::from_slice(tag),
        )
        .map_err(|_| SealError::Forged)?;
    Ok(plain)
}

/// Seals `record` for member `sid` of `room` with `nonce` (random, from the caller). A
/// username longer than [`MAX_USERNAME_LEN`] or empty is refused ([`SealError::Contents`]).
pub fn seal_member(
    key: &SealKey,
    room: &RoomId,
    sid: Sid,
    record: &MemberRecord,
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, SealError> {
    let name = record.username.as_bytes();
    if name.is_empty() || name.len() > MAX_USERNAME_LEN {
        return Err(SealError::Contents);
    }
    let mut plain = [0u8; KEY_WIRE_LEN + MAX_USERNAME_LEN];
    plain[..KEY_WIRE_LEN].copy_from_slice(&record.keys.to_wire());
    plain[KEY_WIRE_LEN..KEY_WIRE_LEN + name.len()].copy_from_slice(name);
    let sealed = seal(
        key,
        &aad(MEMBER_AAD, room, sid),
        &plain[..KEY_WIRE_LEN + name.len()],
        nonce,
    );
    Ok(sealed)
}

/// Opens the record of member `sid` of `room`.
pub fn open_member(
    key: &SealKey,
    room: &RoomId,
    sid: Sid,
    sealed: &[u8],
) -> Result<MemberRecord, SealError> {
    let plain = open(key, &aad(MEMBER_AAD, room, sid), sealed, MAX_SEALED_RECORD)?;
    let (wire, name) = plain
        .split_first_chunk::<KEY_WIRE_LEN>()
        .ok_or(SealError::Contents)?;
    if name.is_empty() {
        return Err(SealError::Contents);
    }
    let username = std::str::from_utf8(name).map_err(|_| SealError::Contents)?;
    Ok(MemberRecord {
        keys: SessionKeys::from_wire(wire),
        username: username.to_owned(),
    })
}

/// Seals chat `msg` said by member `sid` of `room`; a message over [`MAX_CHAT_LEN`] bytes is
/// refused ([`SealError::Contents`]).
pub fn seal_chat(
    key: &SealKey,
    room: &RoomId,
    sid: Sid,
    msg: &str,
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, SealError> {
    if msg.len() > MAX_CHAT_LEN {
        return Err(SealError::Contents);
    }
    Ok(seal(key, &aad(CHAT_AAD, room, sid), msg.as_bytes(), nonce))
}

/// Opens chat said by member `sid` of `room`.
pub fn open_chat(
    key: &SealKey,
    room: &RoomId,
    sid: Sid,
    sealed: &[u8],
) -> Result<String, SealError> {
    let plain = open(key, &aad(CHAT_AAD, room, sid), sealed, MAX_SEALED_CHAT)?;
    String::from_utf8(plain).map_err(|_| SealError::Contents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::keys::{CLUSTER_KEY_LEN, ClusterKey, ClusterKeys};

    fn keys(byte: u8) -> ClusterKeys {
        ClusterKeys::derive(&ClusterKey([byte; CLUSTER_KEY_LEN]))
    }

    fn record() -> MemberRecord {
        MemberRecord {
            keys: SessionKeys::from_wire(&[0x5A; KEY_WIRE_LEN]),
            username: "ann".to_owned(),
        }
    }

    #[test]
    fn a_record_opens_where_it_was_sealed_and_nowhere_else() {
        let k = keys(1);
        let room = k.room_id("lobby");
        let sealed = seal_member(k.seal(), &room, Sid(4), &record(), [7; NONCE_LEN]).expect("seal");
        assert_eq!(sealed.len(), SEAL_OVERHEAD + KEY_WIRE_LEN + 3);
        assert_eq!(open_member(k.seal(), &room, Sid(4), &sealed), Ok(record()));
        let other_room = k.room_id("lobby2");
        assert_eq!(
            open_member(k.seal(), &other_room, Sid(4), &sealed),
            Err(SealError::Forged)
        );
        assert_eq!(
            open_member(k.seal(), &room, Sid(5), &sealed),
            Err(SealError::Forged)
        );
        assert_eq!(
            open_member(keys(2).seal(), &room, Sid(4), &sealed),
            Err(SealError::Forged)
        );
        // Chat and records are told apart even in the same place.
        assert_eq!(
            open_chat(k.seal(), &room, Sid(4), &sealed),
            Err(SealError::Forged)
        );
        for i in 0..sealed.len() {
            let mut bent = sealed.clone();
            bent[i] ^= 1;
            assert!(
                open_member(k.seal(), &room, Sid(4), &bent).is_err(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn the_sealed_record_does_not_hold_the_keys_or_name_in_the_clear() {
        let k = keys(1);
        let room = k.room_id("lobby");
        let sealed = seal_member(k.seal(), &room, Sid(4), &record(), [0; NONCE_LEN]).expect("seal");
        assert!(!sealed.windows(8).any(|w| w == [0x5A; 8]));
        assert!(!sealed.windows(3).any(|w| w == b"ann"));
        let other = seal_member(k.seal(), &room, Sid(4), &record(), [1; NONCE_LEN]).expect("seal");
        assert_ne!(
            sealed[NONCE_LEN..],
            other[NONCE_LEN..],
            "the nonce changes the box"
        );
    }

    #[test]
    fn chat_round_trips_and_limits_hold() {
        let k = keys(1);
        let room = k.room_id("lobby");
        let sealed = seal_chat(k.seal(), &room, Sid(9), "hi there", [3; NONCE_LEN]).expect("seal");
        assert_eq!(
            open_chat(k.seal(), &room, Sid(9), &sealed).as_deref(),
            Ok("hi there")
        );
        let long = "x".repeat(MAX_CHAT_LEN + 1);
        assert_eq!(
            seal_chat(k.seal(), &room, Sid(9), &long, [0; NONCE_LEN]),
            Err(SealError::Contents)
        );
        let nameless = MemberRecord {
            username: String::new(),
            ..record()
        };
        assert_eq!(
            seal_member(k.seal(), &room, Sid(1), &nameless, [0; NONCE_LEN]),
            Err(SealError::Contents)
        );
        assert_eq!(
            open_member(k.seal(), &room, Sid(1), &[0; SEAL_OVERHEAD - 1]),
            Err(SealError::Length)
        );
        assert_eq!(
            open_member(k.seal(), &room, Sid(1), &[0; MAX_SEALED_RECORD + 1]),
            Err(SealError::Length)
        );
        assert!(
            !format!("{:?}", record()).contains("90"),
            "Debug shows no key byte"
        );
    }
}
