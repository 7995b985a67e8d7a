//! VoRS rooms: the handshake listener, rooms on their owner core, and UDP media.
//!
//! A TCP connection is accepted on any core, which reads the magic and message 1, decrypts
//! message 1 (a costly step, within the core's handshake budget) and learns the room. The connection and its session then move to the
//! room's owner core, which runs the room (`moose_proto::vors::room`). UDP datagrams are
//! steered by the kernel to the core named by their first byte (see
//! `sys::steer_udp_by_first_byte`): the relay gives each room SIDs, and each joining member a
//! cookie, whose first byte modulo the number of cores is the owner core, so every datagram of
//! a room is checked and forwarded on the core that owns it, with no cross-core hop.
//!
//! `rooms` is one core's table of rooms (and of the cookies and addresses that find a
//! datagram's room), `room` one room with its members' queues, `member` a member's admission
//! and connection, `media` the UDP path, `replay` the freshness check of message 1, `silence`
//! the sweep that stops media to members nothing comes from, `turns` the queue at each core's
//! handshake CPU budget. The decisions (`member::join`, `media::judge`) take
//! plain values, not the whole `Shard`, and `testing` drives them with real client sessions.

pub(crate) mod control_rate;
pub(crate) mod early;
pub(crate) mod event_task;
pub(crate) mod events;
pub mod keyfile;
pub(crate) mod link;
pub(crate) mod link_in;
pub(crate) mod listener;
pub(crate) mod media;
pub(crate) mod member;
pub(crate) mod remote;
pub(crate) mod replay;
pub(crate) mod reserve;
pub(crate) mod room;
pub(crate) mod room_remote;
pub(crate) mod rooms;
pub(crate) mod silence;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod turns;
