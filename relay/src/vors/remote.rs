//! The cluster side of a room on its owner core (docs/cluster.md): its cluster id, the relays
//! of the members other relays host, and so the relays its media goes to. What the room says to
//! the cluster and hears from it is `room_remote`.
//!
//! A standalone relay's rooms have none of this (`RoomCell::cluster` is `None`).
//!
//! The relays a packet goes to are those of the remote members the cluster announced: a relay
//! whose members are all still joining has nobody to hear it yet (no UDP address), and it
//! appears with its first `ADD`. Each relay gets one copy, whatever its number of members.

use std::cell::{Ref, RefCell};
use std::collections::HashMap;

use moose_proto::cluster::{RelayId, RoomId};
use moose_proto::vors::Sid;

use crate::cluster::ClusterHandle;

/// The cluster side of one room.
#[derive(Debug)]
pub(crate) struct ClusterRoom {
    handle: ClusterHandle,
    id: RoomId,
    /// Each remote member's relay, and that relay's owner core of the room.
    pub(super) members: RefCell<HashMap<Sid, (RelayId, u8)>>,
    /// The distinct relays of `members` (rebuilt when they change): one link datagram each.
    hosts: RefCell<Vec<(RelayId, u8)>>,
}

impl ClusterRoom {
    pub(crate) fn new(handle: ClusterHandle, id: RoomId) -> Self {
        ClusterRoom {
            handle,
            id,
            members: RefCell::new(HashMap::new()),
            hosts: RefCell::new(Vec::new()),
        }
    }

    pub(crate) fn id(&self) -> RoomId {
        self.id
    }

    pub(crate) fn handle(&self) -> &ClusterHandle {
        &self.handle
    }

    /// The other relays with members of the room: (relay, its owner core of the room).
    pub(crate) fn hosts(&self) -> Ref<'_, Vec<(RelayId, u8)>> {
        self.hosts.borrow()
    }

    pub(super) fn rebuild_hosts(&self) {
        let mut hosts: Vec<(RelayId, u8)> = self.members.borrow().values().copied().collect();
        hosts.sort_unstable_by_key(|(relay, core)| (relay.0, *core));
        hosts.dedup();
        *self.hosts.borrow_mut() = hosts;
    }
}
