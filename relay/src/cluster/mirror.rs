//! What this relay itself has in the cluster: its rooms (owner core, password verifier) and
//! its members (SID, name tag, mute state, sealed record once announced), kept by the command
//! thread as it tells Redis. It is the truth the relay restores Redis to after an outage
//! (`Registry::reconcile`), and it changes even while Redis is unreachable, so a member who
//! leaves during the outage is not put back.

use std::collections::{BTreeMap, HashMap};

use moose_proto::cluster::{NameTag, PasswordVerifier, RoomId};
use moose_proto::vors::Sid;

use super::registry::OwnMember;

/// One room of this relay.
#[derive(Debug, Clone)]
pub struct MirrorRoom {
    /// The room's owner core on this relay.
    pub core: u8,
    pub verifier: PasswordVerifier,
    pub members: BTreeMap<Sid, OwnMember>,
}

/// Every room this relay has members in.
#[derive(Debug, Default)]
pub struct Mirror {
    rooms: HashMap<RoomId, MirrorRoom>,
}

impl Mirror {
    /// A member admitted by the cluster (joining: no record yet).
    pub fn reserved(
        &mut self,
        room: RoomId,
        core: u8,
        verifier: PasswordVerifier,
        sid: Sid,
        tag: NameTag,
    ) {
        let entry = self.rooms.entry(room).or_insert_with(|| MirrorRoom {
            core,
            verifier,
            members: BTreeMap::new(),
        });
        entry.members.insert(
            sid,
            OwnMember {
                sid,
                tag,
                muted: false,
                sealed: None,
            },
        );
    }

    /// The member registered; `sealed` is its record as Redis holds it. False if unknown.
    pub fn announced(&mut self, room: RoomId, sid: Sid, sealed: Vec<u8>) -> bool {
        self.member(room, sid)
            .map(|m| m.sealed = Some(sealed))
            .is_some()
    }

    /// The member's mute state. False if unknown.
    pub fn muted(&mut self, room: RoomId, sid: Sid, muted: bool) -> bool {
        self.member(room, sid).map(|m| m.muted = muted).is_some()
    }

    /// The member is gone (its room too, with its last member). False if unknown.
    pub fn left(&mut self, room: RoomId, sid: Sid) -> bool {
        let Some(r) = self.rooms.get_mut(&room) else {
            return false;
        };
        let known = r.members.remove(&sid).is_some();
        if r.members.is_empty() {
            self.rooms.remove(&room);
        }
        known
    }

    /// Whether `sid` is an announced member of `room`.
    pub fn is_announced(&self, room: RoomId, sid: Sid) -> bool {
        self.rooms
            .get(&room)
            .and_then(|r| r.members.get(&sid))
            .is_some_and(|m| m.sealed.is_some())
    }

    fn member(&mut self, room: RoomId, sid: Sid) -> Option<&mut OwnMember> {
        self.rooms.get_mut(&room)?.members.get_mut(&sid)
    }

    /// A room of this relay.
    pub fn room(&self, room: RoomId) -> Option<&MirrorRoom> {
        self.rooms.get(&room)
    }

    /// Every room, by id.
    pub fn rooms(&self) -> impl Iterator<Item = (&RoomId, &MirrorRoom)> {
        self.rooms.iter()
    }

    /// Members in every room.
    pub fn members(&self) -> usize {
        self.rooms.values().map(|r| r.members.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_come_are_announced_and_go_with_their_room() {
        let mut mirror = Mirror::default();
        let room = RoomId([1; 16]);
        let verifier = PasswordVerifier([2; 16]);
        mirror.reserved(room, 1, verifier, Sid(3), NameTag([4; 8]));
        mirror.reserved(room, 1, verifier, Sid(5), NameTag([6; 8]));
        assert!(!mirror.is_announced(room, Sid(3)));
        assert!(mirror.announced(room, Sid(3), vec![9]));
        assert!(mirror.is_announced(room, Sid(3)));
        assert!(mirror.muted(room, Sid(5), true));
        assert!(!mirror.muted(room, Sid(7), true), "unknown member");
        assert_eq!(mirror.members(), 2);
        assert!(mirror.left(room, Sid(3)));
        assert!(!mirror.left(room, Sid(3)));
        assert!(mirror.room(room).is_some());
        assert!(mirror.left(room, Sid(5)));
        assert!(
            mirror.room(room).is_none(),
            "the room goes with its last member"
        );
    }
}
