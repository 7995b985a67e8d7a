//! UDP media on one core: every datagram is judged at arrival (tag, counter, source) and a
//! verified packet goes unchanged to the other members of its room.
//!
//! Batched below glommio's one-call-per-datagram API: the datagrams waiting on the socket are
//! taken with one `recvmmsg`, judged one by one, and every copy of the whole batch leaves with
//! one `sendmmsg` pointing into the receive buffers (no copy, no allocation per packet). The
//! task awaits glommio (a one-byte peek) only once the socket is empty, so an idle relay wakes
//! for the first datagram exactly as before.
//!
//! The decision for one datagram ([`judge`]) takes only this core's VoRS tables and counters,
//! so unit tests drive it with datagrams from real client sessions and no socket.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use moose_proto::vors::room::{DropReason, EdgeVerdict};
use socket2::SockAddr;
use tracing::debug;

use super::link::{CoreLink, LinkCopy, link_copies};
use super::room::RoomCell;
use super::rooms::VorsCore;
use crate::shard::Shard;
use crate::stats::CoreStats;
use crate::sys::{self, RECV_BATCH, RecvBatch};

/// Largest datagram read; VoRS media is far smaller (Opus at 24 kbit/s is ~60 bytes a frame).
const MAX_DATAGRAM: usize = 2048;

/// A batch of datagrams and what forwarding it needs, reused for every batch (no allocation
/// per packet once `copies` has grown to a batch's fan-out).
#[derive(Debug)]
pub(crate) struct Forwarder {
    batch: RecvBatch,
    fanout: Fanout,
}

impl Default for Forwarder {
    fn default() -> Self {
        Self::new()
    }
}

impl Forwarder {
    pub(crate) fn new() -> Self {
        Forwarder {
            batch: RecvBatch::new(MAX_DATAGRAM),
            fanout: Fanout {
                copies: Vec::with_capacity(RECV_BATCH * 4),
                firsts: Vec::with_capacity(RECV_BATCH),
                links: Vec::new(),
            },
        }
    }

    /// Judges every datagram of the batch, then sends all the copies of those verified from
    /// this core's socket `fd` with one `sendmmsg`.
    ///
    /// With a cluster (`link`, looked at once per batch), the packets of rooms with remote
    /// hosts also go once to each such relay, with a second `sendmmsg` on the link socket.
    fn forward(
        &mut self,
        vors: &VorsCore,
        stats: &CoreStats,
        fd: RawFd,
        received: Instant,
        link: Option<&CoreLink>,
    ) {
        let fanout = &mut self.fanout;
        fanout.copies.clear();
        fanout.firsts.clear();
        match link {
            None => {
                for index in 0..self.batch.len() {
                    let (datagram, from) = self.batch.get(index);
                    judge(vors, stats, index, datagram, from, received, fanout);
                }
            }
            Some(link) => {
                fanout.links.clear();
                for index in 0..self.batch.len() {
                    let (datagram, from) = self.batch.get(index);
                    let forwarded = judge(vors, stats, index, datagram, from, received, fanout);
                    if let Some(cell) = forwarded {
                        link_copies(&cell, index, &mut fanout.links);
                    }
                }
                if !fanout.links.is_empty() {
                    link.send_out(&self.batch, &fanout.links, stats);
                }
            }
        }
        if fanout.copies.is_empty() {
            return;
        }
        let sent = sys::send_batch(fd, &self.batch, &fanout.copies);
        let latency = received.elapsed();
        for &first in &fanout.firsts {
            if first < sent {
                stats.vors_forward_latency.record(latency);
            }
        }
        let bytes: usize = fanout.copies[..sent]
            .iter()
            .map(|(index, _)| self.batch.get(*index).0.len())
            .sum();
        stats.vors_datagrams_out.add(sent as u64);
        stats.vors_bytes_out.add(bytes as u64);
        stats
            .vors_send_dropped
            .add((fanout.copies.len() - sent) as u64);
    }
}

/// Receives this core's datagrams until the socket fails.
pub(crate) async fn receive(shard: Rc<Shard>) {
    let Some(udp) = shard.vors.udp.get().cloned() else {
        return;
    };
    let fd = udp.as_raw_fd();
    let mut forwarder = Forwarder::new();
    let mut peek = [0u8; 1];
    let mut drained = true;
    loop {
        if drained {
            // Wait (io_uring) until a datagram is there; MSG_PEEK leaves it for the batch.
            if let Err(e) = udp.peek_from(&mut peek).await {
                // ICMP errors from earlier sends surface here; they say nothing about this socket.
                debug!(error = %e, "vors recv failed");
            }
        }
        forwarder.batch.clear();
        let count = match forwarder.batch.recv_now(fd) {
            Ok(count) => count,
            Err(e) => {
                debug!(error = %e, "vors recv failed");
                drained = false;
                glommio::yield_if_needed().await;
                continue;
            }
        };
        drained = count < RECV_BATCH;
        // The start of the forward latency: one clock read (vDSO) per batch.
        let received = Instant::now();
        let link = shard.link.as_ref();
        forwarder.forward(&shard.vors, &shard.stats, fd, received, link);
        // A busy socket must not keep the core from the members' TCP tasks and timers.
        glommio::yield_if_needed().await;
    }
}

