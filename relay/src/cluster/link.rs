//! The relay link on one core: the checks an arriving link datagram passes before its media
//! packet reaches its room ([`LinkEdge`]), and the sequence numbers and tags of the datagrams
//! the core sends ([`LinkSender`]). Socket-free: the core's receive task hands datagrams in,
//! its send path takes headers and tags out.
//!
//! Each core keeps its own state (no sharing between cores): the kernel steers a link
//! datagram by its first byte to the core that owns its room, exactly as it steers VoRS
//! media, so the datagrams of one origin core for one room always meet the same windows.

use std::collections::HashMap;
use std::net::SocketAddr;

use moose_proto::cluster::link::{
    LINK_HEADER_LEN, LINK_TAG_LEN, LinkError, LinkHeader, encode, link_tag, parse,
};
use moose_proto::cluster::replay::ReplayWindow;
use moose_proto::cluster::{LinkKey, RelayId, RoomId};

use super::stats::LinkDrop;
use crate::stats::CoreStats;

/// A link datagram that passed every check: its media packet is for `room`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted<'a> {
    pub room: RoomId,
    pub origin: RelayId,
    /// The media packet, unchanged since its sender's relay checked it.
    pub payload: &'a [u8],
}

/// The receiving side of one core.
#[derive(Debug)]
pub struct LinkEdge {
    me: RelayId,
    core: u8,
    key: LinkKey,
    /// The live relays but this one, each with a replay window per origin core (made when
    /// that core's first datagram verifies).
    origins: HashMap<RelayId, HashMap<u8, ReplayWindow>>,
}

impl LinkEdge {
    /// Core `core` of relay `me`, under the cluster's link key. Accepts nothing until
    /// [`LinkEdge::set_relays`] names the live relays.
    pub fn new(me: RelayId, core: u8, key: LinkKey) -> Self {
        LinkEdge {
            me,
            core,
            key,
            origins: HashMap::new(),
        }
    }

    /// The live relays changed (Redis's table at the last sweep): datagrams from relays no
    /// longer in it are refused from now on, and their windows forgotten.
    pub fn set_relays(&mut self, live: &[(RelayId, SocketAddr)]) {
        self.origins
            .retain(|relay, _| live.iter().any(|(r, _)| r == relay));
        for (relay, _) in live {
            self.vouch(*relay);
        }
    }

    /// `relay` is registered in Redis (an announcement of its member says so): its datagrams
    /// are taken, with a fresh window if it had none. This relay's own id is never an origin.
    pub fn vouch(&mut self, relay: RelayId) {
        if relay != self.me {
            self.origins.entry(relay).or_default();
        }
    }

    /// Checks one datagram, cheapest first: its form, its core, its origin, its sequence
    /// number, its tag; only then does the origin's window move. Counts it in `stats`: in, and
    /// the reason of a drop. (The caller counts `UnknownRoom` and `accepted`, once it has
    /// looked for the room.)
    pub fn judge<'a>(
        &mut self,
        datagram: &'a [u8],
        stats: &CoreStats,
    ) -> Result<Accepted<'a>, LinkDrop> {
        stats.link_datagrams_in.inc();
        let verdict = self.check(datagram);
        if let Err(reason) = verdict {
            stats.link_dropped(reason);
        }
        verdict
    }

    fn check<'a>(&mut self, datagram: &'a [u8]) -> Result<Accepted<'a>, LinkDrop> {
        let parsed = parse(datagram).map_err(|_| LinkDrop::Malformed)?;
        let header = parsed.header;
        if header.dest_core != self.core {
            return Err(LinkDrop::WrongCore);
        }
        let windows = self
            .origins
            .get_mut(&header.origin)
            .ok_or(LinkDrop::UnknownRelay)?;
        let fresh = windows
            .get(&header.origin_core)
            .is_none_or(|w| w.is_fresh(header.seq));
        if !fresh || header.seq == 0 {
            return Err(LinkDrop::Replayed);
        }
        if !parsed.verify(&self.key, self.me) {
            return Err(LinkDrop::BadTag);
        }
        windows
            .entry(header.origin_core)
            .or_default()
            .accept(header.seq);
        Ok(Accepted {
            room: header.room,
            origin: header.origin,
            payload: parsed.payload,
        })
    }
}

