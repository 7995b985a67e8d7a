//! The relay link on one core (docs/cluster.md, section 7): its socket, checks and sequence
//! numbers, and media of this core's rooms out to the other relays hosting them. Media in is
//! `link_in`.
//!
//! **Out.** The media task judges its batch as always; for each verified packet of a room
//! with remote hosts it notes one link datagram per remote relay ([`link_copies`]), and after
//! the batch's local `sendmmsg` those leave with a second `sendmmsg` from this core's link
//! socket ([`CoreLink::send_out`]): header, the unchanged packet from the receive buffer, tag,
//! as three iovecs (no copy of the packet).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use glommio::net::UdpSocket;
use moose_proto::cluster::link::{LINK_HEADER_LEN, LINK_TAG_LEN};
use moose_proto::cluster::{RelayId, RoomId};
use socket2::SockAddr;

use super::room::RoomCell;
use crate::cluster::link::{LinkEdge, LinkSender};
use crate::stats::CoreStats;
use crate::sys::{self, RecvBatch};

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
    /// The datagrams of the batch being sent, kept for the next batch's.
    wrapped: RefCell<Vec<Wrapped>>,
}

/// A link datagram's pieces around the packet, which stays in the receive batch.
#[derive(Debug)]
struct Wrapped {
    head: [u8; LINK_HEADER_LEN],
    /// The packet's index in the batch.
    index: usize,
    tag: [u8; LINK_TAG_LEN],
    addr: SockAddr,
}

impl CoreLink {
    pub(crate) fn new(socket: Rc<UdpSocket>, edge: LinkEdge, sender: LinkSender) -> Self {
        CoreLink {
            socket,
            edge: RefCell::new(edge),
            sender: RefCell::new(sender),
            relays: RefCell::new(HashMap::new()),
            wrapped: RefCell::new(Vec::new()),
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

    /// Redis announced a member of `relay`, whose link address is `addr`: the relay is
    /// registered, even if it was not at the last sweep (it started or came back since), so
    /// its datagrams are taken and media goes to it from now on rather than after the next
    /// sweep. A relay already known keeps its window and address; the next sweep's table
    /// rules as before.
    pub(crate) fn vouch(&self, relay: RelayId, addr: SocketAddr) {
        self.edge.borrow_mut().vouch(relay);
        self.relays
            .borrow_mut()
            .entry(relay)
            .or_insert_with(|| SockAddr::from(addr));
    }

    /// Sends the link datagrams `links` of `batch` (one `sendmmsg`), counting them in `stats`.
    /// A relay whose address is not known (yet) counts as a send drop.
    pub(crate) fn send_out(&self, batch: &RecvBatch, links: &[LinkCopy], stats: &CoreStats) {
        let relays = self.relays.borrow();
        let mut sender = self.sender.borrow_mut();
        // Headers and tags go to a list kept from batch to batch: no allocation per batch.
        let mut wrapped = self.wrapped.borrow_mut();
        wrapped.clear();
        wrapped.extend(links.iter().filter_map(|&(index, room, relay, core)| {
            let addr = relays.get(&relay)?;
            let (head, tag) = sender.wrap(relay, core, room, batch.get(index).0);
            Some(Wrapped {
                head,
                index,
                tag,
                addr: addr.clone(),
            })
        }));
        let sent = sys::send_gathered(self.socket.as_raw_fd(), wrapped.len(), |i| {
            let w = &wrapped[i];
            ([&w.head[..], batch.get(w.index).0, &w.tag[..]], &w.addr)
        });
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
