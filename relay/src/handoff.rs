//! What one core hands to another: a connection whose room turned out to live there.
//!
//! The accepting core has read the request and checked the key; the owner core decides the
//! rest (is the line full?) and runs the connection from then on. The socket travels as an
//! owned descriptor, the bytes read so far and its per-address slot travel with it.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use moose_proto::vors::hello::HelloOwned;
use moose_proto::vors::server::ServerSession;

use crate::limits::address::AddressSlot;

/// A WebSocket upgrade for a line owned by the receiving core.
#[derive(Debug)]
pub(crate) struct LineRequest {
    /// The validated apikey (never logged).
    pub key: Box<[u8]>,
    /// The client's Sec-WebSocket-Key, for the 101 response.
    pub ws_key: String,
    pub addr: SocketAddr,
    /// Bytes the client sent after its request head.
    pub early: Vec<u8>,
    /// The connection's place in `--max-connections-per-address`, given back when the peer's
    /// connection ends on the owner core.
    pub slot: AddressSlot,
}

/// A message on the core-to-core mesh.
#[derive(Debug)]
pub(crate) enum Handoff {
    Line {
        fd: OwnedFd,
        request: LineRequest,
    },
    /// A VoRS connection whose message 1 named a room owned by the receiving core. The
    /// session carries the handshake state (message 2 is not written yet).
    Vors {
        fd: OwnedFd,
        session: Box<ServerSession>,
        hello: HelloOwned,
        /// As in [`LineRequest::slot`].
        slot: AddressSlot,
    },
}
