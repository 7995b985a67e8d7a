//! A join through the cluster, on the room's owner core: the cluster's answer
//! ([`reserve`], awaited without blocking the core), the room held from that answer on
//! ([`Hold`]), and a reservation given back when the member does not come in ([`give_back`]).
//!
//! **Why hold the room.** Between the cluster's answer and the member's place in the room lie
//! the handshake budget's turn (up to `turns::BUDGET_WAIT`) and message 2. Events for the room
//! (an `ADD` from another relay) may arrive meanwhile; without a room here they would find
//! nothing and be dropped, and the new member would miss that peer until the next resync. So
//! the room is made (or found) as soon as the answer comes, takes the answer's view, and counts
//! the member as joining, which keeps it from being forgotten as empty.
//!
//! **Why keep a room while asking.** The reservation carries the room's view (its other hosts
//! and announced members) only when this relay is new to the room in Redis or has no room of
//! that name (below). If the room is here when the request is sent, Redis counts this relay as
//! a host, so the answer carries no view: the room here must still be the one holding the remote members when the answer
//! comes, even if its last local member leaves meanwhile. So a room found at the request is
//! kept ([`Reserved::let_go`] ends that) until the answer's own hold takes over. A room not
//! here at the request has sent its last `leave` before (one channel, in order).
//!
//! **Which answer's view counts.** Several joins of a room not here may be asked at once; the
//! answers can be applied in any order, and whichever comes first makes the room. So a join
//! that finds no room asks for the view even if Redis counts this relay as a host already
//! (`want_view`), and a view is applied only by the answer that makes the room: that room then
//! holds the view and, replayed from `early`, every event since the first of those joins
//! began to wait (each sid ends as its last event says, or as the view has it if no event
//! touched it). A later answer's view may be older than that state and is not applied.

use std::net::IpAddr;
use std::rc::Rc;

use moose_proto::cluster::RoomId;
use moose_proto::vors::hello::HelloOwned;

use super::room::RoomCell;
use super::rooms::VorsCore;
use crate::cluster::JoinError;
use crate::cluster::service::Reservation;
use crate::limits::rooms::RoomQuota;
use crate::shard::Shard;

/// A cluster's answer to a join: the room's cluster id and the reservation or refusal.
#[derive(Debug)]
pub(crate) struct Reserved {
    pub room: RoomId,
    pub answer: Result<Reservation, JoinError>,
    /// The room as it was here when the request went out, kept until [`Reserved::let_go`].
    kept: Option<Rc<RoomCell>>,
}

impl Reserved {
    /// The answer has been applied (the room held by [`Hold`], or the join refused): the room
    /// kept while asking is no longer, and goes if nobody is in it.
    pub(crate) fn let_go(&mut self, vors: &VorsCore, rooms: &RoomQuota) {
        if let Some(cell) = self.kept.take() {
            cell.unhold();
            vors.forget_if_empty(&cell, rooms);
        }
    }
}

/// With a cluster, asks it to admit `hello`'s member to its room, owned here by this core:
/// the core awaits the answer (its other tasks go on) and never blocks. `None` standalone.
pub(crate) async fn reserve(shard: &Shard, hello: &HelloOwned) -> Option<Reserved> {
    let handle = shard.vors.cluster()?;
    let room = handle.room_id(&hello.room);
    let core = u8::try_from(shard.core).unwrap_or(u8::MAX);
    let password = hello.password_hash.as_ref();
    // From Redis's answer on, events for the room may come before the answer does: they are
    // kept until the join is decided (`early`; the caller replays them, then calls `decided`).
    shard.vors.early.expect(room);
    let kept = keep(shard.vors.room_by_id(&room));
    // No room here: whichever answer makes it must carry the view (another join of the room
    // may be asked at the same time, and its answer may come first).
    let want_view = kept.is_none();
    let answer = handle
        .reserve(room, core, &hello.username, password, want_view)
        .await;
    Some(Reserved { room, answer, kept })
}

/// Keeps `room`, the join's room if it is here, while the cluster is asked (see the module's
/// notes).
fn keep(room: Option<Rc<RoomCell>>) -> Option<Rc<RoomCell>> {
    if let Some(cell) = &room {
        cell.hold();
    }
    room
}

/// The join of `reserved` is decided (in or not): events for its room are no longer kept for
/// it.
pub(crate) fn decided(shard: &Shard, reserved: Option<&Reserved>) {
    if let Some(reserved) = reserved {
        shard.vors.early.done(&reserved.room);
    }
}

/// Gives an unused reservation back to the cluster (the member never came in).
pub(crate) fn give_back(shard: &Shard, reserved: Option<&Reserved>) {
    if let (Some(reserved), Some(handle)) = (reserved, shard.vors.cluster()) {
        if let Ok(reservation) = &reserved.answer {
            handle.leave(reserved.room, reservation.sid);
        }
    }
}

/// A room held for a member the cluster admitted, until its join is decided.
#[derive(Debug)]
pub(crate) struct Hold(Rc<RoomCell>);

