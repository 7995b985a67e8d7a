//! Control messages: the handshake payloads and the commands sent over Noise after it.
//!
//! Every message is a list of netstrings whose first item is the command word:
//!
//! | message                      | items                          | direction |
//! |------------------------------|--------------------------------|-----------|
//! | [`super::hello::Hello`] (msg 1) | USERNAME, ROOM, PWHASH or ""   | C → S     |
//! | [`Control::Cookie`] (msg 2)  | "COOKIE", 16 bytes             | S → C     |
//! | [`Control::Err`] (msg 2)     | "ERR", text                    | S → C     |
//! | [`Control::Sid`]             | "SID", 1 byte                  | S → C     |
//! | [`Control::Ping`] / `Pong`   | "PING" / "PONG"                | C → S / S → C |
//! | [`Control::Add`]             | "ADD", SID, USERNAME, 48 bytes | S → C     |
//! | [`Control::Del`]             | "DEL", SID                     | S → C     |
//! | [`Control::Muted`]/`Unmuted` | "MUTED"/"UNMUTED" [, SID]      | C → S without SID, S → C with |
//! | [`Control::Chat`]            | "CHAT" [, SID], MSG            | C → S without SID, S → C with |
//!
//! A SID is one raw byte. Encoding writes the list as the description draws it, one netstring
//! around the items: `NS(NS("CHAT") || NS(MSG))`. Decoding also accepts the bare item sequence
//! `NS("CHAT") || NS(MSG)`, in case a peer reads "the payload is the list" as the items alone;
//! the two forms cannot be confused, because no single-item message is itself a netstring.

use std::fmt;

use super::hello::MAX_USERNAME_LEN;
use super::keys::KEY_WIRE_LEN;
use super::netstring::{self, NetstringError};
use super::packet::COOKIE_LEN;
use super::sid::Sid;

/// Longest chat message, in bytes of UTF-8.
pub const MAX_CHAT_LEN: usize = 1024;
/// Longest ERR text, in bytes of UTF-8.
pub const MAX_ERR_LEN: usize = 256;
/// Upper bound of an encoded control message (a CHAT with SID and the longest text).
pub const MAX_CONTROL_LEN: usize = 1100;
/// The most items any message has (ADD).
const MAX_ITEMS: usize = 4;

/// Why a control message or hello cannot be encoded or decoded.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlError {
    /// The bytes are not a netstring list.
    Framing(NetstringError),
    /// The list has no items.
    Empty,
    /// The command word is not one we know.
    UnknownCommand,
    /// The command has the wrong number of items.
    Arity,
    /// A fixed-size field (SID, cookie, key, password hash) has the wrong length.
    FieldLength,
    /// A text field is not UTF-8.
    NotUtf8,
    /// A username or room name is empty, too long, or holds control characters.
    BadName,
    /// A chat message or error text is over its limit.
    TooLong,
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Framing(e) => write!(f, "control message framing: {e}"),
            ControlError::Empty => f.write_str("control message has no items"),
            ControlError::UnknownCommand => f.write_str("unknown control command"),
            ControlError::Arity => f.write_str("wrong number of control message items"),
            ControlError::FieldLength => f.write_str("control field has the wrong length"),
            ControlError::NotUtf8 => f.write_str("control text is not UTF-8"),
            ControlError::BadName => {
                f.write_str("name is empty, too long or has control characters")
            }
            ControlError::TooLong => f.write_str("control text is too long"),
        }
    }
}

impl std::error::Error for ControlError {}

impl From<NetstringError> for ControlError {
    fn from(e: NetstringError) -> Self {
        ControlError::Framing(e)
    }
}

