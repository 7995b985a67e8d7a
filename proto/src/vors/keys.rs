//! Per-member media keys and the room password hash.
//!
//! After the Noise handshake both sides compute
//! `K = BLAKE2Xb(key = "", input = handshake hash h, output length 48)` and split it:
//! `K[0..32]` is the member's ChaCha20 key, `K[32..48]` its SipHash-2-4 key. The server hands
//! the 48 bytes to the other members of the room in ADD, so everyone in the room can check and
//! decrypt everyone's packets, and the relay can check tags without decrypting.

use std::fmt;

use super::blake2xb::{blake2b, expand};

/// Bytes of a ChaCha20 key.
pub const CIPHER_KEY_LEN: usize = 32;
/// Bytes of a SipHash-2-4 key.
pub const MAC_KEY_LEN: usize = 16;
/// Bytes of a member's keys on the wire (the KEY field of ADD): cipher key then MAC key.
pub const KEY_WIRE_LEN: usize = CIPHER_KEY_LEN + MAC_KEY_LEN;
/// Bytes of the room password hash in message 1: BLAKE2b-256.
pub const PASSWORD_HASH_LEN: usize = 32;

/// One member's media keys. `Debug` does not print them.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// ChaCha20 (IETF, 96-bit nonce) key for the member's Opus payloads.
    pub cipher: [u8; CIPHER_KEY_LEN],
    /// SipHash-2-4 key for the member's packet tags.
    pub mac: [u8; MAC_KEY_LEN],
}

impl SessionKeys {
    /// Derives the keys from a completed handshake's hash:
    /// `BLAKE2Xb(unkeyed, out = 48)(handshake_hash)`, split 32 | 16.
    pub fn from_handshake_hash(handshake_hash: &[u8]) -> Self {
        let mut wire = [0u8; KEY_WIRE_LEN];
        expand(&[], handshake_hash, &mut wire, KEY_WIRE_LEN as u32);
        Self::from_wire(&wire)
    }

    /// The 48 bytes ADD carries: cipher key then MAC key.
    pub fn to_wire(&self) -> [u8; KEY_WIRE_LEN] {
        let mut wire = [0u8; KEY_WIRE_LEN];
        wire[..CIPHER_KEY_LEN].copy_from_slice(&self.cipher);
        wire[CIPHER_KEY_LEN..].copy_from_slice(&self.mac);
        wire
    }

    /// Keys from the 48 bytes of an ADD.
    pub fn from_wire(wire: &[u8; KEY_WIRE_LEN]) -> Self {
        let mut cipher = [0u8; CIPHER_KEY_LEN];
        let mut mac = [0u8; MAC_KEY_LEN];
        cipher.copy_from_slice(&wire[..CIPHER_KEY_LEN]);
        mac.copy_from_slice(&wire[CIPHER_KEY_LEN..]);
        SessionKeys { cipher, mac }
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

/// The room password as message 1 carries it: `BLAKE2b-256(password)` (unkeyed, 32-byte
/// digest, UTF-8 bytes of the password as typed, no salt). An empty password means "no
/// password": the client sends an empty field instead of a hash (see [`password_field`]).
pub fn hash_password(password: &str) -> [u8; PASSWORD_HASH_LEN] {
    let mut out = [0u8; PASSWORD_HASH_LEN];
    blake2b(password.as_bytes(), &mut out);
    out
}

/// The PASSWD field of message 1 for a password typed by the user: `None` (an empty field)
/// for an empty password, its hash otherwise.
pub fn password_field(password: &str) -> Option<[u8; PASSWORD_HASH_LEN]> {
    (!password.is_empty()).then(|| hash_password(password))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vors::blake2xb::blake2xb;
    use blake2::Digest;

    #[test]
    fn keys_are_the_48_byte_xof_of_the_handshake_hash_split_32_16() {
        let hash = [0x42u8; 64];
        let keys = SessionKeys::from_handshake_hash(&hash);
        let mut expected = [0u8; 48];
        blake2xb(&[], &hash, &mut expected).expect("valid");
        assert_eq!(keys.cipher[..], expected[..32]);
        assert_eq!(keys.mac[..], expected[32..]);
        assert_eq!(keys.to_wire(), expected);
        assert_eq!(SessionKeys::from_wire(&expected), keys);
        assert_ne!(SessionKeys::from_handshake_hash(&[0x43; 64]), keys);
    }

    #[test]
    fn worked_example_of_docs_wire_vors() {
        // Handshake hash of 64 zero bytes. (Regression value; BLAKE2Xb itself is checked
        // against the reference KAT in blake2xb.rs.)
        let keys = SessionKeys::from_handshake_hash(&[0; 64]);
        let hex: String = keys.to_wire().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "19805e6291ae72785381be3fc8506f81a575e6167daab18cb6f179ec3d7f9503\
             e7000b00ff245fced6b4e66281b6ad5d"
        );
    }

    #[test]
    fn debug_does_not_show_key_bytes() {
        let keys = SessionKeys::from_wire(&[0xAB; 48]);
        let shown = format!("{keys:?}");
        assert!(
            !shown.contains("171") && !shown.to_lowercase().contains("ab,"),
            "{shown}"
        );
    }

    #[test]
    fn password_hash_is_blake2b_256() {
        let expected = blake2::Blake2b::<blake2::digest::consts::U32>::digest(b"hunter2");
        assert_eq!(hash_password("hunter2")[..], expected[..]);
        assert_eq!(password_field(""), None);
        assert_eq!(password_field("hunter2"), Some(hash_password("hunter2")));
    }
}
