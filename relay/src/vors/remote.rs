//! The cluster side of a room on its owner core (docs/cluster.md): its cluster id, the members
//! other relays host and the relays media goes to, and what the room tells the cluster.
//!
//! A standalone relay's rooms have none of this (`RoomCell::cluster` is `None`): every method
//! here then does nothing, and the forwarding loop never asks.
//!
//! The relays a packet goes to are those of the remote members the cluster announced: a relay
//! whose members are all still joining has nobody to hear it yet (no UDP address), and it
//! appears with its first `ADD`. Each relay gets one copy, whatever its number of members.

use std::cell::{Ref, RefCell};
use std::collections::HashMap;

use moose_proto::cluster::seal::MemberRecord;
use moose_proto::cluster::{RelayId, RoomId};
use moose_proto::vors::Sid;

use super::room::RoomCell;
use crate::cluster::ClusterHandle;
use crate::cluster::service::{RemoteMemberInfo, RemoteView};

/// The cluster side of one room.
#[derive(Debug)]
pub(crate) struct ClusterRoom {
    handle: ClusterHandle,
    id: RoomId,
    /// Each remote member's relay, and that relay's owner core of the room.
    members: RefCell<HashMap<Sid, (RelayId, u8)>>,
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

    fn rebuild_hosts(&self) {
        let mut hosts: Vec<(RelayId, u8)> = self.members.borrow().values().copied().collect();
        hosts.sort_unstable_by_key(|(relay, core)| (relay.0, *core));
        hosts.dedup();
        *self.hosts.borrow_mut() = hosts;
    }
}

impl RoomCell {
    /// A member of another relay is in the room (`ADD` to the local members; its relay gets
    /// the room's media from now on).
    pub(crate) fn add_remote(&self, member: &RemoteMemberInfo) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        let MemberRecord { keys, username } = &member.record;
        let added =
            self.with_room(|room| room.add_remote(member.sid, username, keys, member.muted));
        if added {
            cluster
                .members
                .borrow_mut()
                .insert(member.sid, (member.relay, member.relay_core));
            cluster.rebuild_hosts();
        }
    }

    /// A member of another relay left (`DEL` to the local members).
    pub(crate) fn remove_remote(&self, sid: Sid) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        self.with_room(|room| room.remove_remote(sid));
        if cluster.members.borrow_mut().remove(&sid).is_some() {
            cluster.rebuild_hosts();
        }
    }

    /// Makes the room's remote side what `view` says: members it lacks are removed, the others
    /// added (or their mute state updated). Idempotent.
    pub(crate) fn apply_view(&self, view: &RemoteView) {
        let gone: Vec<Sid> = self.with_room(|room| {
            room.remote_sids()
                .filter(|sid| !view.members.iter().any(|m| m.sid == *sid))
                .collect()
        });
        for sid in gone {
            self.remove_remote(sid);
        }
        for member in &view.members {
            self.add_remote(member);
        }
    }

    /// Local member `sid` registered its UDP address: the cluster announces it to the other
    /// relays, with its sealed record.
    pub(crate) fn announce(&self, sid: Sid) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        let record = self.with_room(|room| {
            room.record(sid).map(|(keys, username)| MemberRecord {
                keys,
                username: username.to_owned(),
            })
        });
        if let Some(record) = record {
            cluster.handle.announce(cluster.id, sid, record);
        }
    }

    /// Local member `sid` muted or unmuted itself: the room and the cluster hear it.
    pub(crate) fn set_muted(&self, sid: Sid, muted: bool) {
        self.with_room(|room| room.set_muted(sid, muted));
        if let Some(cluster) = self.cluster() {
            cluster.handle.set_muted(cluster.id, sid, muted);
        }
    }

    /// Local member `sid` said `msg`: the room and the cluster hear it.
    pub(crate) fn chat(&self, sid: Sid, msg: &str) {
        self.with_room(|room| room.chat(sid, msg));
        if let Some(cluster) = self.cluster() {
            cluster.handle.chat(cluster.id, sid, msg);
        }
    }
}
