//! The edge check: what a UDP datagram from a given address is, and whether to forward it.

use std::net::SocketAddr;
use std::time::Instant;

use subtle::ConstantTimeEq;

use super::Room;
use super::udp::UdpPath;
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
    /// A joining member's cookie from an IP address other than its control connection's:
    /// the address has not proven it is the member's (a spoofed source would be sent the
    /// room's audio). See [`RoomConfig::cookie_from_any_ip`](super::RoomConfig).
    WrongAddress,
    /// A joining member's cookie from an address another member registered (in any room of
    /// the relay's core). Judged by the relay, which keeps one table of addresses per core;
    /// a [`Room`] never gives it. The address stays its owner's.
    AddressTaken,
    /// A verified packet whose PKT is further ahead of the member's last accepted one than
    /// the time since allows ([`PKT_JUMP_PER_SECOND`](super::PKT_JUMP_PER_SECOND) plus
    /// [`PKT_JUMP_SLACK`](super::PKT_JUMP_SLACK)).
    PktJump,
    /// A verified packet past the member's packet rate
    /// ([`RoomConfig::max_packet_rate`](super::RoomConfig)).
    Rate,
}

impl DropReason {
    /// Every reason, for exporting counters.
    pub const ALL: [DropReason; 11] = [
        DropReason::Malformed,
        DropReason::UnknownSid,
        DropReason::UnknownSource,
        DropReason::BadTag,
        DropReason::Replayed,
        DropReason::Reordered,
        DropReason::CookieRepeat,
        DropReason::WrongAddress,
        DropReason::AddressTaken,
        DropReason::PktJump,
        DropReason::Rate,
    ];