/// The copies that a batch's verified datagrams make, for one `sendmmsg`.
#[derive(Debug, Default)]
pub(crate) struct Fanout {
    /// Every copy of the batch: (datagram index, destination).
    pub copies: Vec<(usize, SockAddr)>,
    /// Per forwarded packet, the index of its first copy in `copies`.
    pub firsts: Vec<usize>,
    /// With a cluster: the batch's link datagrams, one per packet and remote relay.
    pub links: Vec<LinkCopy>,
}

/// Judges `datagram`, number `index` of a batch read at `received`, from `from`, against this
/// core's rooms, and counts it in `stats`. A verified packet adds a copy for every other
/// recipient of its room to `fanout`; a cookie registers its member's address (the room's
/// answer is queued on its members' connections). `received` is also the datagram's arrival
/// time for the room's rules (silence, rate, PKT jumps): no clock read per datagram.
/// Returns the room of a verified packet (for the relay link), `None` for anything else.
pub(crate) fn judge(
    vors: &VorsCore,
    stats: &CoreStats,
    index: usize,
    datagram: &[u8],
    from: Option<SocketAddr>,
    received: Instant,
    fanout: &mut Fanout,
) -> Option<Rc<RoomCell>> {
    stats.vors_datagrams_in.inc();
    stats.vors_bytes_in.add(datagram.len() as u64);
    let Some(from) = from else {
        stats.vors_dropped(DropReason::UnknownSource);
        return None;
    };
    let cell = match vors.room_of(from, datagram) {
        Ok(cell) => cell,
        Err(reason) => {
            stats.vors_dropped(reason);
            return None;
        }
    };
    match cell.verify(received, from, datagram) {
        EdgeVerdict::Forward { sender, .. } => {
            stats.vors_packets_forwarded.inc();
            let first = fanout.copies.len();
            if cell.fan_out(index, sender, &mut fanout.copies) > 0 {
                fanout.firsts.push(first);
            }
            return Some(cell);
        }
        EdgeVerdict::Keepalive(_) => {}
        EdgeVerdict::Registered(sid) => {
            // `verify` has put its address in the fan-out table already.
            vors.registered(from, datagram, &cell);
            cell.announce(sid);
            cell.pump(received);
            debug!(sid = sid.0, "vors member registered its address");
        }
        EdgeVerdict::Drop(reason) => stats.vors_dropped(reason),
    }
    None
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use moose_proto::vors::client::ClientEvent;

    use super::*;
    use crate::vors::member;
    use crate::vors::testing::{Core, TestMember};

    /// Where the copies of `fanout` go, sorted; every copy is of datagram 0.
    fn destinations(fanout: &Fanout) -> Vec<SocketAddr> {
        let mut to: Vec<SocketAddr> = fanout
            .copies
            .iter()
            .map(|(index, addr)| {
                assert_eq!(*index, 0, "a copy of the judged datagram");
                addr.as_socket().expect("an IP destination")
            })
            .collect();
        to.sort();
        to
    }

    fn addresses<'a>(members: impl IntoIterator<Item = &'a TestMember>) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = members.into_iter().map(|m| m.addr).collect();
        addrs.sort();
        addrs
    }

    /// Every drop counter of `core`, as (reason, count) for those above zero.
    fn drops(core: &Core) -> Vec<(DropReason, u64)> {
        DropReason::ALL
            .iter()
            .map(|&reason| (reason, core.stats.vors_drops(reason)))
            .filter(|(_, count)| *count > 0)
            .collect()
    }

    #[test]
    fn a_verified_packet_goes_to_every_other_registered_member_once() {
        let core = Core::new(0, 64);
        let mut members: Vec<TestMember> = ["ann", "bob", "cat", "dan"]
            .iter()
            .enumerate()
            .map(|(i, name)| core.register(name, "room", &format!("192.0.2.{}:4000", i + 1)))
            .collect();
        for sender in 0..members.len() {
            let packet = members[sender].media(&core);
            let fanout = core.judge(&packet, Some(members[sender].addr));
            let others = members
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != sender)
                .map(|(_, m)| m);
            assert_eq!(destinations(&fanout), addresses(others), "no echo");
            assert_eq!(fanout.firsts, [0], "one forwarded packet");
        }
        assert_eq!(core.stats.vors_packets_forwarded.get(), 4);
        assert_eq!(
            core.stats.vors_datagrams_in.get(),
            4 + 4,
            "cookies and packets"
        );
        assert!(drops(&core).is_empty(), "{:?}", drops(&core));
    }

    #[test]
    fn only_members_of_the_room_with_a_registered_address_get_copies() {
        let core = Core::new(0, 64);
        let mut ann = core.register("ann", "room", "192.0.2.1:4000");
        let bob = core.register("bob", "room", "192.0.2.2:4000");
        let _elsewhere = core.register("eve", "other room", "192.0.2.5:4000");
        let mut cat = core.join("cat", "room", "192.0.2.3:4000");
        let packet = ann.media(&core);
        let fanout = core.judge(&packet, Some(ann.addr));
        assert_eq!(destinations(&fanout), [bob.addr], "cat has no address yet");
        let cookie = cat.datagram(&core);
        assert!(core.judge(&cookie, Some(cat.addr)).copies.is_empty());
        let packet = ann.media(&core);
        let fanout = core.judge(&packet, Some(ann.addr));
        assert_eq!(destinations(&fanout), addresses([&bob, &cat]));
    }

    #[test]
    fn copies_of_a_batch_name_their_datagram_and_their_packet_s_first() {
        let core = Core::new(0, 64);
        let mut ann = core.register("ann", "room", "192.0.2.1:4000");
        let mut bob = core.register("bob", "room", "192.0.2.2:4000");
        let _cat = core.register("cat", "room", "192.0.2.3:4000");
        let batch = [
            (ann.media(&core), ann.addr),
            (vec![0; 5], ann.addr),
            (bob.media(&core), bob.addr),
        ];
        let mut fanout = Fanout::default();
        for (index, (datagram, from)) in batch.iter().enumerate() {
            let (vors, stats) = (&core.vors, &core.stats);
            judge(
                vors,
                stats,
                index,
                datagram,
                Some(*from),
                core.now,
                &mut fanout,
            );
        }
        let indices: Vec<usize> = fanout.copies.iter().map(|(index, _)| *index).collect();
        assert_eq!(indices, [0, 0, 2, 2], "the malformed one makes none");
        assert_eq!(fanout.firsts, [0, 2]);
    }

    #[test]
    fn a_cookie_registers_its_member_once_and_the_room_says_so() {
        let core = Core::new(0, 64);
        let mut bob = core.register("bob", "room", "192.0.2.2:4000");
        let mut ann = core.join("ann", "room", "192.0.2.1:4000");
        let keepalive = [ann.member.sid.0];
        let cookie = ann.datagram(&core);
        assert!(core.judge(&keepalive, Some(ann.addr)).copies.is_empty());
        assert_eq!(drops(&core), [(DropReason::UnknownSource, 1)], "not yet");
        assert!(core.judge(&cookie, Some(ann.addr)).copies.is_empty());
        ann.exchange(&core);
        bob.exchange(&core);
        let (ann_sid, bob_sid) = (ann.member.sid, bob.member.sid);
        let ann_events = ann.events();
        assert!(ann_events.contains(&ClientEvent::Joined(ann_sid)));
        assert!(
            ann_events
                .iter()
                .any(|e| matches!(e, ClientEvent::PeerAdded { sid, .. } if *sid == bob_sid))
        );
        assert!(
            bob.events()
                .iter()
                .any(|e| matches!(e, ClientEvent::PeerAdded { sid, .. } if *sid == ann_sid))
        );
        // The address finds the room now; the spent cookie finds nothing elsewhere.
        assert!(core.judge(&keepalive, Some(ann.addr)).copies.is_empty());
        assert_eq!(
            drops(&core),
            [(DropReason::UnknownSource, 1)],
            "a keepalive"
        );
        core.judge(&cookie, Some("192.0.2.9:4000".parse().expect("addr")));
        assert_eq!(drops(&core), [(DropReason::UnknownSource, 2)]);
    }

    /// The reflection attack: the member's control connection came from 192.0.2.1, its cookie
    /// from 198.51.100.66 (a spoofed victim). Nothing is registered and nothing is sent there.
    #[test]
    fn a_cookie_from_another_ip_than_the_connection_s_registers_nothing() {
        let core = Core::new(0, 64);
        let mut ann = core.register("ann", "room", "192.0.2.1:4000");
        let mut eve = core.join("eve", "room", "192.0.2.5:4000");
        let victim: SocketAddr = "198.51.100.66:4000".parse().expect("addr");
        let cookie = eve.datagram(&core);
        assert!(core.judge(&cookie, Some(victim)).copies.is_empty());
        assert_eq!(drops(&core), [(DropReason::WrongAddress, 1)]);
        let packet = ann.media(&core);
        assert!(
            core.judge(&packet, Some(ann.addr)).copies.is_empty(),
            "nobody to send ann's audio to"
        );
        // From the connection's IP, on any port, the same cookie registers.
        eve.addr = "192.0.2.5:4999".parse().expect("addr");
        assert!(core.judge(&cookie, Some(eve.addr)).copies.is_empty());
        let packet = ann.media(&core);
        assert_eq!(
            destinations(&core.judge(&packet, Some(ann.addr))),
            [eve.addr]
        );
    }

    /// One core, two rooms: an impostor's cookie from the address a member of the other room
    /// registered is refused; the member keeps its route, also once the impostor is gone.
    #[test]
    fn a_cookie_from_an_address_registered_in_any_room_is_refused() {
        let core = Core::new(0, 64);
        let mut ann = core.register("ann", "call", "192.0.2.1:4000");
        let bob = core.register("bob", "call", "192.0.2.2:4000");
        let mut eve = core.join("eve", "elsewhere", "192.0.2.1:5000");
        let cookie = eve.datagram(&core);
        assert!(core.judge(&cookie, Some(ann.addr)).copies.is_empty());
        assert_eq!(drops(&core), [(DropReason::AddressTaken, 1)]);
        let still_routed = |ann: &mut TestMember, core: &Core| {
            let packet = ann.media(core);
            assert_eq!(
                destinations(&core.judge(&packet, Some(ann.addr))),
                [bob.addr]
            );
            let keepalive = [ann.member.sid.0];
            core.judge(&keepalive, Some(ann.addr));
            assert_eq!(
                drops(core),
                [(DropReason::AddressTaken, 1)],
                "ann's room found"
            );
        };
        still_routed(&mut ann, &core);
        assert!(member::leave(
            core.owner(),
            &eve.cell,
            &eve.member,
            core.now
        ));
        still_routed(&mut ann, &core);
    }

    #[test]
    fn every_edge_check_outcome_is_counted_by_its_reason() {
        let core = Core::new(0, 64);
        let mut ann = core.register("ann", "room", "192.0.2.1:4000");
        let mut bob = core.register("bob", "room", "192.0.2.2:4000");
        let stranger: SocketAddr = "198.51.100.9:4000".parse().expect("addr");
        let judged = |datagram: &[u8], from: Option<SocketAddr>| {
            let fanout = core.judge(datagram, from);
            fanout.copies.len()
        };
        // What passes: a keepalive (nothing to send) and a packet (one copy, to bob).
        assert_eq!(judged(&ann.datagram(&core), Some(ann.addr)), 0, "keepalive");
        assert!(drops(&core).is_empty(), "a keepalive is no drop");
        let first = ann.media(&core);
        assert_eq!(judged(&first, Some(ann.addr)), 1);
        // And what does not, each once.
        assert_eq!(judged(&[0; 5], Some(ann.addr)), 0);
        assert_eq!(judged(&[200], Some(ann.addr)), 0);
        assert_eq!(judged(&bob.media(&core), Some(ann.addr)), 0);
        let mut forged = ann.media(&core);
        *forged.last_mut().expect("a tag") ^= 1;
        assert_eq!(judged(&forged, Some(ann.addr)), 0);
        assert_eq!(judged(&first, Some(ann.addr)), 0);
        let (later, latest) = (ann.media(&core), ann.media(&core));
        assert_eq!(judged(&latest, Some(ann.addr)), 1);
        assert_eq!(judged(&later, Some(ann.addr)), 0);
        assert_eq!(judged(&ann.member.cookie, Some(ann.addr)), 0);
        assert_eq!(
            drops(&core),
            [
                (DropReason::Malformed, 1),
                (DropReason::UnknownSid, 1),
                (DropReason::UnknownSource, 1),
                (DropReason::BadTag, 1),
                (DropReason::Replayed, 1),
                (DropReason::Reordered, 1),
                (DropReason::CookieRepeat, 1),
            ]
        );
        // A datagram from nobody the core knows, or with no IP source at all, finds no room.
        assert_eq!(judged(&ann.media(&core), Some(stranger)), 0);
        assert_eq!(judged(&ann.media(&core), None), 0);
        assert_eq!(core.stats.vors_drops(DropReason::UnknownSource), 3);
        assert_eq!(core.stats.vors_packets_forwarded.get(), 2);
        assert_eq!(
            core.stats.vors_datagrams_in.get(),
            2 + 12,
            "cookies and the rest"
        );
    }
}
