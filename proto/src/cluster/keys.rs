//! The cluster key and what is derived from it.
//!
//! Every relay of a cluster reads the same 32-byte secret (`--cluster-key`, a file of 64 hex
//! digits such as `moose-relay keygen` prints). Nothing uses it directly: each purpose has its
//! own key, derived as
//!
//! `K_label = BLAKE2b-MAC(key = cluster key, output length n)("moose-cluster-v1 " || label)`
//!
//! (BLAKE2b keyed mode is a PRF; the label and the output length, which BLAKE2b's parameter
//! block includes, keep the outputs independent). The labels:
//!
//! | label | bytes | use |
//! |---|---|---|
//! | `link` | 16 | SipHash-2-4-128 key of relay-link datagrams (`link`) |
//! | `seal` | 32 | XChaCha20-Poly1305 key of member records and chat in Redis (`seal`) |
//! | `room` | 32 | [`RoomId`]: `BLAKE2b-MAC-128(K_room, room name)` |
//! | `name` | 32 | [`NameTag`]: `BLAKE2b-MAC-64(K_name, room id || username)` |
//! | `password` | 32 | [`PasswordVerifier`]: `BLAKE2b-MAC-128(K_password, room id || field)` |
//! | `check` | 16 | the key-check value stored in Redis: a relay whose value differs has another key |
//!
//! The key-check value is a PRF output: it tells whether two relays hold the same key and
//! nothing about the key.

use std::fmt;

use blake2::Blake2bMac;
use blake2::digest::consts::{U8, U16, U32};
use blake2::digest::{FixedOutput, KeyInit, Update};

use super::ids::{NAME_TAG_LEN, NameTag, ROOM_ID_LEN, RoomId};
use crate::vors::keys::PASSWORD_HASH_LEN;

/// Bytes of the cluster key.
pub const CLUSTER_KEY_LEN: usize = 32;
/// Bytes of the link MAC key (SipHash-2-4-128).
pub const LINK_KEY_LEN: usize = 16;
/// Bytes of the sealing key (XChaCha20-Poly1305).
pub const SEAL_KEY_LEN: usize = 32;
/// Bytes of the key-check value.
pub const KEY_CHECK_LEN: usize = 16;
/// Bytes of a [`PasswordVerifier`].
pub const VERIFIER_LEN: usize = 16;

/// Prefix of every derivation's input: a new version of the scheme changes it.
const CONTEXT: &[u8] = b"moose-cluster-v1 ";

/// The shared secret of a cluster. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey(pub [u8; CLUSTER_KEY_LEN]);

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

/// The key of relay-link tags.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkKey(pub [u8; LINK_KEY_LEN]);

/// The key that seals member records and chat before they are stored in Redis.
#[derive(Clone, PartialEq, Eq)]
pub struct SealKey(pub [u8; SEAL_KEY_LEN]);

/// What Redis holds of a room's password: a keyed hash of the PASSWD field of the first
/// member's message 1, so that Redis can compare without learning the password hash (itself
/// an unsalted hash of a password, open to guessing). A room without a password has a
/// verifier too (of an empty field), so Redis cannot tell open rooms from closed ones.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PasswordVerifier(pub [u8; VERIFIER_LEN]);

/// Every key a relay derives from the cluster key, derived once at start. `Debug` shows none.
#[derive(Clone)]
pub struct ClusterKeys {
    link: LinkKey,
    seal: SealKey,
    room: [u8; 32],
    name: [u8; 32],
    password: [u8; 32],
    check: [u8; KEY_CHECK_LEN],
}

macro_rules! redacted_debug {
    ($($name:ident),*) => {$(
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }
    )*};
}

redacted_debug!(LinkKey, SealKey, PasswordVerifier, ClusterKeys);

/// `BLAKE2b-MAC(key, output length N)(parts...)` into `out`, for N in 8, 16, 32.
fn mac(key: &[u8], parts: &[&[u8]], out: &mut [u8]) {
    fn run<M: KeyInit + Update + FixedOutput>(key: &[u8], parts: &[&[u8]], out: &mut [u8]) {
        // Keys here are 32 bytes, within BLAKE2b's 64.
        let mut m = <M as KeyInit>::new_from_slice(key).expect("a key of at most 64 bytes");
        for part in parts {
            m.update(part);
        }
        out.copy_from_slice(&m.finalize_fixed());
    }
    match out.len() {
        8 => run::<Blake2bMac<U8>>(key, parts, out),
        16 => run::<Blake2bMac<U16>>(key, parts, out),
        32 => run::<Blake2bMac<U32>>(key, parts, out),
        n => unreachable!("no {n}-byte derivation is used"),
    }
}

fn derive<const N: usize>(key: &ClusterKey, label: &str) -> [u8; N] {
    let mut out = [0u8; N];
    mac(&key.0, &[CONTEXT, label.as_bytes()], &mut out);
    out
}

