//! The cluster's events on one core (docs/cluster.md, section 9): what the inbox thread hands
//! the core that owns a room, applied to that room, and the relay table every core gets.
//!
//! An event for a room this core does not hold yet, while a join of it waits for the cluster's
//! answer, is kept and replayed once the room is made (`early`). Any other event for a room
//! this core does not hold (its last local member left meanwhile) is dropped: the cluster no
//! longer counts this relay as a host of that room either. The task that takes the events is
//! `event_task`; this file does not end sessions itself (`member` does), so that a join can
//! replay kept events without the two files importing each other.

use std::rc::Rc;
use std::time::Instant;

use tracing::debug;

use super::room::{MemberConn, RoomCell};
use crate::cluster::CoreEvent;
use crate::shard::Shard;

/// A member of this relay whose place the cluster gave to another while this relay was cut
/// off: the caller ends its session (`member::apply_event`).
#[derive(Debug)]
pub(crate) struct Eviction {
    pub cell: Rc<RoomCell>,
    pub conn: Rc<MemberConn>,
}

/// Applies one event, then delivers what the room has to say to its members; the member to
/// end, for `Evicted`.
pub(crate) fn apply(shard: &Shard, event: CoreEvent, now: Instant) -> Option<Eviction> {
    let room = match &event {
        CoreEvent::Relays(live) => {
            if let Some(link) = &shard.link {
                link.set_relays(live);
            }
            return None;
        }
        CoreEvent::Add { room, .. }
        | CoreEvent::Del { room, .. }
        | CoreEvent::Muted { room, .. }
        | CoreEvent::Chat { room, .. }
        | CoreEvent::Resync { room, .. }
        | CoreEvent::Evicted { room, .. } => *room,
    };
    let Some(cell) = shard.vors.room_by_id(&room) else {
        if !shard.vors.early.keep(&room, event) {
            debug!("cluster event for a room this core no longer holds");
        }
        return None;
    };
    let mut evicted = None;
    match event {
        CoreEvent::Add { member, link, .. } => {
            if let (Some(core_link), Some(addr)) = (&shard.link, link) {
                core_link.vouch(member.relay, addr);
            }
            cell.add_remote(&member);
        }
        CoreEvent::Del { sid, .. } => cell.remove_remote(sid),
        CoreEvent::Muted { sid, muted, .. } => {
            cell.with_room(|room| room.set_remote_muted(sid, muted));
        }
        CoreEvent::Chat { sid, msg, .. } => cell.with_room(|room| room.remote_chat(sid, &msg)),
        CoreEvent::Resync { view, .. } => cell.apply_view(&view),
        CoreEvent::Evicted { sid, .. } => evicted = cell.member(sid),
        CoreEvent::Relays(_) => {}
    }
    cell.pump(now);
    evicted.map(|conn| Eviction { cell, conn })
}
