//! The payload of handshake message 1: `[USERNAME, ROOM, BLAKE2b-256(password) or "", SENT_AT]`.
//!
//! SENT_AT, the client's wall-clock time (8 bytes, big-endian Unix seconds), is our extension
//! of VoRS v4: it bounds how long a captured message 1 can be replayed (see [`super::freshness`]).
//! Clients from before it send the first three items only; [`Hello::decode`] reads both forms
//! and leaves the decision to the server's [`super::freshness::Freshness`].

use std::fmt;

use super::control::{ControlError, check_name, fixed, items, name};
use super::freshness::{SENT_AT_LEN, UnixTime};
use super::keys::PASSWORD_HASH_LEN;
use super::netstring;

/// Longest username, in bytes of UTF-8.
pub const MAX_USERNAME_LEN: usize = 64;
/// Longest room name, in bytes of UTF-8.
pub const MAX_ROOM_LEN: usize = 64;

/// The payload of handshake message 1, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello<'a> {
    /// The member's name, unique in the room.
    pub username: &'a str,
    /// The room to join.
    pub room: &'a str,
    /// `BLAKE2b-256(password)`, or `None` (an empty field) for no password.
    pub password_hash: Option<&'a [u8; PASSWORD_HASH_LEN]>,
}

impl<'a> Hello<'a> {
    /// Appends the list `[USERNAME, ROOM, PWHASH or "", SENT_AT]` to `out`, or without
    /// SENT_AT when `sent_at` is `None` (the form of clients from before the extension, which
    /// servers refuse by default). Refuses, leaving `out` unchanged, a name that
    /// [`Hello::decode`] would refuse ([`ControlError::BadName`]).
    pub fn encode(&self, sent_at: Option<UnixTime>, out: &mut Vec<u8>) -> Result<(), ControlError> {
        check_name(self.username, MAX_USERNAME_LEN)?;
        check_name(self.room, MAX_ROOM_LEN)?;
        let hash: &[u8] = self.password_hash.map_or(&[], |h| &h[..]);
        let (username, room) = (self.username.as_bytes(), self.room.as_bytes());
        match sent_at {
            Some(sent_at) => {
                netstring::encode_list(&[username, room, hash, &sent_at.to_wire()], out)
            }
            None => netstring::encode_list(&[username, room, hash], out),
        }
        Ok(())
    }

    /// Parses a message 1 payload: three or four items; a username of 1 to
    /// [`MAX_USERNAME_LEN`] and a room name of 1 to [`MAX_ROOM_LEN`] bytes of UTF-8, neither
    /// with control characters (names reach other members' terminals); the password field
    /// empty or a [`PASSWORD_HASH_LEN`]-byte hash; SENT_AT, when present, exactly
    /// [`SENT_AT_LEN`] bytes. Returns the hello and SENT_AT (`None` for three items).
    pub fn decode(bytes: &'a [u8]) -> Result<(Self, Option<UnixTime>), ControlError> {
        let (items, count) = items(bytes)?;
        let sent_at = match count {
            3 => None,
            4 => Some(UnixTime::from_wire(fixed::<SENT_AT_LEN>(items[3])?)),
            _ => return Err(ControlError::Arity),
        };
        let password_hash = match items[2] {
            [] => None,
            hash => Some(fixed::<PASSWORD_HASH_LEN>(hash)?),
        };
        let hello = Hello {
            username: name(items[0], MAX_USERNAME_LEN)?,
            room: name(items[1], MAX_ROOM_LEN)?,
            password_hash,
        };
        Ok((hello, sent_at))
    }

    /// An owned copy.
    pub fn to_owned(&self) -> HelloOwned {
        HelloOwned {
            username: self.username.to_owned(),
            room: self.room.to_owned(),
            password_hash: self.password_hash.copied(),
        }
    }
}

/// The payload of handshake message 1, owned. `Debug` omits the password hash.
#[derive(Clone, PartialEq, Eq)]
pub struct HelloOwned {
    /// The member's name, unique in the room.
    pub username: String,
    /// The room to join.
    pub room: String,
    /// `BLAKE2b-256(password)`, or `None` for no password.
    pub password_hash: Option<[u8; PASSWORD_HASH_LEN]>,
}

impl HelloOwned {
    /// A borrowed view.
    pub fn as_hello(&self) -> Hello<'_> {
        Hello {
            username: &self.username,
            room: &self.room,
            password_hash: self.password_hash.as_ref(),
        }
    }
}

impl fmt::Debug for HelloOwned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HelloOwned")
            .field("username", &self.username)
            .field("room", &self.room)
            .field("has_password", &self.password_hash.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENT: UnixTime = UnixTime(1_800_000_000);

    #[test]
    fn hello_round_trips_with_and_without_password_and_time() {
        let hash = [9u8; PASSWORD_HASH_LEN];
        for password_hash in [None, Some(&hash)] {
            for sent_at in [Some(SENT), None] {
                let hello = Hello {
                    username: "bob",
                    room: "studio 4",
                    password_hash,
                };
                let mut out = Vec::new();
                hello.encode(sent_at, &mut out).expect("ok");
                assert_eq!(Hello::decode(&out), Ok((hello, sent_at)));
                assert_eq!(hello.to_owned().as_hello(), hello);
            }
        }
    }

    #[test]
    fn hello_bytes_with_sent_at_and_without() {
        let hello = Hello {
            username: "bob",
            room: "r",
            password_hash: None,
        };
        let mut out = Vec::new();
        hello.encode(Some(SENT), &mut out).expect("ok");
        // 1 800 000 000 = 0x6B49D200.
        assert_eq!(out, b"24:3:bob,1:r,0:,8:\0\0\0\0\x6b\x49\xd2\0,,");
        out.clear();
        hello.encode(None, &mut out).expect("ok");
        assert_eq!(out, b"13:3:bob,1:r,0:,,");
    }

    #[test]
    fn sent_at_must_be_eight_bytes() {
        for bad in [&b""[..], b"1800000000", &[0; 7], &[0; 9]] {
            let mut bytes = Vec::new();
            netstring::encode_list(&[b"a", b"r", b"", bad], &mut bytes);
            assert_eq!(
                Hello::decode(&bytes),
                Err(ControlError::FieldLength),
                "{bad:?}"
            );
        }
        let mut bytes = Vec::new();
        netstring::encode_list(&[b"a", b"r", b"", &[0; 8], b"more"], &mut bytes);
        assert_eq!(Hello::decode(&bytes), Err(ControlError::Arity));
    }

    #[test]
    fn hello_refuses_bad_names_and_hashes() {
        let too_long = "n".repeat(MAX_USERNAME_LEN + 1);
        for (username, room) in [
            ("", "r"),
            ("a\nb", "r"),
            (too_long.as_str(), "r"),
            ("a", ""),
        ] {
            let hello = Hello {
                username,
                room,
                password_hash: None,
            };
            let refused = hello.encode(Some(SENT), &mut Vec::new());
            assert_eq!(refused, Err(ControlError::BadName));
            let mut bytes = Vec::new();
            netstring::encode_list(&[username.as_bytes(), room.as_bytes(), b""], &mut bytes);
            assert_eq!(Hello::decode(&bytes), Err(ControlError::BadName));
        }
        let mut bytes = Vec::new();
        netstring::encode_list(&[b"a", b"r", b"short"], &mut bytes);
        assert_eq!(Hello::decode(&bytes), Err(ControlError::FieldLength));
        let mut bytes = Vec::new();
        netstring::encode_list(&[b"a", b"r"], &mut bytes);
        assert_eq!(Hello::decode(&bytes), Err(ControlError::Arity));
    }
}
