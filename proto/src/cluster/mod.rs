//! The cluster: several relays acting as one service, coordinated through Redis, with media
//! cascading between them over an authenticated relay link. docs/cluster.md has the design.
//!
//! What is wire format or pure computation lives here, sans-IO like the rest of the crate:
//! - [`ids`]: relay, room and name identities;
//! - [`keys`]: the cluster key and every key derived from it (link tags, sealing, ids, the
//!   key-check value);
//! - [`seal`]: member records and chat, sealed before they reach Redis;
//! - [`link`]: relay-link datagrams (encode into a caller's buffer, parse into a borrowed
//!   view, verify the tag);
//! - [`replay`]: the replay window of one origin.
//!
//! The relay (`relay/src/cluster/`) does the I/O: Redis, the link sockets, the rooms.

pub mod ids;
pub mod keys;
pub mod link;
pub mod replay;
pub mod seal;

pub use ids::{NameTag, RelayId, RoomId};
pub use keys::{ClusterKey, ClusterKeys, LinkKey, PasswordVerifier, SealKey};
