//! The edge check: what a UDP datagram from a given address is, and whether to forward it.

use std::net::SocketAddr;

use subtle::ConstantTimeEq;

use super::Room;
use crate::vors::control::ControlOwned;
use crate::vors::packet::{COOKIE_LEN, Datagram, MediaPacket, classify};
use crate::vors::sid::{Sid, SidSet};

/// Why a datagram was dropped at the edge. Count them by [`DropReason::label`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A length no VoRS datagram has (0, 2..=14).
    Malformed,
    /// The SID byte names no member of the room.
    UnknownSid,
    /// The source address is not the one the SID's member registered (or, for a cookie, no
    /// joining member has that cookie).
    UnknownSource,
    /// The SipHash tag does not match the member's MAC key.
    BadTag,
    /// PKT equals the last accepted PKT of that member.
    Replayed,
    /// PKT is below the last accepted PKT of that member.
    Reordered,
    /// A cookie retransmitted after the member registered (the SID had not reached it yet).
    CookieRepeat,
}

impl DropReason {
    /// Every reason, for exporting counters.
    pub const ALL: [DropReason; 7] = [
        DropReason::Malformed,
        DropReason::UnknownSid,
        DropReason::UnknownSource,
        DropReason::BadTag,
        DropReason::Replayed,
        DropReason::Reordered,
        DropReason::CookieRepeat,
    ];

    /// A metrics label: `malformed`, `unknown_sid`, `unknown_source`, `bad_tag`, `replayed`,
    /// `reordered`, `cookie_repeat`.
    pub fn label(&self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownSid => "unknown_sid",
            DropReason::UnknownSource => "unknown_source",
            DropReason::BadTag => "bad_tag",
            DropReason::Replayed => "replayed",
            DropReason::Reordered => "reordered",
            DropReason::CookieRepeat => "cookie_repeat",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What to do with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeVerdict {
    /// A verified media packet: send the datagram unchanged to every recipient's address
    /// ([`Room::udp_addr`]). Never includes the sender.
    Forward {
        /// The member who sent it.
        sender: Sid,
        /// Every other member with a registered address.
        recipients: SidSet,
    },
    /// A keepalive from a registered member; nothing to send.
    Keepalive(Sid),
    /// A joining member's cookie: its address is registered and the room queued SID and the
    /// ADDs (drain [`Room::poll_message`]).
    Registered(Sid),
    /// Drop it and count the reason.
    Drop(DropReason),
}

/// Counters of one room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomStats {
    /// Media packets verified and forwarded.
    pub forwarded_packets: u64,
    /// Copies sent (one per recipient).
    pub forwarded_copies: u64,
    /// Keepalives accepted.
    pub keepalives: u64,
    /// Drops, indexed like [`DropReason::ALL`]; read with [`RoomStats::dropped`].
    dropped: [u64; DropReason::ALL.len()],
}

impl RoomStats {
    /// Datagrams dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }
}

impl Room {
    /// Judges a datagram from `from`; see [`EdgeVerdict`]. For media it checks, in order:
    /// length, SID, source address, tag, and that PKT is above the member's last accepted
    /// PKT — the cheap checks first, the SipHash only for a plausible packet.
    pub fn verify_datagram(&mut self, from: SocketAddr, datagram: &[u8]) -> EdgeVerdict {
        // Only a 16-byte datagram needs the address lookup (cookie or media, see `Datagram`).
        let at_addr = match datagram.len() {
            COOKIE_LEN => self.by_addr.get(&from).copied(),
            _ => None,
        };
        let verdict = match classify(datagram, at_addr.is_some()) {
            Datagram::Invalid => EdgeVerdict::Drop(DropReason::Malformed),
            Datagram::Keepalive(sid) => match self.member(sid) {
                None => EdgeVerdict::Drop(DropReason::UnknownSid),
                Some(m) if m.udp == Some(from) => EdgeVerdict::Keepalive(sid),
                Some(_) => EdgeVerdict::Drop(DropReason::UnknownSource),
            },
            Datagram::Cookie(cookie) => self.register(from, cookie),
            Datagram::Media(_) if self.is_cookie_repeat(at_addr, datagram) => {
                EdgeVerdict::Drop(DropReason::CookieRepeat)
            }
            Datagram::Media(packet) => self.verify_media(from, packet),
        };
        match verdict {
            EdgeVerdict::Drop(reason) => self.stats.dropped[reason.index()] += 1,
            EdgeVerdict::Forward { recipients, .. } => {
                self.stats.forwarded_packets += 1;
                self.stats.forwarded_copies += recipients.len() as u64;
            }
            EdgeVerdict::Keepalive(_) => self.stats.keepalives += 1,
            EdgeVerdict::Registered(_) => {}
        }
        verdict
    }

