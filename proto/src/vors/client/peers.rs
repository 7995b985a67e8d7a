//! The other members as the client knows them: names, keys, mute state, and the per-sender
//! order check for their media.

use std::collections::BTreeMap;

use super::ClientStats;
use crate::vors::keys::SessionKeys;
use crate::vors::packet::{MediaPacket, open};
use crate::vors::sid::Sid;

/// A media packet accepted from a peer; its Opus payload went to the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Who sent it.
    pub sid: Sid,
    /// Its PKT (24 bits): above every PKT accepted from this peer before.
    pub pkt: u32,
    /// Its audio frame counter: a gap larger than the PKT gap is the sender's muted time.
    pub frame: u32,
    /// Packets of this peer missing between the previous accepted one and this one.
    pub lost: u32,
}

#[derive(Debug)]
struct Peer {
    username: String,
    keys: SessionKeys,
    last_pkt: Option<u32>,
    muted: bool,
}

/// The peers announced by ADD and not yet removed by DEL.
#[derive(Debug, Default)]
pub(super) struct Peers {
    by_sid: BTreeMap<Sid, Peer>,
}

impl Peers {
    pub(super) fn len(&self) -> usize {
        self.by_sid.len()
    }

    /// ADD: a new member (or a SID reused by the server: the old state is replaced).
    pub(super) fn add(&mut self, sid: Sid, username: String, keys: SessionKeys) {
        let peer = Peer {
            username,
            keys,
            last_pkt: None,
            muted: false,
        };
        self.by_sid.insert(sid, peer);
    }

    /// DEL: returns the name of the member that left.
    pub(super) fn remove(&mut self, sid: Sid) -> Option<String> {
        self.by_sid.remove(&sid).map(|peer| peer.username)
    }

    pub(super) fn set_muted(&mut self, sid: Sid, muted: bool) {
        if let Some(peer) = self.by_sid.get_mut(&sid) {
            peer.muted = muted;
        }
    }

    /// SID, name and mute state of every peer, by SID.
    pub(super) fn iter(&self) -> impl Iterator<Item = (Sid, &str, bool)> {
        self.by_sid
            .iter()
            .map(|(sid, p)| (*sid, p.username.as_str(), p.muted))
    }

    /// Checks and opens a peer's media packet, appending the Opus payload to `opus_out`.
    /// PKT must rise strictly per sender: reordered and replayed packets are dropped.
    pub(super) fn receive(
        &mut self,
        datagram: &[u8],
        opus_out: &mut Vec<u8>,
        stats: &mut ClientStats,
    ) -> Option<Received> {
        let Ok(packet) = MediaPacket::parse(datagram) else {
            stats.dropped_malformed += 1;
            return None;
        };
        let sid = packet.sid();
        let Some(peer) = self.by_sid.get_mut(&sid) else {
            stats.dropped_unknown_sid += 1;
            return None;
        };
        // Order first: it is free, and a stale packet is not worth a SipHash and a decrypt.
        // The counter only moves after the tag is checked, so forgeries cannot move it.
        let pkt = packet.pkt();
        match peer.last_pkt {
            Some(last) if pkt == last => {
                stats.dropped_replayed += 1;
                return None;
            }
            Some(last) if pkt < last => {
                stats.dropped_reordered += 1;
                return None;
            }
            _ => {}
        }
        let Ok((pkt, frame)) = open(&peer.keys, datagram, opus_out) else {
            stats.dropped_bad_tag += 1;
            return None;
        };
        let lost = peer.last_pkt.map_or(0, |last| pkt - last - 1);
        peer.last_pkt = Some(pkt);
        stats.packets_received += 1;
        stats.packets_lost += u64::from(lost);
        Some(Received {
            sid,
            pkt,
            frame,
            lost,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vors::packet::seal;

    fn packet(keys: &SessionKeys, sid: Sid, pkt: u32) -> Vec<u8> {
        let mut out = Vec::new();
        seal(keys, sid, pkt, pkt * 2, b"voice", &mut out).expect("seal");
        out
    }

    #[test]
    fn media_is_opened_in_order_and_stale_or_forged_packets_are_counted() {
        let keys = SessionKeys::from_wire(&[3; 48]);
        let mut peers = Peers::default();
        peers.add(Sid(9), "pat".to_owned(), keys.clone());
        let mut stats = ClientStats::default();
        let mut opus = Vec::new();
        let mut rx = |bytes: &[u8], stats: &mut ClientStats| peers.receive(bytes, &mut opus, stats);

        let got = rx(&packet(&keys, Sid(9), 5), &mut stats);
        assert_eq!(
            got,
            Some(Received {
                sid: Sid(9),
                pkt: 5,
                frame: 10,
                lost: 0
            })
        );
        let got = rx(&packet(&keys, Sid(9), 8), &mut stats);
        assert_eq!(
            got,
            Some(Received {
                sid: Sid(9),
                pkt: 8,
                frame: 16,
                lost: 2
            })
        );
        assert_eq!(rx(&packet(&keys, Sid(9), 8), &mut stats), None);
        assert_eq!(rx(&packet(&keys, Sid(9), 6), &mut stats), None);
        let mut forged = packet(&keys, Sid(9), 9);
        forged[8] ^= 1;
        assert_eq!(rx(&forged, &mut stats), None);
        // The forged packet did not move the counter: the genuine 9 still passes.
        assert!(rx(&packet(&keys, Sid(9), 9), &mut stats).is_some());
        assert_eq!(rx(&packet(&keys, Sid(4), 10), &mut stats), None);
        assert_eq!(rx(&[1, 2, 3], &mut stats), None);

        assert_eq!(opus, b"voicevoicevoice");
        assert_eq!(
            (
                stats.dropped_replayed,
                stats.dropped_reordered,
                stats.dropped_bad_tag
            ),
            (1, 1, 1)
        );
        assert_eq!((stats.dropped_unknown_sid, stats.dropped_malformed), (1, 1));
        assert_eq!((stats.packets_received, stats.packets_lost), (3, 2));
    }

    #[test]
    fn add_remove_and_mute_track_the_room() {
        let mut peers = Peers::default();
        peers.add(Sid(2), "b".to_owned(), SessionKeys::from_wire(&[1; 48]));
        peers.add(Sid(1), "a".to_owned(), SessionKeys::from_wire(&[2; 48]));
        peers.set_muted(Sid(2), true);
        peers.set_muted(Sid(7), true);
        let all: Vec<_> = peers.iter().collect();
        assert_eq!(all, vec![(Sid(1), "a", false), (Sid(2), "b", true)]);
        assert_eq!(peers.remove(Sid(2)), Some("b".to_owned()));
        assert_eq!(peers.remove(Sid(2)), None);
        assert_eq!(peers.len(), 1);
    }
}
