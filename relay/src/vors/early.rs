//! Cluster events that reach a core before the room they name exists there.
//!
//! A join on this relay asks the cluster for a reservation. From the moment Redis makes this
//! relay a host of the room, other relays' events for it (an `ADD` announced meanwhile) go to
//! this relay's inbox, and the inbox thread may hand them to the core before the command
//! thread hands over the answer. Finding no room, they used to be dropped, and the new member
//! missed that peer until a resync (seen in `scripts/cluster-bench.sh` with rooms spread over
//! three relays). So while a join of the room waits ([`EarlyEvents::expect`] until
//! [`EarlyEvents::done`]), events that find no room are kept here, in order, and replayed as
//! soon as the room is made and has taken the answer's view: that view is Redis's state when
//! this relay became a host, and every event kept came after it.

use std::cell::RefCell;
use std::collections::HashMap;

use moose_proto::cluster::RoomId;
use tracing::debug;

use crate::cluster::CoreEvent;

/// The most events kept for one room while its joins wait: far more than a room's members
/// can announce in the few milliseconds an answer takes.
const MAX_KEPT: usize = 1024;

/// One core's events for rooms it is about to have.
#[derive(Debug, Default)]
pub(crate) struct EarlyEvents {
    rooms: RefCell<HashMap<RoomId, Early>>,
}

#[derive(Debug, Default)]
struct Early {
    /// Joins of the room waiting for the cluster's answer or their place in the room.
    waiting: u32,
    events: Vec<CoreEvent>,
}

impl EarlyEvents {
    /// A join of `room` is about to ask the cluster for a reservation.
    pub(crate) fn expect(&self, room: RoomId) {
        self.rooms.borrow_mut().entry(room).or_default().waiting += 1;
    }

    /// A join of `room` is decided (admitted or not): once none waits, nothing is kept.
    pub(crate) fn done(&self, room: &RoomId) {
        let mut rooms = self.rooms.borrow_mut();
        if let Some(early) = rooms.get_mut(room) {
            early.waiting = early.waiting.saturating_sub(1);
            if early.waiting == 0 {
                rooms.remove(room);
            }
        }
    }

    /// Keeps `event` for `room`, which this core does not have yet, if a join of it waits
    /// (true); false when none does: nobody will make the room, and the event is dropped.
    pub(crate) fn keep(&self, room: &RoomId, event: CoreEvent) -> bool {
        let mut rooms = self.rooms.borrow_mut();
        let Some(early) = rooms.get_mut(room) else {
            return false;
        };
        if early.events.len() < MAX_KEPT {
            early.events.push(event);
        } else {
            debug!("cluster event dropped: too many for a room not made yet");
        }
        true
    }

    /// The events kept for `room`, in the order they came, now that it exists.
    pub(crate) fn take(&self, room: &RoomId) -> Vec<CoreEvent> {
        self.rooms
            .borrow_mut()
            .get_mut(room)
            .map(|early| std::mem::take(&mut early.events))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use moose_proto::cluster::RelayId;
    use moose_proto::vors::Sid;

    use super::*;

    fn del(room: RoomId, sid: u8) -> CoreEvent {
        CoreEvent::Del {
            room,
            relay: RelayId([9; 8]),
            sid: Sid(sid),
        }
    }

    #[test]
    fn events_are_kept_in_order_only_while_a_join_waits() {
        let early = EarlyEvents::default();
        let room = RoomId([7; 16]);
        assert!(!early.keep(&room, del(room, 1)), "nobody waits");
        early.expect(room);
        early.expect(room);
        assert!(early.keep(&room, del(room, 1)), "kept");
        assert!(early.keep(&room, del(room, 2)), "kept");
        assert_eq!(early.take(&room), [del(room, 1), del(room, 2)]);
        assert!(early.take(&room).is_empty(), "taken once");
        early.done(&room);
        assert!(
            early.keep(&room, del(room, 3)),
            "the second join still waits"
        );
        early.done(&room);
        assert!(early.take(&room).is_empty(), "nothing kept once none waits");
        assert!(!early.keep(&room, del(room, 4)));
    }

    #[test]
    fn a_flood_for_a_room_not_made_yet_is_bounded() {
        let early = EarlyEvents::default();
        let room = RoomId([8; 16]);
        early.expect(room);
        for i in 0..MAX_KEPT + 10 {
            assert!(early.keep(&room, del(room, i as u8)), "taken");
        }
        assert_eq!(early.take(&room).len(), MAX_KEPT);
    }
}
