//! The cluster's events on one core (docs/cluster.md, section 9): what the inbox thread hands
//! the core that owns a room, applied to that room, and the relay table every core gets.
//!
//! An event for a room this core does not hold (its last local member left meanwhile) is
//! dropped: the cluster no longer counts this relay as a host of that room either.

use std::rc::Rc;
use std::time::Instant;

use flume::Receiver;
use tracing::debug;

use super::member::{self, OwnerCore};
use crate::cluster::CoreEvent;
use crate::shard::Shard;

/// Applies this core's events until the cluster threads end.
pub(crate) async fn apply_all(shard: Rc<Shard>, events: Receiver<CoreEvent>) {
    while let Ok(event) = events.recv_async().await {
        apply(&shard, event, Instant::now());
    }
}

/// Applies one event, then delivers what the room has to say to its members.
pub(crate) fn apply(shard: &Shard, event: CoreEvent, now: Instant) {
    let room = match &event {
        CoreEvent::Relays(live) => {
            if let Some(link) = &shard.link {
                link.set_relays(live);
            }
            return;
        }
        CoreEvent::Add { room, .. }
        | CoreEvent::Del { room, .. }
        | CoreEvent::Muted { room, .. }
        | CoreEvent::Chat { room, .. }
        | CoreEvent::Resync { room, .. }
        | CoreEvent::Evicted { room, .. } => *room,
    };
    let Some(cell) = shard.vors.room_by_id(&room) else {
        debug!("cluster event for a room this core no longer holds");
        return;
    };
    match event {
        CoreEvent::Add { member, .. } => cell.add_remote(&member),
        CoreEvent::Del { sid, .. } => cell.remove_remote(sid),
        CoreEvent::Muted { sid, muted, .. } => {
            cell.with_room(|room| room.set_remote_muted(sid, muted));
        }
        CoreEvent::Chat { sid, msg, .. } => cell.with_room(|room| room.remote_chat(sid, &msg)),
        CoreEvent::Resync { view, .. } => cell.apply_view(&view),
        CoreEvent::Evicted { sid, .. } => {
            // Its place was taken while this relay was cut off: its session ends (its writer
            // resets the connection, which wakes its reader).
            if let Some(conn) = cell.member(sid) {
                member::leave(OwnerCore::of(shard), &cell, &conn, now);
            }
        }
        CoreEvent::Relays(_) => {}
    }
    cell.pump(now);
}
