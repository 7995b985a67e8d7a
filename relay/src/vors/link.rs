//! The relay link on one core (docs/cluster.md, section 7): media of this core's rooms out to
//! the other relays hosting them, and media from them in, to this core's members.
//!
//! **Out.** The media task judges its batch as always; for each verified packet of a room
//! with remote hosts it notes one link datagram per remote relay ([`link_copies`]), and after
//! the batch's local `sendmmsg` those leave with a second `sendmmsg` from this core's link
//! socket ([`CoreLink::send_out`]): header, the unchanged packet from the receive buffer, tag,
//! as three iovecs (no copy of the packet).
//!
//! **In.** [`receive`] reads this core's link socket in batches (`recvmmsg`), checks each
//! datagram ([`LinkEdge::judge`]: form, core, origin, replay window, tag), finds its room by
//! cluster id, and sends the packet inside to the room's local recipients from the core's VoRS
//! socket: never back over the link, so nothing loops between relays.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use glommio::net::UdpSocket;
use moose_proto::cluster::link::{LINK_HEADER_LEN, LINK_TAG_LEN, MAX_LINK_LEN};
use moose_proto::cluster::{RelayId, RoomId};
use moose_proto::vors::Sid;
use socket2::SockAddr;
use tracing::debug;

use super::room::RoomCell;
use crate::cluster::link::{LinkEdge, LinkSender};
use crate::cluster::stats::LinkDrop;
use crate::shard::Shard;
use crate::stats::CoreStats;
use crate::sys::{self, Gathered, RECV_BATCH, RecvBatch};

/// One link datagram to send: (datagram index in the batch, room, relay, its owner core).
pub(crate) type LinkCopy = (usize, RoomId, RelayId, u8);

/// This core's side of the relay link.
#[derive(Debug)]
pub(crate) struct CoreLink {
    /// This core's socket of the `--cluster-listen` group.
    pub socket: Rc<UdpSocket>,
    pub edge: RefCell<LinkEdge>,
    pub sender: RefCell<LinkSender>,
    /// The live relays' link addresses (`CoreEvent::Relays`).
    relays: RefCell<HashMap<RelayId, SockAddr>>,
}

impl CoreLink {
    pub(crate) fn new(socket: Rc<UdpSocket>, edge: LinkEdge, sender: LinkSender) -> Self {
        CoreLink {
            socket,
            edge: RefCell::new(edge),
            sender: RefCell::new(sender),
            relays: RefCell::new(HashMap::new()),
        }
    }

    /// The live relays changed: datagrams from others are refused, and media goes to their
    /// addresses.
    pub(crate) fn set_relays(&self, live: &[(RelayId, SocketAddr)]) {
        self.edge.borrow_mut().set_relays(live);
        *self.relays.borrow_mut() = live
            .iter()
            .map(|(relay, addr)| (*relay, SockAddr::from(*addr)))
            .collect();
    }

    /// Sends the link datagrams `links` of `batch` (one `sendmmsg`), counting them in `stats`.
    /// A relay whose address is not known (yet) counts as a send drop.
    pub(crate) fn send_out(&self, batch: &RecvBatch, links: &[LinkCopy], stats: &CoreStats) {
        let relays = self.relays.borrow();
        let mut sender = self.sender.borrow_mut();
        let wrapped: Vec<_> = links
            .iter()
            .filter_map(|&(index, room, relay, core)| {
                let addr = relays.get(&relay)?;
                let payload = batch.get(index).0;
                let (head, tag) = sender.wrap(relay, core, room, payload);
                Some((head, payload, tag, addr))
            })
            .collect();
        let datagrams: Vec<Gathered<'_>> = wrapped
            .iter()
            .map(|(head, payload, tag, addr)| ([&head[..], *payload, &tag[..]], *addr))
            .collect();
        let sent = sys::send_gathered(self.socket.as_raw_fd(), &datagrams);
        stats.link_datagrams_out.add(sent as u64);
        stats.link_send_dropped.add((links.len() - sent) as u64);
    }
}