impl ClusterKeys {
    /// Derives every key from the cluster key (module docs).
    pub fn derive(key: &ClusterKey) -> Self {
        ClusterKeys {
            link: LinkKey(derive(key, "link")),
            seal: SealKey(derive(key, "seal")),
            room: derive(key, "room"),
            name: derive(key, "name"),
            password: derive(key, "password"),
            check: derive(key, "check"),
        }
    }

    /// The key of relay-link tags.
    pub fn link(&self) -> &LinkKey {
        &self.link
    }

    /// The key that seals records and chat for Redis.
    pub fn seal(&self) -> &SealKey {
        &self.seal
    }

    /// The key-check value: equal for two relays exactly when their cluster keys are equal
    /// (but for a 2^-128 chance).
    pub fn key_check(&self) -> [u8; KEY_CHECK_LEN] {
        self.check
    }

    /// The room called `name`: `BLAKE2b-MAC-128(K_room, name)`.
    pub fn room_id(&self, name: &str) -> RoomId {
        let mut id = [0u8; ROOM_ID_LEN];
        mac(&self.room, &[name.as_bytes()], &mut id);
        RoomId(id)
    }

    /// The tag of `username` in `room`: `BLAKE2b-MAC-64(K_name, room id || username)`.
    pub fn name_tag(&self, room: &RoomId, username: &str) -> NameTag {
        let mut tag = [0u8; NAME_TAG_LEN];
        mac(&self.name, &[&room.0, username.as_bytes()], &mut tag);
        NameTag(tag)
    }

    /// What Redis stores of `room`'s password: `BLAKE2b-MAC-128(K_password, room id || field)`
    /// where the field is `0x01 || hash`, or `0x00` for no password.
    pub fn password_verifier(
        &self,
        room: &RoomId,
        hash: Option<&[u8; PASSWORD_HASH_LEN]>,
    ) -> PasswordVerifier {
        let mut out = [0u8; VERIFIER_LEN];
        match hash {
            Some(hash) => mac(&self.password, &[&room.0, &[1], hash], &mut out),
            None => mac(&self.password, &[&room.0, &[0]], &mut out),
        }
        PasswordVerifier(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blake2::digest::Mac;

    fn keys(byte: u8) -> ClusterKeys {
        ClusterKeys::derive(&ClusterKey([byte; CLUSTER_KEY_LEN]))
    }

    #[test]
    fn each_purpose_has_its_own_key_and_the_formula_is_the_documented_one() {
        let key = ClusterKey([7; CLUSTER_KEY_LEN]);
        let derived = ClusterKeys::derive(&key);
        let mut expected = <Blake2bMac<U16> as KeyInit>::new_from_slice(&key.0).expect("key");
        Mac::update(&mut expected, b"moose-cluster-v1 link");
        assert_eq!(derived.link().0[..], expected.finalize().into_bytes()[..]);
        let mut expected = <Blake2bMac<U32> as KeyInit>::new_from_slice(&key.0).expect("key");
        Mac::update(&mut expected, b"moose-cluster-v1 seal");
        assert_eq!(derived.seal().0[..], expected.finalize().into_bytes()[..]);
        let all = [
            &derived.link.0[..],
            &derived.seal.0[..],
            &derived.room[..],
            &derived.name[..],
            &derived.password[..],
            &derived.check[..],
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a[..8], b[..8], "two purposes share key bytes");
            }
            assert_ne!(a[..8], key.0[..8], "the cluster key itself is never used");
        }
    }

    #[test]
    fn another_cluster_key_changes_every_derived_value() {
        let (a, b) = (keys(1), keys(2));
        assert_ne!(a.key_check(), b.key_check());
        assert_eq!(a.key_check(), keys(1).key_check(), "deterministic");
        assert_ne!(a.room_id("lobby"), b.room_id("lobby"));
        let room = a.room_id("lobby");
        assert_ne!(a.name_tag(&room, "ann"), b.name_tag(&room, "ann"));
        assert_ne!(a.link().0, b.link().0);
    }

    #[test]
    fn ids_tags_and_verifiers_separate_what_they_name() {
        let k = keys(3);
        let (lobby, other) = (k.room_id("lobby"), k.room_id("lobby2"));
        assert_ne!(lobby, other);
        assert_eq!(lobby, k.room_id("lobby"));
        assert_ne!(k.name_tag(&lobby, "ann"), k.name_tag(&other, "ann"));
        assert_ne!(k.name_tag(&lobby, "ann"), k.name_tag(&lobby, "bob"));
        let hash = [9u8; PASSWORD_HASH_LEN];
        let open = k.password_verifier(&lobby, None);
        let closed = k.password_verifier(&lobby, Some(&hash));
        assert_ne!(open, closed);
        assert_ne!(closed, k.password_verifier(&other, Some(&hash)));
        assert!(closed == k.password_verifier(&lobby, Some(&hash)));
    }

    #[test]
    fn debug_shows_no_key() {
        let k = keys(0xAB);
        for shown in [
            format!("{k:?}"),
            format!("{:?}", k.link()),
            format!("{:?}", ClusterKey([0xAB; 32])),
        ] {
            assert!(!shown.contains("171") && !shown.contains("ab"), "{shown}");
        }
    }
}
