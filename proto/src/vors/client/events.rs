//! What a client session hands back: transmits, events, close reasons, counters.

use std::fmt;

use crate::vors::handshake::{HandshakeError, TransportError};
use crate::vors::netstring::NetstringError;
use crate::vors::sid::Sid;

/// Something the client must send. Both kinds go to the server's address: VoRS uses the
/// same port for TCP and UDP.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientTransmit {
    /// Bytes for the TCP connection, in order.
    Tcp(Vec<u8>),
    /// One UDP datagram for the server.
    Udp(Vec<u8>),
}

impl fmt::Debug for ClientTransmit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientTransmit::Tcp(b) => write!(f, "Tcp({} bytes)", b.len()),
            ClientTransmit::Udp(b) => write!(f, "Udp({} bytes)", b.len()),
        }
    }
}

/// What the application should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server gave us our SID: we are in the room.
    Joined(Sid),
    /// The server refused us (or sent ERR later), with its reason. `Closed` follows.
    Rejected(String),
    /// A member is in the room (sent for everyone present when we join, then for newcomers).
    PeerAdded {
        /// The member's SID.
        sid: Sid,
        /// The member's name.
        username: String,
    },
    /// A member left.
    PeerRemoved {
        /// The member's SID.
        sid: Sid,
        /// The member's name.
        username: String,
    },
    /// A member muted itself.
    PeerMuted(Sid),
    /// A member unmuted itself.
    PeerUnmuted(Sid),
    /// A member said something.
    Chat {
        /// The author.
        sid: Sid,
        /// The text.
        msg: String,
    },
    /// The session is over.
    Closed(ClientCloseReason),
}

/// Why a client session ended.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCloseReason {
    /// The server answered ERR.
    Rejected,
    /// Message 2 failed (wrong server key, corruption).
    Handshake(HandshakeError),
    /// A control message failed to decrypt or decode.
    Transport(TransportError),
    /// A TCP frame was not a netstring within the size limit.
    Framing(NetstringError),
    /// The server sent a message only clients send.
    UnexpectedMessage,
    /// No message 2, or no SID, within [`REPLY_TIMEOUT`](super::REPLY_TIMEOUT).
    ReplyTimeout,
    /// Nothing from the server for [`SERVER_TIMEOUT`](super::SERVER_TIMEOUT).
    ServerTimeout,
    /// The server closed the connection.
    PeerClosed,
    /// The server closed the connection before message 2: it refused message 1 without an
    /// answer. A relay does so for a hello whose time (SENT_AT) is more than its window away
    /// from its own clock (is this machine's clock right?), for a copy of a hello it has seen,
    /// and for a connection over its handshake limits.
    ClosedUnanswered,
    /// PKT reached 2^24 - 1: this session cannot send more media (93 hours at 50 packets/s);
    /// reconnect for a new key and counter.
    CounterExhausted,
}

/// Counters of one client session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Cookie datagrams sent.
    pub cookies_sent: u64,
    /// Keepalive datagrams sent.
    pub keepalives_sent: u64,
    /// PINGs sent.
    pub pings_sent: u64,
    /// Audio frames counted (sent or not).
    pub frames: u64,
    /// Media packets sent.
    pub packets_sent: u64,
    /// Media packets accepted from peers.
    pub packets_received: u64,
    /// Peer packets missing by PKT gaps.
    pub packets_lost: u64,
    /// Datagrams too short for media.
    pub dropped_malformed: u64,
    /// Media from a SID no ADD announced.
    pub dropped_unknown_sid: u64,
    /// Media whose tag failed under the peer's key.
    pub dropped_bad_tag: u64,
    /// Media with the PKT last accepted from that peer.
    pub dropped_replayed: u64,
    /// Media with a PKT below the last accepted from that peer.
    pub dropped_reordered: u64,
}
