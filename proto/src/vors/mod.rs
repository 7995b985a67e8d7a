//! VoRS v4: netstrings, control messages, Noise handshake, media packets, sessions.
//!
//! Wire format as implemented, and every choice the public description leaves open:
//! `docs/wire-vors.md`. Layers, bottom up: [`netstring`], [`hello`] and [`control`]
//! (payloads), [`freshness`] (how old a hello may be), [`blake2xb`] and [`keys`] (key derivation), [`handshake`] (Noise via `snow`),
//! [`packet`] (UDP), [`room`] (the relay's room logic and edge check), and the sans-IO
//! session machines [`server`] and [`client`].

use std::fmt;

use handshake::HandshakeError;
use transport::TransportError;

pub mod blake2xb;
pub mod client;
pub mod control;
pub mod freshness;
pub mod handshake;
pub mod hello;
pub mod keys;
pub mod netstring;
pub mod packet;
pub mod room;
pub mod server;
pub mod sid;
pub mod transport;

pub use sid::Sid;

/// A call the session cannot honour in its current state.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// Not the moment for this call (e.g. `accept` before the hello, or `send_control`
    /// before `accept`).
    WrongState,
    /// The session is closed.
    Closed,
    /// The handshake failed while answering; the session is now closed.
    Handshake(HandshakeError),
    /// The message could not be encrypted (a field over its limit).
    Transport(TransportError),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::WrongState => f.write_str("not possible in the session's state"),
            SessionError::Closed => f.write_str("session is closed"),
            SessionError::Handshake(e) => write!(f, "handshake: {e}"),
            SessionError::Transport(e) => write!(f, "transport: {e}"),
        }
    }
}

impl std::error::Error for SessionError {}