/// The items of a decoded list (borrowed), at most [`MAX_ITEMS`].
pub(super) fn items(bytes: &[u8]) -> Result<([&[u8]; MAX_ITEMS], usize), ControlError> {
    // The described form is one netstring around the items; fall back to the bare items.
    let list = match netstring::decode(bytes, bytes.len()) {
        Ok(Some((inner, used)))
            if used == bytes.len()
                && !inner.is_empty()
                && netstring::list_items(inner).all(|item| item.is_ok()) =>
        {
            inner
        }
        _ => bytes,
    };
    let mut out: [&[u8]; MAX_ITEMS] = [&[]; MAX_ITEMS];
    let mut count = 0;
    for item in netstring::list_items(list) {
        let slot = out.get_mut(count).ok_or(ControlError::Arity)?;
        *slot = item?;
        count += 1;
    }
    if count == 0 {
        return Err(ControlError::Empty);
    }
    Ok((out, count))
}

pub(super) fn name(bytes: &[u8], max: usize) -> Result<&str, ControlError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ControlError::NotUtf8)?;
    check_name(text, max)?;
    Ok(text)
}

pub(super) fn check_name(text: &str, max: usize) -> Result<(), ControlError> {
    // Names end up on other people's terminals: no escapes, no line breaks.
    if text.is_empty() || text.len() > max || text.chars().any(char::is_control) {
        return Err(ControlError::BadName);
    }
    Ok(())
}

pub(super) fn text(bytes: &[u8], max: usize) -> Result<&str, ControlError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ControlError::NotUtf8)?;
    check_text(text, max)?;
    Ok(text)
}

pub(super) fn check_text(text: &str, max: usize) -> Result<(), ControlError> {
    if text.len() > max {
        return Err(ControlError::TooLong);
    }
    Ok(())
}

pub(super) fn sid(bytes: &[u8]) -> Result<Sid, ControlError> {
    match bytes {
        [b] => Ok(Sid(*b)),
        _ => Err(ControlError::FieldLength),
    }
}

pub(super) fn fixed<const N: usize>(bytes: &[u8]) -> Result<&[u8; N], ControlError> {
    bytes.try_into().map_err(|_| ControlError::FieldLength)
}