/// The sending side of one core: one sequence for every datagram it sends, whatever the room
/// or the destination (a receiver sees gaps, which its window allows).
#[derive(Debug)]
pub struct LinkSender {
    me: RelayId,
    core: u8,
    key: LinkKey,
    /// The next sequence number; starts at 1 (0 is never sent).
    next: u64,
}

impl LinkSender {
    /// Core `core` of relay `me`.
    pub fn new(me: RelayId, core: u8, key: LinkKey) -> Self {
        LinkSender {
            me,
            core,
            key,
            next: 1,
        }
    }

    fn header(&mut self, dest_core: u8, room: RoomId) -> LinkHeader {
        let seq = self.next;
        self.next += 1;
        LinkHeader {
            dest_core,
            origin_core: self.core,
            origin: self.me,
            seq,
            room,
        }
    }

    /// The header and tag around `payload` for relay `to`, whose core `dest_core` owns
    /// `room`: with the payload between them (one iovec each), a datagram that goes out with
    /// no copy of the packet.
    pub fn wrap(
        &mut self,
        to: RelayId,
        dest_core: u8,
        room: RoomId,
        payload: &[u8],
    ) -> ([u8; LINK_HEADER_LEN], [u8; LINK_TAG_LEN]) {
        let head = self.header(dest_core, room).to_bytes();
        let tag = link_tag(&self.key, to, &head, payload);
        (head, tag)
    }

