//! What a room spanning relays tells the cluster and hears from it, on its owner core
//! (docs/cluster.md, section 11): remote members in and out, the room's view after a gap, and
//! this relay's members' registration, mute and chat.
//!
//! On a standalone relay's rooms (no cluster side) every method here does nothing beyond the
//! local room.

use moose_proto::cluster::seal::MemberRecord;
use moose_proto::vors::Sid;

use super::room::RoomCell;
use crate::cluster::service::{RemoteMemberInfo, RemoteView};

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
            cluster.handle().announce(cluster.id(), sid, record);
        }
    }

    /// Local member `sid` muted or unmuted itself: the room and the cluster hear it.
    pub(crate) fn set_muted(&self, sid: Sid, muted: bool) {
        self.with_room(|room| room.set_muted(sid, muted));
        if let Some(cluster) = self.cluster() {
            cluster.handle().set_muted(cluster.id(), sid, muted);
        }
    }

    /// Local member `sid` said `msg`: the room and the cluster hear it.
    pub(crate) fn chat(&self, sid: Sid, msg: &str) {
        self.with_room(|room| room.chat(sid, msg));
        if let Some(cluster) = self.cluster() {
            cluster.handle().chat(cluster.id(), sid, msg);
        }
    }
}