/// A control message, borrowed from the decrypted plaintext. `Debug` hides cookies and keys.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Control<'a> {
    /// `["COOKIE", 16 bytes]`: message 2 of an accepted handshake.
    Cookie(&'a [u8; COOKIE_LEN]),
    /// `["ERR", text]`: message 2 of a refused handshake.
    Err(&'a str),
    /// `["SID", sid]`: the cookie arrived over UDP; this is the member's stream identifier.
    Sid(Sid),
    /// `["PING"]`, from the client every 10 s.
    Ping,
    /// `["PONG"]`, the server's answer.
    Pong,
    /// `["ADD", sid, username, key]`: a member is in the room, with its media keys.
    Add {
        /// The member's SID.
        sid: Sid,
        /// The member's name.
        username: &'a str,
        /// The member's cipher and MAC keys ([`super::keys::SessionKeys::to_wire`]).
        key: &'a [u8; KEY_WIRE_LEN],
    },
    /// `["DEL", sid]`: the member left.
    Del(Sid),
    /// `["MUTED"]` from a client, `["MUTED", sid]` from the server.
    Muted(Option<Sid>),
    /// `["UNMUTED"]` from a client, `["UNMUTED", sid]` from the server.
    Unmuted(Option<Sid>),
    /// `["CHAT", msg]` from a client, `["CHAT", sid, msg]` from the server.
    Chat {
        /// The author, when the server relays it.
        sid: Option<Sid>,
        /// The message text.
        msg: &'a str,
    },
}

impl<'a> Control<'a> {
    /// The command word, the list's first item: `"COOKIE"`, `"SID"`, ... in ASCII upper case.
    pub fn command(&self) -> &'static str {
        match self {
            Control::Cookie(_) => "COOKIE",
            Control::Err(_) => "ERR",
            Control::Sid(_) => "SID",
            Control::Ping => "PING",
            Control::Pong => "PONG",
            Control::Add { .. } => "ADD",
            Control::Del(_) => "DEL",
            Control::Muted(_) => "MUTED",
            Control::Unmuted(_) => "UNMUTED",
            Control::Chat { .. } => "CHAT",
        }
    }

    /// Appends the message to `out` as one netstring around its items (module docs).
    /// Refuses a text over its limit ([`ControlError::TooLong`]) and an ADD username that
    /// [`Control::decode`] would refuse ([`ControlError::BadName`]), leaving `out` unchanged.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), ControlError> {
        let cmd = self.command().as_bytes();
        let sid_byte;
        match *self {
            Control::Cookie(cookie) => netstring::encode_list(&[cmd, cookie], out),
            Control::Err(reason) => {
                check_text(reason, MAX_ERR_LEN)?;
                netstring::encode_list(&[cmd, reason.as_bytes()], out);
            }
            Control::Sid(sid) | Control::Del(sid) => netstring::encode_list(&[cmd, &[sid.0]], out),
            Control::Ping | Control::Pong | Control::Muted(None) | Control::Unmuted(None) => {
                netstring::encode_list(&[cmd], out);
            }
            Control::Muted(Some(sid)) | Control::Unmuted(Some(sid)) => {
                netstring::encode_list(&[cmd, &[sid.0]], out);
            }
            Control::Add { sid, username, key } => {
                check_name(username, MAX_USERNAME_LEN)?;
                sid_byte = [sid.0];
                netstring::encode_list(&[cmd, &sid_byte, username.as_bytes(), key], out);
            }
            Control::Chat { sid, msg } => {
                check_text(msg, MAX_CHAT_LEN)?;
                match sid {
                    None => netstring::encode_list(&[cmd, msg.as_bytes()], out),
                    Some(sid) => netstring::encode_list(&[cmd, &[sid.0], msg.as_bytes()], out),
                }
            }
        }
        Ok(())
    }

    /// Parses one decrypted control message, in either framing of the module docs, borrowing
    /// its fields from `bytes`. Checks the command's arity, the fixed field lengths (SID 1
    /// byte, cookie 16, key 48), UTF-8, and the text and name limits.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, ControlError> {
        let (items, count) = items(bytes)?;
        let args = &items[1..count];
        Ok(match (items[0], args) {
            (b"COOKIE", [cookie]) => Control::Cookie(fixed::<COOKIE_LEN>(cookie)?),
            (b"ERR", [reason]) => Control::Err(text(reason, MAX_ERR_LEN)?),
            (b"SID", [s]) => Control::Sid(sid(s)?),
            (b"PING", []) => Control::Ping,
            (b"PONG", []) => Control::Pong,
            (b"ADD", [s, username, key]) => Control::Add {
                sid: sid(s)?,
                username: name(username, MAX_USERNAME_LEN)?,
                key: fixed::<KEY_WIRE_LEN>(key)?,
            },
            (b"DEL", [s]) => Control::Del(sid(s)?),
            (b"MUTED", []) => Control::Muted(None),
            (b"MUTED", [s]) => Control::Muted(Some(sid(s)?)),
            (b"UNMUTED", []) => Control::Unmuted(None),
            (b"UNMUTED", [s]) => Control::Unmuted(Some(sid(s)?)),
            (b"CHAT", [msg]) => Control::Chat {
                sid: None,
                msg: text(msg, MAX_CHAT_LEN)?,
            },
            (b"CHAT", [s, msg]) => Control::Chat {
                sid: Some(sid(s)?),
                msg: text(msg, MAX_CHAT_LEN)?,
            },
            (
                b"COOKIE" | b"ERR" | b"SID" | b"PING" | b"PONG" | b"ADD" | b"DEL" | b"MUTED"
                | b"UNMUTED" | b"CHAT",
                _,
            ) => return Err(ControlError::Arity),
            _ => return Err(ControlError::UnknownCommand),
        })
    }

    /// An owned copy.
    pub fn to_owned(&self) -> ControlOwned {
        match *self {
            Control::Cookie(c) => ControlOwned::Cookie(*c),
            Control::Err(e) => ControlOwned::Err(e.to_owned()),
            Control::Sid(s) => ControlOwned::Sid(s),
            Control::Ping => ControlOwned::Ping,
            Control::Pong => ControlOwned::Pong,
            Control::Add { sid, username, key } => ControlOwned::Add {
                sid,
                username: username.to_owned(),
                key: *key,
            },
            Control::Del(s) => ControlOwned::Del(s),
            Control::Muted(s) => ControlOwned::Muted(s),
            Control::Unmuted(s) => ControlOwned::Unmuted(s),
            Control::Chat { sid, msg } => ControlOwned::Chat {
                sid,
                msg: msg.to_owned(),
            },
        }
    }
}