    fn is_cookie_repeat(&self, at_addr: Option<Sid>, datagram: &[u8]) -> bool {
        at_addr
            .and_then(|sid| self.member(sid))
            .is_some_and(|m| bool::from(m.cookie.ct_eq(datagram)))
    }

    fn verify_media(&mut self, from: SocketAddr, packet: MediaPacket<'_>) -> EdgeVerdict {
        let sid = packet.sid();
        let mut recipients = self.registered;
        recipients.remove(sid);
        let Some(member) = self.member_mut(sid) else {
            return EdgeVerdict::Drop(DropReason::UnknownSid);
        };
        if member.udp != Some(from) {
            return EdgeVerdict::Drop(DropReason::UnknownSource);
        }
        // A registered member always has keys (the cookie is refused before `set_keys`).
        if !member
            .keys
            .as_ref()
            .is_some_and(|k| packet.tag_is_valid(&k.mac))
        {
            return EdgeVerdict::Drop(DropReason::BadTag);
        }
        let pkt = packet.pkt();
        match member.last_pkt {
            Some(last) if pkt == last => EdgeVerdict::Drop(DropReason::Replayed),
            Some(last) if pkt < last => EdgeVerdict::Drop(DropReason::Reordered),
            _ => {
                member.last_pkt = Some(pkt);
                EdgeVerdict::Forward {
                    sender: sid,
                    recipients,
                }
            }
        }
    }

