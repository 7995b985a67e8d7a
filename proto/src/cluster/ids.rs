//! The names the cluster gives things: relays, rooms, and member names within a room.
//!
//! All three are fixed-size byte strings, written in Redis as lowercase hex. A [`RelayId`] is
//! random, drawn once per process start (a restarted relay is a new relay). A [`RoomId`] and a
//! [`NameTag`] are keyed hashes under keys derived from the cluster key (see `keys`), so Redis
//! holds neither room names nor usernames in the clear, and nobody without the key can tell
//! which room an id stands for.

use std::fmt;

/// Bytes of a [`RelayId`].
pub const RELAY_ID_LEN: usize = 8;
/// Bytes of a [`RoomId`].
pub const ROOM_ID_LEN: usize = 16;
/// Bytes of a [`NameTag`].
pub const NAME_TAG_LEN: usize = 8;

/// One relay process of the cluster: 64 random bits drawn at start.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayId(pub [u8; RELAY_ID_LEN]);

/// A room, cluster-wide: `BLAKE2b-MAC-128(room key, room name)` (see `keys`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(pub [u8; ROOM_ID_LEN]);

/// A username within one room: `BLAKE2b-MAC-64(name key, room id || username)`. Two members
/// of a room with one tag have one name (a collision of two different names, about
/// `n² / 2^65` for `n` members, would refuse the second as "name is taken").
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameTag(pub [u8; NAME_TAG_LEN]);

macro_rules! hex_id {
    ($name:ident, $len:expr) => {
        impl $name {
            /// Lowercase hex, as Redis keys and fields hold it.
            pub fn to_hex(&self) -> String {
                to_hex(&self.0)
            }

            /// Parses exactly `2 × len` hex digits (either case); `None` otherwise.
            pub fn from_hex(text: &str) -> Option<Self> {
                let mut out = [0u8; $len];
                from_hex(text.as_bytes(), &mut out).then_some($name(out))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

hex_id!(RelayId, RELAY_ID_LEN);
hex_id!(RoomId, ROOM_ID_LEN);
hex_id!(NameTag, NAME_TAG_LEN);

/// `bytes` as lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// Fills `out` from exactly `2 × out.len()` hex digits; false (with `out` in any state) when
/// `text` is not that.
pub fn from_hex(text: &[u8], out: &mut [u8]) -> bool {
    if text.len() != out.len() * 2 {
        return false;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(hi), Some(lo)) => *byte = hi << 4 | lo,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex_and_refuse_anything_else() {
        let relay = RelayId([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
        assert_eq!(relay.to_hex(), "0123456789abcdef");
        assert_eq!(RelayId::from_hex("0123456789ABCDEF"), Some(relay));
        assert_eq!(format!("{relay:?}"), "RelayId(0123456789abcdef)");
        assert_eq!(RelayId::from_hex("0123456789abcde"), None, "short");
        assert_eq!(RelayId::from_hex("0123456789abcdeg"), None, "not hex");
        assert_eq!(RelayId::from_hex("0123456789abcdef0"), None, "long");
        let room = RoomId([0xff; ROOM_ID_LEN]);
        assert_eq!(RoomId::from_hex(&room.to_hex()), Some(room));
        assert_eq!(room.to_hex().len(), 32);
    }
}