    /// The whole datagram in `out`; its length.
    pub fn encode(
        &mut self,
        to: RelayId,
        dest_core: u8,
        room: RoomId,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, LinkError> {
        let header = self.header(dest_core, room);
        encode(&self.key, to, &header, payload, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moose_proto::cluster::link::MAX_LINK_LEN;

    const KEY: LinkKey = LinkKey([7; 16]);
    const A: RelayId = RelayId([0xA; 8]);
    const B: RelayId = RelayId([0xB; 8]);
    const ROOM: RoomId = RoomId([0x44; 16]);

    fn addr() -> SocketAddr {
        "192.0.2.1:12979".parse().expect("addr")
    }

    fn packet() -> Vec<u8> {
        vec![0x21; 40]
    }

    fn send(sender: &mut LinkSender, to: RelayId, dest_core: u8) -> Vec<u8> {
        let mut out = vec![0; MAX_LINK_LEN];
        let n = sender
            .encode(to, dest_core, ROOM, &packet(), &mut out)
            .expect("encode");
        out.truncate(n);
        out
    }

    #[test]
    fn a_datagram_from_a_live_relay_is_accepted_once() {
        let stats = CoreStats::default();
        let mut sender = LinkSender::new(A, 0, KEY.clone());
        let mut edge = LinkEdge::new(B, 1, KEY.clone());
        let first = send(&mut sender, B, 1);
        assert_eq!(
            edge.judge(&first, &stats),
            Err(LinkDrop::UnknownRelay),
            "no table yet"
        );
        edge.set_relays(&[(A, addr()), (B, addr())]);
        let accepted = edge.judge(&first, &stats).expect("accepted");
        assert_eq!(accepted.room, ROOM);
        assert_eq!(accepted.origin, A);
        assert_eq!(accepted.payload, &packet()[..]);
        assert_eq!(edge.judge(&first, &stats), Err(LinkDrop::Replayed));
        // Gaps and reordering within the window are fine.
        let (second, third) = (send(&mut sender, B, 1), send(&mut sender, B, 1));
        assert!(edge.judge(&third, &stats).is_ok());
        assert!(edge.judge(&second, &stats).is_ok());
        assert_eq!(stats.link_datagrams_in.get(), 5);
        assert_eq!(stats.link_drops(LinkDrop::Replayed), 1);
        assert_eq!(stats.link_drops(LinkDrop::UnknownRelay), 1);
    }

    #[test]
    fn a_vouched_relay_is_taken_until_a_sweep_says_it_is_gone() {
        let stats = CoreStats::default();
        let mut sender = LinkSender::new(A, 0, KEY.clone());
        let mut edge = LinkEdge::new(B, 1, KEY.clone());
        edge.set_relays(&[(B, addr())]);
        // A registered after the last sweep; an announcement of its member vouches for it.
        edge.vouch(A);
        assert!(edge.judge(&send(&mut sender, B, 1), &stats).is_ok());
        // Vouching again keeps its window: an old number is still a replay.
        let old = send(&mut sender, B, 1);
        assert!(edge.judge(&old, &stats).is_ok());
        edge.vouch(A);
        assert_eq!(edge.judge(&old, &stats), Err(LinkDrop::Replayed));
        // Nobody vouches for this relay as an origin.
        edge.vouch(B);
        let mut me = LinkSender::new(B, 0, KEY.clone());
        assert_eq!(
            edge.judge(&send(&mut me, B, 1), &stats),
            Err(LinkDrop::UnknownRelay)
        );
        // The next sweep's table rules.
        edge.set_relays(&[(B, addr())]);
        assert_eq!(
            edge.judge(&send(&mut sender, B, 1), &stats),
            Err(LinkDrop::UnknownRelay)
        );
    }

    #[test]
    fn forged_misdirected_and_stale_datagrams_are_dropped_by_reason() {
        let stats = CoreStats::default();
        let mut edge = LinkEdge::new(B, 1, KEY.clone());
        edge.set_relays(&[(A, addr()), (B, addr())]);
        let mut sender = LinkSender::new(A, 0, KEY.clone());
        assert_eq!(
            edge.judge(&send(&mut sender, B, 0), &stats),
            Err(LinkDrop::WrongCore)
        );
        let mut forger = LinkSender::new(A, 0, LinkKey([8; 16]));
        assert_eq!(
            edge.judge(&send(&mut forger, B, 1), &stats),
            Err(LinkDrop::BadTag)
        );
        // Made for another relay: the tag covers the receiver.
        assert_eq!(
            edge.judge(&send(&mut sender, RelayId([0xC; 8]), 1), &stats),
            Err(LinkDrop::BadTag)
        );
        // A forged datagram does not move the window: the honest one with that number passes.
        let honest = send(&mut sender, B, 1);
        let mut bent = honest.clone();
        let last = bent.len() - 1;
        bent[last] ^= 1;
        assert_eq!(edge.judge(&bent, &stats), Err(LinkDrop::BadTag));
        assert!(edge.judge(&honest, &stats).is_ok());
        assert_eq!(edge.judge(&[1, 2, 3], &stats), Err(LinkDrop::Malformed));
        // Own datagrams (a loop) and those of a relay that left the table are refused.
        let mut me = LinkSender::new(B, 0, KEY.clone());
        assert_eq!(
            edge.judge(&send(&mut me, B, 1), &stats),
            Err(LinkDrop::UnknownRelay)
        );
        edge.set_relays(&[(B, addr())]);
        assert_eq!(
            edge.judge(&send(&mut sender, B, 1), &stats),
            Err(LinkDrop::UnknownRelay)
        );
        assert_eq!(stats.link_drops(LinkDrop::BadTag), 3);
    }

    #[test]
    fn wrap_gives_the_pieces_of_the_encoded_datagram() {
        let mut one = LinkSender::new(A, 2, KEY.clone());
        let mut two = LinkSender::new(A, 2, KEY.clone());
        let whole = send(&mut one, B, 3);
        let (head, tag) = two.wrap(B, 3, ROOM, &packet());
        let mut pieces = head.to_vec();
        pieces.extend_from_slice(&packet());
        pieces.extend_from_slice(&tag);
        assert_eq!(whole, pieces);
    }
}