    /// A metrics label: `malformed`, `unknown_sid`, `unknown_source`, `bad_tag`, `replayed`,
    /// `reordered`, `cookie_repeat`, `wrong_address`, `address_taken`, `pkt_jump`, `rate`.
    pub fn label(&self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownSid => "unknown_sid",
            DropReason::UnknownSource => "unknown_source",
            DropReason::BadTag => "bad_tag",
            DropReason::Replayed => "replayed",
            DropReason::Reordered => "reordered",
            DropReason::CookieRepeat => "cookie_repeat",
            DropReason::WrongAddress => "wrong_address",
            DropReason::AddressTaken => "address_taken",
            DropReason::PktJump => "pkt_jump",
            DropReason::Rate => "rate",
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
        /// Every other member with a registered address that is not paused for silence
        /// ([`Room::recipients`]).
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
    /// Members paused for silence ([`Room::sweep_silent`]).
    pub paused: u64,
    /// Paused members resumed by a datagram.
    pub resumed: u64,
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
    /// Judges a datagram from `from` that arrived at `now`; see [`EdgeVerdict`]. For media it
    /// checks, in order: length, SID, source address, tag, that PKT is above the member's
    /// last accepted PKT and not too far above it, and the member's packet rate — the cheap
    /// checks first, the SipHash only for a plausible packet. A keepalive or a forwarded
    /// packet also tells that the member is heard (and resumes it if it was paused); drain
    /// [`Room::take_recipients_changed`] after it.
    pub fn verify_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> EdgeVerdict {
        // Only a 16-byte datagram needs the address lookup (cookie or media, see `Datagram`).
        let at_addr = match datagram.len() {
            COOKIE_LEN => self.by_addr.get(&from).copied(),
            _ => None,
        };
        let verdict = match classify(datagram, at_addr.is_some()) {
            Datagram::Invalid => EdgeVerdict::Drop(DropReason::Malformed),
            Datagram::Keepalive(sid) => match self.udp_of(sid, from) {
                Err(reason) => EdgeVerdict::Drop(reason),
                Ok(udp) => {
                    let resumed = udp.heard(now);
                    self.resumed(sid, resumed);
                    EdgeVerdict::Keepalive(sid)
                }
            },
            Datagram::Cookie(cookie) => self.register(now, from, cookie),
            Datagram::Media(_) if self.is_cookie_repeat(at_addr, datagram) => {
                EdgeVerdict::Drop(DropReason::CookieRepeat)
            }
            Datagram::Media(packet) => self.verify_media(now, from, packet),
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

    /// The UDP side of member `sid`, if `from` is the address it registered.
    fn udp_of(&mut self, sid: Sid, from: SocketAddr) -> Result<&mut UdpPath, DropReason> {
        let member = self.member_mut(sid).ok_or(DropReason::UnknownSid)?;
        match member.udp.as_mut() {
            Some(udp) if udp.addr == from => Ok(udp),
            _ => Err(DropReason::UnknownSource),
        }
    }

    /// `sid` was heard again after a pause (if `resumed`): it gets media again.
    fn resumed(&mut self, sid: Sid, resumed: bool) {
        if resumed {
            self.recipients.insert(sid);
            self.recipients_changed = true;
            self.stats.resumed += 1;
        }
    }

    fn verify_media(
        &mut self,
        now: Instant,
        from: SocketAddr,
        packet: MediaPacket<'_>,
    ) -> EdgeVerdict {
        let sid = packet.sid();
        let max_rate = self.config.max_packet_rate;
        let Some(member) = self.member_mut(sid) else {
            return EdgeVerdict::Drop(DropReason::UnknownSid);
        };
        let Some(udp) = member.udp.as_mut().filter(|udp| udp.addr == from) else {
            return EdgeVerdict::Drop(DropReason::UnknownSource);
        };
        // A registered member always has keys (the cookie is refused before `set_keys`).
        if !member
            .keys
            .as_ref()
            .is_some_and(|k| packet.tag_is_valid(&k.mac))
        {
            return EdgeVerdict::Drop(DropReason::BadTag);
        }
        // Only a packet with a valid tag moves the counter, so forgeries cannot; and a
        // genuine packet over the rate is still counted in, so the next one does not look
        // like a jump.
        if let Err(reason) = udp.take_pkt(packet.pkt(), now) {
            return EdgeVerdict::Drop(reason);
        }
        let resumed = udp.heard(now);
        let within_rate = udp.within_rate(max_rate, now);
        self.resumed(sid, resumed);
        if !within_rate {
            return EdgeVerdict::Drop(DropReason::Rate);
        }
        let mut recipients = self.recipients;
        recipients.remove(sid);
        EdgeVerdict::Forward {
            sender: sid,
            recipients,
        }
    }

    /// A cookie from an unregistered address: find the joining member it belongs to, and
    /// register `from` if that member's control connection came from its IP.
    fn register(
        &mut self,
        now: Instant,
        from: SocketAddr,
        cookie: &[u8; COOKIE_LEN],
    ) -> EdgeVerdict {
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
        let any_ip = self.config.cookie_from_any_ip;
        let Some(member) = self.member_mut(sid) else {
            return EdgeVerdict::Drop(DropReason::UnknownSource);
        };
        if !any_ip && member.control_ip != Some(from.ip().to_canonical()) {
            // The member stays joining: its cookie may still come from the right address.
            return EdgeVerdict::Drop(DropReason::WrongAddress);
        }
        member.udp = Some(UdpPath::new(from, now));
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
        self.queue_remote_roster(sid);
        if let Some(add) = self.add_message(sid) {
            self.broadcast(sid, add);
        }
        // A member that muted before registering was announced to nobody then; ADD alone
        // would leave the others thinking it unmuted until it toggles again.
        if self.member(sid).is_some_and(|m| m.muted) {
            self.broadcast(sid, ControlOwned::Muted(Some(sid)));
        }
        self.registered.insert(sid);
        self.recipients.insert(sid);
        self.recipients_changed = true;
        EdgeVerdict::Registered(sid)
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use super::*;
    use crate::vors::keys::SessionKeys;
    use crate::vors::packet::seal;
    use crate::vors::room::{RoomConfig, SilentMembers};

    /// The one arrival time of these tests' datagrams.
    fn at() -> Instant {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *START.get_or_init(Instant::now)
    }

    /// The IP of every member's control connection (and of its cookie).
    fn ip() -> IpAddr {
        IpAddr::from([198, 51, 100, 7])
    }

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
            room.set_keys(sid, keys(n), ip());
            assert_eq!(
                room.verify_datagram(at(), addr(u16::from(n)), &[n; COOKIE_LEN]),
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
        assert!(!room.set_keys(a, keys(9), ip()), "keys replaced");
        assert!(matches!(
            room.verify_datagram(at(), addr(1), &media(a, 1, 1, b"x")),
            EdgeVerdict::Forward { .. }
        ));
        assert_eq!(
            room.verify_datagram(at(), addr(1), &media(a, 9, 2, b"x")),
            EdgeVerdict::Drop(DropReason::BadTag)
        );
        assert!(!room.set_keys(Sid(200), keys(9), ip()), "not a member");
    }

    #[test]
    fn forwards_to_everyone_else_and_enforces_rising_pkt() {
        let (mut room, [a, b, c]) = room();
        let verdict = room.verify_datagram(at(), addr(1), &media(a, 1, 5, b"x"));
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
            room.verify_datagram(at(), addr(1), &media(a, 1, 5, b"x")),
            EdgeVerdict::Drop(DropReason::Replayed)
        );
        assert_eq!(
            room.verify_datagram(at(), addr(1), &media(a, 1, 4, b"x")),
            EdgeVerdict::Drop(DropReason::Reordered)
        );
        assert!(matches!(
            room.verify_datagram(at(), addr(1), &media(a, 1, 7, b"x")),
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
            room.verify_datagram(at(), addr(2), &media(a, 1, 1, b"x")),
            EdgeVerdict::Drop(DropReason::UnknownSource)
        );
        // Right source, someone else's SID.
        assert_eq!(
            room.verify_datagram(at(), addr(1), &media(b, 2, 1, b"x")),
            EdgeVerdict::Drop(DropReason::UnknownSource)
        );
        // Nobody has SID 200.
        assert_eq!(
            room.verify_datagram(at(), addr(1), &media(Sid(200), 1, 1, b"x")),
            EdgeVerdict::Drop(DropReason::UnknownSid)
        );
        // Right SID and source, wrong key.
        assert_eq!(
            room.verify_datagram(at(), addr(1), &media(a, 9, 1, b"x")),
            EdgeVerdict::Drop(DropReason::BadTag)
        );
        // A forged packet must not move the replay counter.
        assert!(matches!(
            room.verify_datagram(at(), addr(1), &media(a, 1, 1, b"x")),
            EdgeVerdict::Forward { .. }
        ));
        assert_eq!(
            room.verify_datagram(at(), addr(1), &[0; 9]),
            EdgeVerdict::Drop(DropReason::Malformed)
        );
        assert_eq!(
            room.verify_datagram(at(), addr(1), &[]),
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
            room.verify_datagram(at(), addr(1), &short),
            EdgeVerdict::Forward { .. }
        ));
        // The same bytes from elsewhere are a cookie nobody has.
        assert_eq!(
            room.verify_datagram(at(), addr(9), &short),
            EdgeVerdict::Drop(DropReason::UnknownSource)
        );
        // A late cookie retransmission from the member itself.
        assert_eq!(
            room.verify_datagram(at(), addr(1), &[1; COOKIE_LEN]),
            EdgeVerdict::Drop(DropReason::CookieRepeat)
        );
        // Another member's cookie from a third address does not hijack its registration.
        assert_eq!(
            room.verify_datagram(at(), addr(9), &[1; COOKIE_LEN]),
            EdgeVerdict::Drop(DropReason::UnknownSource)
        );
        assert_eq!(room.udp_addr(a), Some(addr(1)));
    }

    #[test]
    fn cookie_is_refused_until_the_keys_are_known() {
        let mut room = Room::new("r", RoomConfig::default());
        let sid = room.join("m", None, [4; COOKIE_LEN]).expect("join");
        assert_eq!(
            room.verify_datagram(at(), addr(4), &[4; COOKIE_LEN]),
            EdgeVerdict::Drop(DropReason::UnknownSource)
        );
        room.set_keys(sid, keys(4), ip());
        assert_eq!(
            room.verify_datagram(at(), addr(4), &[4; COOKIE_LEN]),
            EdgeVerdict::Registered(sid)
        );
    }

    #[test]
    fn keepalives_need_the_registered_source() {
        let (mut room, [a, _, _]) = room();
        assert_eq!(
            room.verify_datagram(at(), addr(1), &[a.0]),
            EdgeVerdict::Keepalive(a)
        );
        assert_eq!(
            room.verify_datagram(at(), addr(2), &[a.0]),
            EdgeVerdict::Drop(DropReason::UnknownSource)
        );
        assert_eq!(
            room.verify_datagram(at(), addr(1), &[77]),
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
        room.set_keys(late, keys(9), ip());
        room.set_muted(late, true);
        assert_eq!(
            room.poll_message(),
            None,
            "nobody to tell before it registers"
        );
        assert_eq!(
            room.verify_datagram(at(), addr(9), &[9; COOKIE_LEN]),
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

    fn secs(s: f64) -> Instant {
        at() + Duration::from_secs_f64(s)
    }

    fn set(sids: &[Sid]) -> SidSet {
        let mut set = SidSet::new();
        for sid in sids {
            set.insert(*sid);
        }
        set
    }

    /// The reflection attack: a member whose control connection came from one IP sends its
    /// cookie from another (a spoofed victim). Nothing is registered, so nothing is sent
    /// there; the member's own IP still works.
    #[test]
    fn a_cookie_registers_only_from_the_control_connections_ip() {
        let (mut room, [a, _, _]) = room();
        room.take_recipients_changed();
        let late = room.join("late", None, [9; COOKIE_LEN]).expect("join");
        room.set_keys(late, keys(9), ip());
        let victim = SocketAddr::from(([203, 0, 113, 66], 4000));
        assert_eq!(
            room.verify_datagram(at(), victim, &[9; COOKIE_LEN]),
            EdgeVerdict::Drop(DropReason::WrongAddress)
        );
        assert_eq!(room.udp_addr(late), None);
        assert_eq!(room.poll_message(), None, "no SID, no ADD");
        assert!(!room.take_recipients_changed());
        // The victim sees none of a's media.
        let Some(EdgeVerdict::Forward { recipients, .. }) =
            Some(room.verify_datagram(at(), addr(1), &media(a, 1, 1, b"xx")))
        else {
            panic!("a's packet is forwarded");
        };
        assert!(!recipients.contains(late));
        // Any port of the control connection's IP proves it (NAT picks the UDP port).
        assert_eq!(
            room.verify_datagram(at(), addr(9), &[9; COOKIE_LEN]),
            EdgeVerdict::Registered(late)
        );
        assert!(room.take_recipients_changed());
        assert_eq!(room.stats().dropped(DropReason::WrongAddress), 1);
    }

    #[test]
    fn an_ipv4_mapped_control_address_matches_its_ipv4_cookie() {
        let mut room = Room::new("r", RoomConfig::default());
        let sid = room.join("m", None, [4; COOKIE_LEN]).expect("join");
        let mapped = IpAddr::from([0, 0, 0, 0, 0, 0xffff, 0xc633, 0x6407]);
        assert_eq!(mapped.to_canonical(), ip());
        room.set_keys(sid, keys(4), mapped);
        assert_eq!(
            room.verify_datagram(at(), addr(4), &[4; COOKIE_LEN]),
            EdgeVerdict::Registered(sid)
        );
    }

    #[test]
    fn a_room_open_to_any_ip_registers_a_cookie_from_elsewhere() {
        let config = RoomConfig {
            cookie_from_any_ip: true,
            ..RoomConfig::default()
        };
        let mut room = Room::new("r", config);
        let sid = room.join("m", None, [4; COOKIE_LEN]).expect("join");
        room.set_keys(sid, keys(4), ip());
        let elsewhere = SocketAddr::from(([203, 0, 113, 9], 4000));
        assert_eq!(
            room.verify_datagram(at(), elsewhere, &[4; COOKIE_LEN]),
            EdgeVerdict::Registered(sid)
        );
    }

    #[test]
    fn a_silent_member_gets_no_media_until_it_is_heard_again() {
        let (mut room, [a, b, c]) = room();
        assert!(room.take_recipients_changed());
        assert!(!room.take_recipients_changed(), "said once");
        // a talks, b sends keepalives, c is silent from its cookie on.
        let mut pkt = 0;
        let mut talk = |room: &mut Room, now| {
            pkt += 1;
            room.verify_datagram(now, addr(1), &media(a, 1, pkt, b"xx"))
        };
        for s in 1..=3 {
            let now = secs(f64::from(s));
            assert!(matches!(talk(&mut room, now), EdgeVerdict::Forward { .. }));
            assert_eq!(
                room.verify_datagram(now, addr(2), &[b.0]),
                EdgeVerdict::Keepalive(b)
            );
        }
        assert_eq!(
            room.sweep_silent(secs(4.0)),
            SilentMembers {
                newly_paused: 0,
                paused: 0
            }
        );
        assert!(!room.take_recipients_changed());
        assert_eq!(
            room.sweep_silent(secs(4.5)),
            SilentMembers {
                newly_paused: 1,
                paused: 1
            },
            "c: 4.5 s since its cookie"
        );
        assert!(room.is_paused(c) && !room.is_paused(a) && !room.is_paused(b));
        assert!(room.take_recipients_changed());
        assert_eq!(room.recipients(), set(&[a, b]));
        assert_eq!(
            talk(&mut room, secs(4.6)),
            EdgeVerdict::Forward {
                sender: a,
                recipients: set(&[b])
            }
        );
        assert_eq!(
            room.sweep_silent(secs(5.5)),
            SilentMembers {
                newly_paused: 0,
                paused: 1
            }
        );
        // c's keepalive resumes it at once, without waiting for a sweep.
        assert_eq!(
            room.verify_datagram(secs(6.0), addr(3), &[c.0]),
            EdgeVerdict::Keepalive(c)
        );
        assert!(room.take_recipients_changed());
        assert_eq!(
            talk(&mut room, secs(6.1)),
            EdgeVerdict::Forward {
                sender: a,
                recipients: set(&[b, c])
            }
        );
        // A member that only talks is heard too: a talks at 8 s, b and c keep quiet since
        // 3 s and 6 s.
        assert!(matches!(
            talk(&mut room, secs(8.0)),
            EdgeVerdict::Forward { .. }
        ));
        assert_eq!(
            room.sweep_silent(secs(10.2)),
            SilentMembers {
                newly_paused: 2,
                paused: 2
            }
        );
        assert_eq!(room.recipients(), set(&[a]));
        // A paused member's own media resumes it, and is forwarded.
        assert_eq!(
            room.verify_datagram(secs(10.3), addr(2), &media(b, 2, 1, b"xx")),
            EdgeVerdict::Forward {
                sender: b,
                recipients: set(&[a])
            }
        );
        assert!(!room.is_paused(b));
        assert_eq!((room.stats().paused, room.stats().resumed), (3, 2));
        // Control messages still reach a paused member.
        room.take_recipients_changed();
        room.chat(a, "still there?");
        assert!(std::iter::from_fn(|| room.poll_message()).any(|(to, _)| to == c));
        // Leaving changes the recipients, a paused member's leaving does not.
        assert!(room.leave(c));
        assert!(!room.take_recipients_changed());
        assert!(room.leave(b));
        assert!(room.take_recipients_changed());
    }

    #[test]
    fn a_member_past_its_packet_rate_is_dropped_after_its_burst() {
        let (mut room, [a, b, c]) = room();
        let verdicts: Vec<EdgeVerdict> = (1..=150)
            .map(|pkt| room.verify_datagram(at(), addr(1), &media(a, 1, pkt, b"xx")))
            .collect();
        let forwarded = verdicts
            .iter()
            .filter(|v| matches!(v, EdgeVerdict::Forward { .. }))
            .count();
        assert_eq!(
            forwarded, 101,
            "200 a second, half a second's burst, plus the first"
        );
        assert!(
            verdicts[101..]
                .iter()
                .all(|v| *v == EdgeVerdict::Drop(DropReason::Rate))
        );
        assert_eq!(room.stats().dropped(DropReason::Rate), 49);
        // The capped packets still moved the counter: the next one is no jump, and a copy of
        // a capped one is a replay.
        assert_eq!(
            room.verify_datagram(secs(0.005), addr(1), &media(a, 1, 151, b"xx")),
            EdgeVerdict::Forward {
                sender: a,
                recipients: set(&[b, c])
            }
        );
        assert_eq!(
            room.verify_datagram(secs(0.005), addr(1), &media(a, 1, 140, b"xx")),
            EdgeVerdict::Drop(DropReason::Reordered)
        );
    }

    #[test]
    fn a_forged_pkt_jump_is_dropped_and_the_member_goes_on() {
        let (mut room, [a, _, _]) = room();
        assert!(matches!(
            room.verify_datagram(secs(0.02), addr(1), &media(a, 1, 1, b"xx")),
            EdgeVerdict::Forward { .. }
        ));
        // Under a's keys (every member has them) from a's address (spoofed): it would mute a
        // for the rest of its session.
        assert_eq!(
            room.verify_datagram(secs(0.03), addr(1), &media(a, 1, 0xff_ffff, b"xx")),
            EdgeVerdict::Drop(DropReason::PktJump)
        );
        assert!(matches!(
            room.verify_datagram(secs(0.04), addr(1), &media(a, 1, 2, b"xx")),
            EdgeVerdict::Forward { .. }
        ));
        // 3 s of loss: 150 packets further, well within 300 + 50.
        assert!(matches!(
            room.verify_datagram(secs(3.04), addr(1), &media(a, 1, 152, b"xx")),
            EdgeVerdict::Forward { .. }
        ));
        assert_eq!(room.stats().dropped(DropReason::PktJump), 1);
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