/// Notes one link datagram of datagram `index` per remote relay hosting `cell`'s room.
pub(crate) fn link_copies(cell: &RoomCell, index: usize, links: &mut Vec<LinkCopy>) {
    if let Some(cluster) = cell.cluster() {
        let room = cluster.id();
        for &(relay, core) in cluster.hosts().iter() {
            links.push((index, room, relay, core));
        }
    }
}

/// The media packet inside an accepted link datagram.
fn payload_of(datagram: &[u8]) -> &[u8] {
    let end = datagram.len().saturating_sub(LINK_TAG_LEN);
    datagram.get(LINK_HEADER_LEN..end).unwrap_or_default()
}

/// Receives this core's link datagrams until the socket fails: each accepted one goes to its
/// room's local recipients.
pub(crate) async fn receive(shard: Rc<Shard>) {
    let (Some(link), Some(vors_udp)) = (shard.link.as_ref(), shard.vors.udp.get()) else {
        return;
    };
    let (fd, vors_fd) = (link.socket.as_raw_fd(), vors_udp.as_raw_fd());
    let mut batch = RecvBatch::new(MAX_LINK_LEN);
    let mut copies: Vec<(usize, SockAddr)> = Vec::with_capacity(RECV_BATCH * 4);
    let mut peek = [0u8; 1];
    let mut drained = true;
    loop {
        if drained && let Err(e) = link.socket.peek_from(&mut peek).await {
            debug!(error = %e, "link recv failed");
        }
        batch.clear();
        let count = match batch.recv_now(fd) {
            Ok(count) => count,
            Err(e) => {
                debug!(error = %e, "link recv failed");
                drained = false;
                glommio::yield_if_needed().await;
                continue;
            }
        };
        drained = count < RECV_BATCH;
        copies.clear();
        for index in 0..batch.len() {
            judge(&shard, link, &batch, index, &mut copies);
        }
        send_in(vors_fd, &batch, &copies, &shard.stats);
        glommio::yield_if_needed().await;
    }
}

/// Checks link datagram `index` of `batch`; an accepted one adds a copy for every local
/// recipient of its room to `copies`.
fn judge(
    shard: &Shard,
    link: &CoreLink,
    batch: &RecvBatch,
    index: usize,
    copies: &mut Vec<(usize, SockAddr)>,
) {
    let stats = &shard.stats;
    let (datagram, _) = batch.get(index);
    let Ok(accepted) = link.edge.borrow_mut().judge(datagram, stats) else {
        return;
    };
    let Some(cell) = shard.vors.room_by_id(&accepted.room) else {
        stats.link_dropped(LinkDrop::UnknownRoom);
        return;
    };
    stats.link_accepted.inc();
    // The sender is a remote member, never a local recipient; its SID is the first byte.
    let sender = Sid(accepted.payload.first().copied().unwrap_or(u8::MAX));
    cell.fan_out(index, sender, copies);
}

/// Sends the packets inside the accepted link datagrams to their local recipients.
fn send_in(vors_fd: RawFd, batch: &RecvBatch, copies: &[(usize, SockAddr)], stats: &CoreStats) {
    if copies.is_empty() {
        return;
    }
    let datagrams: Vec<Gathered<'_>> = copies
        .iter()
        .map(|(index, addr)| ([payload_of(batch.get(*index).0), &[][..], &[][..]], addr))
        .collect();
    let sent = sys::send_gathered(vors_fd, &datagrams);
    let bytes: usize = datagrams[..sent]
        .iter()
        .map(|(parts, _)| parts[0].len())
        .sum();
    stats.vors_datagrams_out.add(sent as u64);
    stats.vors_bytes_out.add(bytes as u64);
    stats.vors_send_dropped.add((copies.len() - sent) as u64);
}