    /// A cookie from an unregistered address: find the joining member it belongs to.
    fn register(&mut self, from: SocketAddr, cookie: &[u8; COOKIE_LEN]) -> EdgeVerdict {
        // Cookies are random and unique in a relay; should two ever match, the lowest SID
        // registers, whatever order the members are stored in.
        let found = self
            .members
            .iter()
            .filter(|(_, m)| {
                let waiting = m.udp.is_none() && m.keys.is_some();
                waiting && bool::from(m.cookie.ct_eq(cookie))
            })
            .map(|(sid, _)| *sid)
            .min();
        let Some(sid) = found else {
            return EdgeVerdict::Drop(DropReason::UnknownSource);
        };
        if let Some(member) = self.member_mut(sid) {
            member.udp = Some(from);
        }
        self.by_addr.insert(from, sid);
        self.outbox.push_back((sid, ControlOwned::Sid(sid)));
        for other in self.registered {
            if let Some(add) = self.add_message(other) {
                self.outbox.push_back((sid, add));
            }
            if self.member(other).is_some_and(|m| m.muted) {
                self.outbox
                    .push_back((sid, ControlOwned::Muted(Some(other))));
            }
        }
        if let Some(add) = self.add_message(sid) {
            self.broadcast(sid, add);
        }
        // A member that muted before registering was announced to nobody then; ADD alone
        // would leave the others thinking it unmuted until it toggles again.
        if self.member(sid).is_some_and(|m| m.muted) {
            self.broadcast(sid, ControlOwned::Muted(Some(sid)));
        }
        self.registered.insert(sid);
        EdgeVerdict::Registered(sid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vors::keys::SessionKeys;
    use crate::vors::packet::seal;
    use crate::vors::room::RoomConfig;

    fn keys(n: u8) -> SessionKeys {
        SessionKeys::from_wire(&[n; 48])
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([198, 51, 100, 7], port))
    }

    /// A room with members 1, 2 and 3 registered from ports 1, 2 and 3.
    fn room() -> (Room, [Sid; 3]) {
        let mut room = Room::new("r", RoomConfig::default());
        let sids = [1u8, 2, 3].map(|n| {
            let sid = room
                .join(&format!("m{n}"), None, [n; COOKIE_LEN])
                .expect("join");
            room.set_keys(sid, keys(n));
            assert_eq!(
                room.verify_datagram(addr(u16::from(n)), &[n; COOKIE_LEN]),
                EdgeVerdict::Registered(sid)
            );
            sid
        });
        while room.poll_message().is_some() {}
        (room, sids)
    }

    fn media(sid: Sid, n: u8, pkt: u32, opus: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        seal(&keys(n), sid, pkt, pkt, opus, &mut out).expect("seal");
        out
    }

    #[test]
    fn a_members_keys_are_set_once() {
        let (mut room, [a, _, _]) = room();
        assert!(!room.set_keys(a, keys(9)), "keys replaced");
        assert!(matches!(
            room.verify_datagram(addr(1), &media(a, 1, 1, b"x")),
            EdgeVerdict::Forward { .. }
        ));
        assert_eq!(
            room.verify_datagram(addr(1), &media(a, 9, 2, b"x")),
            EdgeVerdict::Drop(DropReason::BadTag)
        );
        assert!(!room.set_keys(Sid(200), keys(9)), "not a member");
    }

    #[test]
    fn forwards_to_everyone_else_and_enforces_rising_pkt() {
        let (mut room, [a, b, c]) = room();
        let verdict = room.verify_datagram(addr(1), &media(a, 1, 5, b"x"));
        let mut expected = SidSet::new();
        expected.insert(b);
        expected.insert(c);
        assert_eq!(
            verdict,
            EdgeVerdict::Forward {
                sender: a,
                recipients: expected
            }
        );
        assert_eq!(
            room.verify_datagram(addr(1), &media(a, 1, 5, b"x")),
            EdgeVerdict::Drop(DropReason::Replayed)
        );
        assert_eq!(
            room.verify_datagram(addr(1), &media(a, 1, 4, b"x")),
            EdgeVerdict::Drop(DropReason::Reordered)
        );
        assert!(matches!(
            room.verify_datagram(addr(1), &media(a, 1, 7, b"x")),
            EdgeVerdict::Forward { .. }
        ));
        assert_eq!(room.stats().forwarded_packets, 2);
        assert_eq!(room.stats().forwarded_copies, 4);
        assert_eq!(room.stats().dropped(DropReason::Replayed), 1);
        assert_eq!(room.stats().dropped(DropReason::Reordered), 1);
    }

    #[test]
    fn forged_and_misrouted_packets_die_with_their_reason() {
        let (mut room, [a, b, _]) = room();
        // Right SID, wrong source.
        assert_eq!(
            room.verify_datagram(addr(2), &media(a, 1, 1, b"x")),
            EdgeVerdict::Drop(DropReason::UnknownSource)
        );
        // Right source, someone else's SID.
        assert_eq!(
            room.verify_datagram(addr(1), &media(b, 2, 1, b"x")),
            EdgeVerdict::Drop(DropReason::UnknownSource)
        );
        // Nobody has SID 200.
        assert_eq!(
            room.verify_datagram(addr(1), &media(Sid(200), 1, 1, b"x")),
            EdgeVerdict::Drop(DropReason::UnknownSid)
        );
        // Right SID and source, wrong key.
        assert_eq!(
            room.verify_datagram(addr(1), &media(a, 9, 1, b"x")),
            EdgeVerdict::Drop(DropReason::BadTag)
        );
        // A forged packet must not move the replay counter.
        assert!(matches!(
            room.verify_datagram(addr(1), &media(a, 1, 1, b"x")),
            EdgeVerdict::Forward { .. }
        ));
        assert_eq!(
            room.verify_datagram(addr(1), &[0; 9]),
            EdgeVerdict::Drop(DropReason::Malformed)
        );
        assert_eq!(
            room.verify_datagram(addr(1), &[]),
            EdgeVerdict::Drop(DropReason::Malformed)
        );
        assert_eq!(room.stats().dropped(DropReason::UnknownSource), 2);
        assert_eq!(room.stats().dropped(DropReason::BadTag), 1);
    }

    #[test]
    fn sixteen_byte_datagrams_follow_the_source_rule() {
        let (mut room, [a, _, _]) = room();
        // A 1-byte Opus payload makes a 16-byte media packet: forwarded from a member's address.
        let short = media(a, 1, 1, b"z");
        assert_eq!(short.len(), COOKIE_LEN);
        assert!(matches!(
            room.verify_datagram(addr(1), &short),
            EdgeVerdict::Forward { .. }
        ));
        // The same bytes from elsewhere are a cookie nobody has.
        assert_eq!(
            room.verify_datagram(addr(9), &short),
            EdgeVerdict::Drop(DropReason::UnknownSource)
        );
        // A late cookie retransmission from the member itself.
        assert_eq!(
            room.verify_datagram(addr(1), &[1; COOKIE_LEN]),
            EdgeVerdict::Drop(DropReason::CookieRepeat)
        );
        // Another member's cookie from a third address does not hijack its registration.
        assert_eq!(
            room.verify_datagram(addr(9), &[1; COOKIE_LEN]),
            EdgeVerdict::Drop(DropReason::UnknownSource)
        );
        assert_eq!(room.udp_addr(a), Some(addr(1)));
    }

    #[test]
    fn cookie_is_refused_until_the_keys_are_known() {
        let mut room = Room::new("r", RoomConfig::default());
        let sid = room.join("m", None, [4; COOKIE_LEN]).expect("join");
        assert_eq!(
            room.verify_datagram(addr(4), &[4; COOKIE_LEN]),
            EdgeVerdict::Drop(DropReason::UnknownSource)
        );
        room.set_keys(sid, keys(4));
        assert_eq!(
            room.verify_datagram(addr(4), &[4; COOKIE_LEN]),
            EdgeVerdict::Registered(sid)
        );
    }

    #[test]
    fn keepalives_need_the_registered_source() {
        let (mut room, [a, _, _]) = room();
        assert_eq!(
            room.verify_datagram(addr(1), &[a.0]),
            EdgeVerdict::Keepalive(a)
        );
        assert_eq!(
            room.verify_datagram(addr(2), &[a.0]),
            EdgeVerdict::Drop(DropReason::UnknownSource)
        );
        assert_eq!(
            room.verify_datagram(addr(1), &[77]),
            EdgeVerdict::Drop(DropReason::UnknownSid)
        );
        assert_eq!(room.stats().keepalives, 1);
    }

    /// Found by `prop_sessions::room_keeps_its_invariants_and_tells_every_member_the_truth`:
    /// a member muted before its cookie arrived was announced with ADD only, so the others
    /// took it for unmuted.
    #[test]
    fn a_member_muted_before_registering_is_announced_muted() {
        let (mut room, [a, b, c]) = room();
        let late = room.join("late", None, [9; COOKIE_LEN]).expect("join");
        room.set_keys(late, keys(9));
        room.set_muted(late, true);
        assert_eq!(
            room.poll_message(),
            None,
            "nobody to tell before it registers"
        );
        assert_eq!(
            room.verify_datagram(addr(9), &[9; COOKIE_LEN]),
            EdgeVerdict::Registered(late)
        );
        let to_others: Vec<_> = std::iter::from_fn(|| room.poll_message())
            .filter(|(to, _)| *to != late)
            .collect();
        let key = keys(9).to_wire();
        let add = ControlOwned::Add {
            sid: late,
            username: "late".to_owned(),
            key,
        };
        let muted = ControlOwned::Muted(Some(late));
        assert_eq!(
            to_others,
            [
                (a, add.clone()),
                (b, add.clone()),
                (c, add),
                (a, muted.clone()),
                (b, muted.clone()),
                (c, muted),
            ]
        );
    }

    #[test]
    fn labels_are_distinct() {
        let mut labels: Vec<_> = DropReason::ALL.iter().map(DropReason::label).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), DropReason::ALL.len());
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
    }
}