/// A control message, owned (what the room queues and `Transport::decrypt_control` returns).
/// `Debug` hides cookies and keys.
#[derive(Clone, PartialEq, Eq)]
pub enum ControlOwned {
    /// See [`Control::Cookie`].
    Cookie([u8; COOKIE_LEN]),
    /// See [`Control::Err`].
    Err(String),
    /// See [`Control::Sid`].
    Sid(Sid),
    /// See [`Control::Ping`].
    Ping,
    /// See [`Control::Pong`].
    Pong,
    /// See [`Control::Add`].
    Add {
        /// The member's SID.
        sid: Sid,
        /// The member's name.
        username: String,
        /// The member's cipher and MAC keys.
        key: [u8; KEY_WIRE_LEN],
    },
    /// See [`Control::Del`].
    Del(Sid),
    /// See [`Control::Muted`].
    Muted(Option<Sid>),
    /// See [`Control::Unmuted`].
    Unmuted(Option<Sid>),
    /// See [`Control::Chat`].
    Chat {
        /// The author, when the server relays it.
        sid: Option<Sid>,
        /// The message text.
        msg: String,
    },
}

impl ControlOwned {
    /// A borrowed view, for encoding.
    pub fn as_control(&self) -> Control<'_> {
        match self {
            ControlOwned::Cookie(c) => Control::Cookie(c),
            ControlOwned::Err(e) => Control::Err(e),
            ControlOwned::Sid(s) => Control::Sid(*s),
            ControlOwned::Ping => Control::Ping,
            ControlOwned::Pong => Control::Pong,
            ControlOwned::Add { sid, username, key } => Control::Add {
                sid: *sid,
                username,
                key,
            },
            ControlOwned::Del(s) => Control::Del(*s),
            ControlOwned::Muted(s) => Control::Muted(*s),
            ControlOwned::Unmuted(s) => Control::Unmuted(*s),
            ControlOwned::Chat { sid, msg } => Control::Chat { sid: *sid, msg },
        }
    }
}

impl fmt::Debug for Control<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Cookies and keys are secrets: logs get which message it is, not those bytes.
        match self {
            Control::Cookie(_) => f.write_str("Cookie(..)"),
            Control::Err(e) => f.debug_tuple("Err").field(e).finish(),
            Control::Sid(s) => f.debug_tuple("Sid").field(s).finish(),
            Control::Ping => f.write_str("Ping"),
            Control::Pong => f.write_str("Pong"),
            Control::Add { sid, username, .. } => f
                .debug_struct("Add")
                .field("sid", sid)
                .field("username", username)
                .finish_non_exhaustive(),
            Control::Del(s) => f.debug_tuple("Del").field(s).finish(),
            Control::Muted(s) => f.debug_tuple("Muted").field(s).finish(),
            Control::Unmuted(s) => f.debug_tuple("Unmuted").field(s).finish(),
            Control::Chat { sid, msg } => f
                .debug_struct("Chat")
                .field("sid", sid)
                .field("msg", msg)
                .finish(),
        }
    }
}