impl Hold {
    /// Holds the room `hello` names for an admitted member (made, charged to `from`, if need
    /// be) and applies the reservation's view. `None` for a refusal, or when the relay's room
    /// quota has no place (the join then refuses the member).
    pub(crate) fn take(
        vors: &VorsCore,
        rooms: &RoomQuota,
        hello: &HelloOwned,
        from: IpAddr,
        reserved: &Reserved,
    ) -> Option<Hold> {
        let reservation = reserved.answer.as_ref().ok()?;
        let made_here = vors.room_by_id(&reserved.room).is_none();
        let cell = vors.room(&hello.room, rooms, from).ok()?;
        // A room already here holds a view and every event since (another join's answer made
        // it): this answer's view may be older than that, and applying it would undo them.
        if let (true, Some(view)) = (made_here, &reservation.view) {
            cell.apply_view(view);
        }
        cell.hold();
        Some(Hold(cell))
    }

    /// The join is decided: the room is no longer held, and goes if nobody is in it.
    pub(crate) fn release(self, vors: &VorsCore, rooms: &RoomQuota) {
        self.0.unhold();
        vors.forget_if_empty(&self.0, rooms);
    }
}

#[cfg(test)]
mod tests {
    use moose_proto::vors::Sid;
    use moose_proto::vors::room::RoomConfig;

    use super::*;

    fn hello(room: &str) -> HelloOwned {
        HelloOwned {
            username: "ann".to_owned(),
            room: room.to_owned(),
            password_hash: None,
        }
    }

    fn admitted() -> Reserved {
        Reserved {
            room: RoomId([1; 16]),
            answer: Ok(Reservation {
                sid: Sid(3),
                view: None,
            }),
            kept: None,
        }
    }

    const FROM: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn a_held_room_outlives_its_last_member_until_the_join_is_decided() {
        let quota = RoomQuota::new(0, 0);
        let vors = VorsCore::new(0, 1, RoomConfig::default());
        let held = Hold::take(&vors, &quota, &hello("r"), FROM, &admitted()).expect("held");
        let cell = vors.room("r", &quota, FROM).expect("the same room");
        assert!(Rc::ptr_eq(&cell, &held.0));
        // Somebody else's leave looks for empty rooms: this one is not, while held.
        vors.forget_if_empty(&cell, &quota);
        assert_eq!(vors.census().0, 1);
        assert_eq!(quota.used(), 1);
        held.release(&vors, &quota);
        assert_eq!(vors.census().0, 0, "nobody came: the room goes");
        assert_eq!(quota.used(), 0, "and its place is given back");
    }

    #[test]
    fn a_room_kept_while_asking_is_the_one_the_answer_finds() {
        // The answer carries no view when the room was here at the request: the room that
        // holds the remote members must still be here when it comes.
        let quota = RoomQuota::new(0, 0);
        let vors = VorsCore::new(0, 1, RoomConfig::default());
        let cell = vors.room("r", &quota, FROM).expect("room");
        let mut reserved = Reserved {
            kept: keep(Some(cell.clone())),
            ..admitted()
        };
        // The last local member leaves while the request is out.
        vors.forget_if_empty(&cell, &quota);
        assert_eq!(vors.census().0, 1, "kept while asking");
        let held = Hold::take(&vors, &quota, &hello("r"), FROM, &reserved).expect("held");
        assert!(Rc::ptr_eq(&held.0, &cell), "the answer finds the kept room");
        reserved.let_go(&vors, &quota);
        assert_eq!(vors.census().0, 1, "now held for the coming member");
        held.release(&vors, &quota);
        assert_eq!(vors.census().0, 0);
        assert_eq!(quota.used(), 0);
    }

    #[test]
    fn a_refused_join_lets_the_kept_room_go() {
        let quota = RoomQuota::new(0, 0);
        let vors = VorsCore::new(0, 1, RoomConfig::default());
        let cell = vors.room("r", &quota, FROM).expect("room");
        let mut refused = Reserved {
            room: RoomId([1; 16]),
            answer: Err(JoinError::Unavailable),
            kept: keep(Some(cell.clone())),
        };
        vors.forget_if_empty(&cell, &quota);
        assert!(Hold::take(&vors, &quota, &hello("r"), FROM, &refused).is_none());
        refused.let_go(&vors, &quota);
        assert_eq!(
            vors.census().0,
            0,
            "nobody in it, nobody coming: the room goes"
        );
        assert_eq!(quota.used(), 0);
    }

    #[test]
    fn a_refusal_or_a_full_quota_holds_nothing() {
        let quota = RoomQuota::new(1, 0);
        let vors = VorsCore::new(0, 1, RoomConfig::default());
        let refused = Reserved {
            room: RoomId([1; 16]),
            answer: Err(JoinError::Unavailable),
            kept: None,
        };
        assert!(Hold::take(&vors, &quota, &hello("r"), FROM, &refused).is_none());
        assert_eq!(vors.census().0, 0);
        let _first = vors.room("first", &quota, FROM).expect("room");
        assert!(Hold::take(&vors, &quota, &hello("second"), FROM, &admitted()).is_none());
    }
}
