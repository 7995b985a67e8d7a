//! Why a call could not start or ended badly, and the exit code each reason maps to.

use std::io;

use moose_proto::vors::client::ClientCloseReason;
use moose_proto::vors::handshake::HandshakeError;

use crate::audio::AudioError;

/// Exit code when the server refused us (ERR), as `moose-call` documents it.
pub const EXIT_REFUSED: i32 = 3;
/// Exit code for every other failure.
pub const EXIT_FAILURE: i32 = 1;

/// A call that could not start, or that ended other than by our own choice.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The server answered ["ERR", reason]: room full, name taken, wrong password, ...
    #[error("refused: {0}")]
    Refused(String),
    /// `--pubkey` is not 64 hex digits.
    #[error("server public key must be 64 hex digits (32 bytes)")]
    BadPublicKey,
    /// A username or room name the protocol cannot carry.
    #[error("{what} must be 1 to {max} bytes of UTF-8 without control characters")]
    BadName {
        /// Which field.
        what: &'static str,
        /// Its byte limit.
        max: usize,
    },
    /// `HOST:PORT` did not resolve to any address.
    #[error("cannot resolve {addr}: {source}")]
    Resolve {
        /// What was given.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No TCP connection to the server.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where we tried.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A local socket or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// Message 1 could not be made (snow setup failed).
    #[error("cannot start the handshake: {0}")]
    Handshake(HandshakeError),
    /// The session ended without our asking: the server went away, timed out, or broke
    /// the protocol.
    #[error("{}", describe_close(*.0))]
    Closed(ClientCloseReason),
    /// The input or output command (or device) failed or could not start.
    #[error("{0}")]
    Live(String),
    /// A sound device was named, but this build has none (no `sound-devices` feature).
    #[error(
        "built without sound-device support: rebuild with --features sound-devices, or use \
         --input-cmd/--output-cmd"
    )]
    NoSoundDevices,
    /// Reading the input WAV, coding audio, or writing a recording failed.
    #[error(transparent)]
    Audio(#[from] AudioError),
}

impl CallError {
    /// The process exit code `moose-call` uses for this error: 3 when refused, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            CallError::Refused(_) => EXIT_REFUSED,
            _ => EXIT_FAILURE,
        }
    }

    pub(crate) fn io(what: &'static str) -> impl FnOnce(io::Error) -> CallError {
        move |source| CallError::Io { what, source }
    }
}

/// A person-readable cause for a session that ended on its own.
pub fn describe_close(reason: ClientCloseReason) -> String {
    match reason {
        ClientCloseReason::Rejected => "refused by the server".to_owned(),
        ClientCloseReason::Handshake(e) => {
            format!("handshake failed (is --pubkey the server's key?): {e}")
        }
        ClientCloseReason::Transport(e) => format!("control message failed: {e}"),
        ClientCloseReason::Framing(e) => format!("bad framing from the server: {e:?}"),
        ClientCloseReason::UnexpectedMessage => "the server sent an unexpected message".to_owned(),
        ClientCloseReason::ReplyTimeout => {
            "timed out waiting for the server (handshake reply or SID; is UDP reaching it?)"
                .to_owned()
        }
        ClientCloseReason::ServerTimeout => "the server went silent".to_owned(),
        ClientCloseReason::PeerClosed => "the server closed the connection".to_owned(),
        ClientCloseReason::ClosedUnanswered => {
            "the server closed the connection without answering the handshake: is --pubkey \
             the server's key, and this computer's clock right (a relay refuses a hello more \
             than 30 s off its own)? A relay over its handshake limits closes too."
                .to_owned()
        }
        ClientCloseReason::CounterExhausted => {
            "packet counter exhausted; reconnect for a new session".to_owned()
        }
        other => format!("session closed: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_exit_3_and_says_why() {
        let e = CallError::Refused("name is taken".to_owned());
        assert_eq!(e.exit_code(), 3);
        assert_eq!(e.to_string(), "refused: name is taken");
    }

    #[test]
    fn everything_else_is_exit_1() {
        assert_eq!(CallError::BadPublicKey.exit_code(), 1);
        let e = CallError::Closed(ClientCloseReason::ReplyTimeout);
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("timed out"), "{e}");
    }
}