impl fmt::Debug for ControlOwned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.as_control(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(msg: Control<'_>) {
        let mut out = Vec::new();
        msg.encode(&mut out).expect("encodable");
        assert_eq!(
            Control::decode(&out),
            Ok(msg),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(msg.to_owned().as_control(), msg);
    }

    #[test]
    fn every_message_round_trips() {
        let key = [7u8; KEY_WIRE_LEN];
        for msg in [
            Control::Cookie(&[1; COOKIE_LEN]),
            Control::Err("room is full"),
            Control::Sid(Sid(0)),
            Control::Ping,
            Control::Pong,
            Control::Add {
                sid: Sid(255),
                username: "alice",
                key: &key,
            },
            Control::Del(Sid(44)),
            Control::Muted(None),
            Control::Muted(Some(Sid(3))),
            Control::Unmuted(None),
            Control::Unmuted(Some(Sid(3))),
            Control::Chat {
                sid: None,
                msg: "hi, all: 1:x,",
            },
            Control::Chat {
                sid: Some(Sid(58)),
                msg: "",
            },
        ] {
            round_trip(msg);
        }
    }

    #[test]
    fn encodes_exactly_the_described_bytes() {
        let mut out = Vec::new();
        Control::Ping.encode(&mut out).expect("ok");
        assert_eq!(out, b"7:4:PING,,");
        out.clear();
        Control::Sid(Sid(b'A')).encode(&mut out).expect("ok");
        assert_eq!(out, b"10:3:SID,1:A,,");
        out.clear();
        Control::Chat {
            sid: Some(Sid(0x2C)),
            msg: "yo",
        }
        .encode(&mut out)
        .expect("ok");
        assert_eq!(out, b"16:4:CHAT,1:,,2:yo,,");
    }

    #[test]
    fn decodes_the_bare_item_sequence_too() {
        assert_eq!(Control::decode(b"4:PING,"), Ok(Control::Ping));
        assert_eq!(
            Control::decode(b"5:MUTED,1:\x07,"),
            Ok(Control::Muted(Some(Sid(7))))
        );
        assert_eq!(
            Control::decode(b"5:MUTED,1:x,"),
            Ok(Control::Muted(Some(Sid(b'x'))))
        );
        assert_eq!(
            Control::decode(b"4:CHAT,5:hello,"),
            Ok(Control::Chat {
                sid: None,
                msg: "hello"
            })
        );
    }

    #[test]
    fn refuses_bad_messages() {
        assert_eq!(Control::decode(b""), Err(ControlError::Empty));
        assert_eq!(
            Control::decode(b"3:0:,,"),
            Err(ControlError::UnknownCommand)
        );
        assert_eq!(
            Control::decode(b"4:PONZ,"),
            Err(ControlError::UnknownCommand)
        );
        assert_eq!(Control::decode(b"4:PING,1:x,"), Err(ControlError::Arity));
        assert_eq!(
            Control::decode(b"3:SID,2:ab,"),
            Err(ControlError::FieldLength)
        );
        assert_eq!(
            Control::decode(b"6:COOKIE,3:abc,"),
            Err(ControlError::FieldLength)
        );
        assert_eq!(
            Control::decode(b"3:ERR,1:\xff,"),
            Err(ControlError::NotUtf8)
        );
        assert_eq!(
            Control::decode(b"3:ADD,1:a,0:,0:,"),
            Err(ControlError::BadName)
        );
        assert_eq!(
            Control::decode(b"4:PING,x"),
            Err(ControlError::Framing(NetstringError::BadLength))
        );
        assert_eq!(
            Control::decode(b"1:a,1:b,1:c,1:d,1:e,"),
            Err(ControlError::Arity),
            "more items than any message has"
        );
        let long = "x".repeat(MAX_CHAT_LEN + 1);
        let msg = Control::Chat {
            sid: None,
            msg: &long,
        };
        assert_eq!(msg.encode(&mut Vec::new()), Err(ControlError::TooLong));
        let mut bytes = Vec::new();
        netstring::encode_list(&[b"CHAT", long.as_bytes()], &mut bytes);
        assert_eq!(Control::decode(&bytes), Err(ControlError::TooLong));
    }

    #[test]
    fn debug_hides_cookies_and_keys() {
        let key = [0xAB; KEY_WIRE_LEN];
        let add = Control::Add {
            sid: Sid(1),
            username: "u",
            key: &key,
        };
        let shown = format!(
            "{add:?} {:?}",
            Control::Cookie(&[0xCD; COOKIE_LEN]).to_owned()
        );
        assert!(!shown.contains("171") && !shown.contains("205"), "{shown}");
    }
}
