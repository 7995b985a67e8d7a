//! A VoRS room as the relay runs it on the room's owner core: who is in, who hears whom,
//! and the edge check for every UDP datagram.
//!
//! Sans-IO: [`Room::join`], [`Room::leave`], [`Room::set_muted`], [`Room::chat`] and
//! [`Room::verify_datagram`] change state and queue control messages for members;
//! **after each call, drain [`Room::poll_message`] until `None`** and hand each message to
//! the recipient's `ServerSession::send_control`, in order. The room never encrypts (each
//! member's session does), never touches a socket and never reads a clock: datagrams and
//! sweeps take their arrival time.
//!
//! A member's life: `join` reserves its name and SID and checks the password (message 2
//! not sent yet) → the session's `accept` yields its keys → [`Room::set_keys`] with the IP of
//! its control connection → its cookie arrives over UDP from that IP
//! ([`EdgeVerdict::Registered`]): the room queues `SID` to it, `ADD` (and `MUTED` for muted
//! members) for everyone present to it, and `ADD` for it to everyone else → its media is
//! forwarded, and it gets the others' for as long as datagrams keep coming from it
//! ([`Room::sweep_silent`]) → [`Room::leave`] queues `DEL` to the others.
//!
//! **Recipients.** Media goes to [`Room::recipients`]: registered members not paused for
//! silence. When that set changes (a registration, a leave, a pause, a resume),
//! [`Room::take_recipients_changed`] says so once, so that a relay keeping its own table of
//! destinations rebuilds it then and only then.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use subtle::ConstantTimeEq;

use super::control::ControlOwned;
use super::keys::{PASSWORD_HASH_LEN, SessionKeys};
use super::packet::COOKIE_LEN;
use super::sid::{Sid, SidSet};

mod edge;
mod remote;
mod udp;

pub use edge::{DropReason, EdgeVerdict, RoomStats};
use udp::UdpPath;
pub use udp::{PKT_JUMP_PER_SECOND, PKT_JUMP_SLACK, RATE_BURST, SILENCE_PAUSE};

/// SID 255 is never assigned, so the relay may use it as "no member" (in a steering table,
/// for example); a room therefore holds at most 255 members.
pub const RESERVED_SID: Sid = Sid(255);
/// The most members any room can hold.
pub const MAX_MEMBERS: usize = 255;
/// `Room::slot_of` for a SID that is nobody's: no member's index can be 255, since a room
/// holds at most 255 members (indices 0..=254).
const NO_SLOT: u8 = u8::MAX;
/// Media packets one member may have forwarded per second, by default: four times the 50 of
/// 20 ms frames.
pub const DEFAULT_MAX_PACKET_RATE: u32 = 200;

/// A room's limits: how many members it admits, which SIDs it may hand out, where cookies may
/// come from and how fast a member's media may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomConfig {
    /// Members (joined or joining) at most; 1..=[`MAX_MEMBERS`]. Default 64.
    pub max_members: usize,
    /// Only SIDs with `sid % lanes == lane` are handed out. A relay with several cores steers
    /// each datagram to the core named by its first byte modulo the number of cores (the SID,
    /// for media and keepalives), so a room owned by core `lane` of `lanes` takes SIDs from
    /// its lane. Default: one lane, every SID.
    pub sid_lanes: u8,
    /// This room's lane, below `sid_lanes`.
    pub sid_lane: u8,
    /// Accept a member's cookie from any IP address, not only from the IP of its control
    /// connection. Default false: an address that did not prove itself (a spoofed cookie
    /// source) would be sent the room's audio. Only for networks that give one client
    /// different addresses for TCP and UDP (carrier-grade NAT pools, some L4 balancers).
    pub cookie_from_any_ip: bool,
    /// Media packets one member may have forwarded per second (0: no cap), with a burst of
    /// [`RATE_BURST`] at that rate. Default [`DEFAULT_MAX_PACKET_RATE`].
    pub max_packet_rate: u32,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            max_members: 64,
            sid_lanes: 1,
            sid_lane: 0,
            cookie_from_any_ip: false,
            max_packet_rate: DEFAULT_MAX_PACKET_RATE,
        }
    }
}

impl RoomConfig {
    /// `max_members` members with default lanes.
    pub fn with_max_members(max_members: usize) -> Self {
        RoomConfig {
            max_members,
            ..RoomConfig::default()
        }
    }
}

/// Why the room refused a member. [`Reject::reason`] is the text message 2 carries.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// The room holds `max_members` already.
    RoomFull,
    /// Another member (joined or joining) has this username.
    NameTaken,
    /// The password hash differs from the one the first member set (a room without a
    /// password refuses a hash, and a room with one refuses an empty field).
    WrongPassword,
}

impl Reject {
    /// The short, stable ERR text.
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::RoomFull => "room is full",
            Reject::NameTaken => "name is taken",
            Reject::WrongPassword => "wrong password",
        }
    }
}

/// What [`Room::sweep_silent`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SilentMembers {
    /// Members paused by this sweep.
    pub newly_paused: usize,
    /// Members paused now, these included.
    pub paused: usize,
}

struct Member {
    username: String,
    cookie: [u8; COOKIE_LEN],
    keys: Option<SessionKeys>,
    /// The IP of the member's control connection, set with the keys: where its cookie must
    /// come from (unless the room takes cookies from any IP).
    control_ip: Option<IpAddr>,
    /// Set by its cookie.
    udp: Option<UdpPath>,
    muted: bool,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No cookie bytes in logs: a cookie is a bearer secret until it is used.
        f.debug_struct("Member")
            .field("username", &self.username)
            .field("udp", &self.udp)
            .field("muted", &self.muted)
            .finish_non_exhaustive()
    }
}

/// One room. Empty rooms should be dropped by the relay (a room is gone when empty: the next
/// first member sets a new password).
#[derive(Debug)]
pub struct Room {
    name: String,
    config: RoomConfig,
    password_hash: Option<[u8; PASSWORD_HASH_LEN]>,
    /// The members, joined or joining, in no order. Dense, so that a room costs memory for
    /// the members it has: a table of every possible SID's member cost 35 KiB per room, more
    /// than the rest of a small room's members together.
    members: Vec<(Sid, Member)>,
    /// Each SID's index in `members`, or [`NO_SLOT`]: the per-datagram lookup stays one
    /// array read.
    slot_of: [u8; 256],
    next_sid: u8,
    /// Members with a registered address: the recipients of control messages.
    registered: SidSet,
    /// Registered members not paused for silence: the recipients of media.
    recipients: SidSet,
    /// `recipients` changed since [`Room::take_recipients_changed`] last said so.
    recipients_changed: bool,
    by_addr: HashMap<SocketAddr, Sid>,
    /// Members other relays host (a cluster, `remote`): in the roster, never in the fan-out.
    remote: Vec<(Sid, remote::RemoteMember)>,
    outbox: VecDeque<(Sid, ControlOwned)>,
    stats: RoomStats,
}

impl Room {
    /// An empty room called `name`.
    pub fn new(name: &str, config: RoomConfig) -> Self {
        let sid_lanes = config.sid_lanes.max(1);
        let config = RoomConfig {
            max_members: config.max_members.clamp(1, MAX_MEMBERS),
            sid_lanes,
            sid_lane: config.sid_lane % sid_lanes,
            ..config
        };
        Room {
            name: name.to_owned(),
            config,
            password_hash: None,
            members: Vec::new(),
            slot_of: [NO_SLOT; 256],
            next_sid: 0,
            registered: SidSet::new(),
            recipients: SidSet::new(),
            recipients_changed: false,
            by_addr: HashMap::new(),
            remote: Vec::new(),
            outbox: VecDeque::new(),
            stats: RoomStats::default(),
        }
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Members, joined or joining.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether nobody is in (or joining) the room.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The room's counters.
    pub fn stats(&self) -> &RoomStats {
        &self.stats
    }

    /// The UDP address `sid` registered with its cookie: where its copies of the others'
    /// media go while it is heard. `None` while it is still joining, or when `sid` is nobody.
    pub fn udp_addr(&self, sid: Sid) -> Option<SocketAddr> {
        Some(self.member(sid)?.udp.as_ref()?.addr)
    }

    /// The members media goes to: registered, and not paused for silence.
    pub fn recipients(&self) -> SidSet {
        self.recipients
    }

    /// True once after [`recipients`](Self::recipients) changed: rebuild any table made
    /// from it.
    pub fn take_recipients_changed(&mut self) -> bool {
        std::mem::replace(&mut self.recipients_changed, false)
    }

    /// Whether `sid` is registered but gets no media, because nothing came from its address
    /// for [`SILENCE_PAUSE`].
    pub fn is_paused(&self, sid: Sid) -> bool {
        self.member(sid)
            .and_then(|m| m.udp.as_ref())
            .is_some_and(|udp| udp.paused)
    }

    /// Pauses media to every registered member from which nothing passed the edge check for
    /// longer than [`SILENCE_PAUSE`] before `now` (its address may be gone, or may never have
    /// been its own). A paused member's next datagram resumes it at once. Call about once a
    /// second; returns how many members this call paused and how many are paused now.
    pub fn sweep_silent(&mut self, now: Instant) -> SilentMembers {
        let mut swept = SilentMembers::default();
        for (sid, member) in &mut self.members {
            let Some(udp) = member.udp.as_mut() else {
                continue;
            };
            if udp.pause_if_silent(now) {
                swept.newly_paused += 1;
                self.recipients.remove(*sid);
                self.recipients_changed = true;
            }
            if udp.paused {
                swept.paused += 1;
            }
        }
        self.stats.paused += swept.newly_paused as u64;
        swept
    }

    /// The username of `sid`.
    pub fn username(&self, sid: Sid) -> Option<&str> {
        Some(&self.member(sid)?.username)
    }

    fn member(&self, sid: Sid) -> Option<&Member> {
        let slot = self.slot_of[usize::from(sid.0)];
        Some(&self.members.get(usize::from(slot))?.1)
    }

    fn member_mut(&mut self, sid: Sid) -> Option<&mut Member> {
        let slot = self.slot_of[usize::from(sid.0)];
        Some(&mut self.members.get_mut(usize::from(slot))?.1)
    }

    /// Admits a member (not yet announced): checks the password (the first member sets it),
    /// then the name, then the size; reserves a SID. `cookie` is what message 2 will carry.
    pub fn join(
        &mut self,
        username: &str,
        password_hash: Option<&[u8; PASSWORD_HASH_LEN]>,
        cookie: [u8; COOKIE_LEN],
    ) -> Result<Sid, Reject> {
        if self.members.is_empty() {
            self.password_hash = password_hash.copied();
        } else {
            // Password first, so that a stranger learns nothing about who is inside.
            let matches = match (&self.password_hash, password_hash) {
                (None, None) => true,
                (Some(set), Some(given)) => set.ct_eq(given).into(),
                _ => false,
            };
            if !matches {
                return Err(Reject::WrongPassword);
            }
        }
        if self.members.iter().any(|(_, m)| m.username == username) {
            return Err(Reject::NameTaken);
        }
        if self.members.len() >= self.config.max_members {
            return Err(Reject::RoomFull);
        }
        // Round robin, so that a SID is not handed out again right after its member left
        // (late packets under the old keys then meet an unknown SID, not a wrong tag).
        let (lanes, lane) = (self.config.sid_lanes, self.config.sid_lane);
        let sid = (0..MAX_MEMBERS)
            .map(|i| Sid(((usize::from(self.next_sid) + i) % MAX_MEMBERS) as u8))
            .find(|sid| sid.0 % lanes == lane && self.member(*sid).is_none())
            .ok_or(Reject::RoomFull)?;
        self.next_sid = ((usize::from(sid.0) + 1) % MAX_MEMBERS) as u8;
        // `max_members` is at most `MAX_MEMBERS` and the room was not full.
        self.push_member(sid, username, cookie);
        Ok(sid)
    }

    /// Adds a joining member under a free `sid`; the room holds fewer than [`MAX_MEMBERS`]
    /// (so its index is below 255, never [`NO_SLOT`]).
    fn push_member(&mut self, sid: Sid, username: &str, cookie: [u8; COOKIE_LEN]) {
        self.slot_of[usize::from(sid.0)] = self.members.len() as u8;
        self.members.push((
            sid,
            Member {
                username: username.to_owned(),
                cookie,
                keys: None,
                control_ip: None,
                udp: None,
                muted: false,
            },
        ));
    }

    /// Records the member's media keys (from `ServerSession::accept`) and the IP address of
    /// its control connection, `control_ip`: its cookie is accepted from now on, from that IP
    /// only (unless `cookie_from_any_ip`). Keys are set once: returns false, changing nothing,
    /// if `sid` is not a member or already has keys (its packets are judged under the keys of
    /// its handshake for as long as it is a member).
    pub fn set_keys(&mut self, sid: Sid, keys: SessionKeys, control_ip: IpAddr) -> bool {
        match self.member_mut(sid) {
            Some(member) if member.keys.is_none() => {
                member.keys = Some(keys);
                member.control_ip = Some(control_ip.to_canonical());
                true
            }
            _ => false,
        }
    }

    /// Removes a member; if it had registered, the others get `DEL`. Returns false if `sid`
    /// was not a member.
    pub fn leave(&mut self, sid: Sid) -> bool {
        let slot = usize::from(std::mem::replace(
            &mut self.slot_of[usize::from(sid.0)],
            NO_SLOT,
        ));
        if slot >= self.members.len() {
            return false;
        }
        let (_, member) = self.members.swap_remove(slot);
        if let Some((moved, _)) = self.members.get(slot) {
            self.slot_of[usize::from(moved.0)] = slot as u8;
        }
        if let Some(udp) = member.udp {
            self.by_addr.remove(&udp.addr);
            self.registered.remove(sid);
            if self.recipients.contains(sid) {
                self.recipients.remove(sid);
                self.recipients_changed = true;
            }
            self.broadcast(sid, ControlOwned::Del(sid));
        }
        true
    }

    /// A member muted or unmuted itself; on a change, the others get `MUTED`/`UNMUTED` with
    /// its SID.
    pub fn set_muted(&mut self, sid: Sid, muted: bool) {
        let Some(member) = self.member_mut(sid) else {
            return;
        };
        if member.muted == muted {
            return;
        }
        member.muted = muted;
        if self.registered.contains(sid) {
            self.broadcast(sid, mute_message(sid, muted));
        }
    }

    /// A member said `msg`; every other registered member gets `CHAT` with its SID (the
    /// author does not get an echo).
    pub fn chat(&mut self, sid: Sid, msg: &str) {
        if self.registered.contains(sid) {
            self.broadcast(sid, chat_message(sid, msg));
        }
    }

    /// The next control message to send: `(recipient, message)`, oldest first. Drain until
    /// `None` after every call that changes the room (module docs).
    pub fn poll_message(&mut self) -> Option<(Sid, ControlOwned)> {
        self.outbox.pop_front()
    }

    fn broadcast(&mut self, from: Sid, msg: ControlOwned) {
        for to in self.registered {
            if to != from {
                self.outbox.push_back((to, msg.clone()));
            }
        }
    }

    fn add_message(&self, sid: Sid) -> Option<ControlOwned> {
        let member = self.member(sid)?;
        let key = member.keys.as_ref()?.to_wire();
        Some(ControlOwned::Add {
            sid,
            username: member.username.clone(),
            key,
        })
    }
}

/// `MUTED`/`UNMUTED` naming `sid`.
fn mute_message(sid: Sid, muted: bool) -> ControlOwned {
    if muted {
        ControlOwned::Muted(Some(sid))
    } else {
        ControlOwned::Unmuted(Some(sid))
    }
}

/// `CHAT` from `sid`.
fn chat_message(sid: Sid, msg: &str) -> ControlOwned {
    ControlOwned::Chat {
        sid: Some(sid),
        msg: msg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one arrival time of these tests' datagrams.
    fn at() -> Instant {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *START.get_or_init(Instant::now)
    }

    /// The IP of every member's control connection (and of its cookie).
    pub(super) fn ip() -> IpAddr {
        IpAddr::from([192, 0, 2, 1])
    }

    pub(super) fn keys(n: u8) -> SessionKeys {
        SessionKeys::from_wire(&[n; 48])
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    /// Joins and registers `name`; returns its SID and drains nothing.
    fn enter(room: &mut Room, name: &str, n: u8) -> Sid {
        let sid = room.join(name, None, [n; COOKIE_LEN]).expect("join");
        assert!(room.set_keys(sid, keys(n), ip()));
        assert_eq!(
            room.verify_datagram(at(), addr(u16::from(n)), &[n; COOKIE_LEN]),
            EdgeVerdict::Registered(sid)
        );
        sid
    }

    pub(super) fn drain(room: &mut Room) -> Vec<(Sid, ControlOwned)> {
        std::iter::from_fn(|| room.poll_message()).collect()
    }

    #[test]
    fn first_member_sets_the_password_and_others_must_match() {
        let pw = [1u8; PASSWORD_HASH_LEN];
        let mut room = Room::new("r", RoomConfig::default());
        let a = room.join("a", Some(&pw), [0; 16]).expect("first");
        assert_eq!(room.join("b", None, [0; 16]), Err(Reject::WrongPassword));
        assert_eq!(
            room.join("b", Some(&[2; 32]), [0; 16]),
            Err(Reject::WrongPassword)
        );
        assert!(room.join("b", Some(&pw), [0; 16]).is_ok());
        // The password is checked before the name: a stranger cannot probe who is inside.
        assert_eq!(room.join("a", None, [0; 16]), Err(Reject::WrongPassword));
        assert_eq!(room.join("a", Some(&pw), [0; 16]), Err(Reject::NameTaken));
        assert!(room.leave(a));
        assert_eq!(room.len(), 1, "b is still in, so the password stays");
        assert_eq!(room.join("c", None, [0; 16]), Err(Reject::WrongPassword));
        let mut open = Room::new("o", RoomConfig::default());
        open.join("a", None, [0; 16]).expect("first");
        assert_eq!(
            open.join("b", Some(&pw), [0; 16]),
            Err(Reject::WrongPassword)
        );
    }

    #[test]
    fn an_emptied_room_takes_a_new_password() {
        let mut room = Room::new("r", RoomConfig::default());
        let a = room.join("a", Some(&[1; 32]), [0; 16]).expect("join");
        assert!(room.leave(a));
        assert!(room.is_empty());
        assert!(room.join("b", None, [0; 16]).is_ok());
        assert_eq!(
            room.join("c", Some(&[1; 32]), [0; 16]),
            Err(Reject::WrongPassword)
        );
    }

    #[test]
    fn sids_stay_in_the_rooms_lane() {
        let config = RoomConfig {
            max_members: MAX_MEMBERS,
            sid_lanes: 3,
            sid_lane: 2,
            ..RoomConfig::default()
        };
        let mut room = Room::new("lane", config);
        let mut joined = 0;
        while let Ok(sid) = room.join(&format!("m{joined}"), None, [0; 16]) {
            assert_eq!(sid.0 % 3, 2, "{sid:?} is outside lane 2 of 3");
            joined += 1;
        }
        // 2, 5, ..., 254: 85 SIDs in lane 2 (255 itself is reserved and in lane 0).
        assert_eq!(joined, 85);
    }

    #[test]
    fn full_room_refuses_and_sids_are_unique_and_skip_255() {
        let mut room = Room::new("r", RoomConfig::with_max_members(MAX_MEMBERS));
        let mut seen = SidSet::new();
        for i in 0..MAX_MEMBERS {
            let sid = room
                .join(&format!("m{i}"), None, [0; 16])
                .expect("room has space");
            assert!(!seen.contains(sid) && sid != RESERVED_SID);
            seen.insert(sid);
        }
        assert_eq!(room.join("late", None, [0; 16]), Err(Reject::RoomFull));
        let mut small = Room::new("s", RoomConfig::with_max_members(2));
        small.join("a", None, [0; 16]).expect("1");
        small.join("b", None, [0; 16]).expect("2");
        assert_eq!(small.join("c", None, [0; 16]), Err(Reject::RoomFull));
        assert_eq!(Reject::RoomFull.reason(), "room is full");
        assert_eq!(Reject::NameTaken.reason(), "name is taken");
        assert_eq!(Reject::WrongPassword.reason(), "wrong password");
    }

    #[test]
    fn members_stay_found_by_sid_while_others_leave_in_any_order() {
        let mut room = Room::new("r", RoomConfig::with_max_members(MAX_MEMBERS));
        let mut inside: Vec<(Sid, String)> = Vec::new();
        // Joins and leaves interleaved, leaving from the front, the back and the middle, so
        // that every member is at some point moved into a leaver's place.
        for round in 0..300usize {
            let name = format!("m{round}");
            let sid = room.join(&name, None, [0; 16]).expect("room has space");
            inside.push((sid, name));
            if round % 3 == 2 {
                let (gone, _) = inside.remove((round * 7) % inside.len());
                assert!(room.leave(gone));
                assert!(!room.leave(gone), "a member leaves once");
                assert_eq!(room.username(gone), None);
            }
            assert_eq!(room.len(), inside.len());
            for (sid, name) in &inside {
                assert_eq!(room.username(*sid), Some(name.as_str()), "{sid:?}");
            }
        }
        assert!(!room.leave(RESERVED_SID));
        for (sid, _) in inside {
            assert!(room.leave(sid));
        }
        assert!(room.is_empty());
    }

    #[test]
    fn sids_are_not_reused_right_away() {
        let mut room = Room::new("r", RoomConfig::default());
        let a = room.join("a", None, [0; 16]).expect("join");
        room.leave(a);
        let b = room.join("b", None, [0; 16]).expect("join");
        assert_ne!(a, b);
    }

    #[test]
    fn registration_announces_both_ways_and_leave_sends_del() {
        let mut room = Room::new("r", RoomConfig::default());
        let a = enter(&mut room, "alice", 1);
        assert_eq!(drain(&mut room), vec![(a, ControlOwned::Sid(a))]);
        room.set_muted(a, true);
        assert!(drain(&mut room).is_empty(), "nobody to tell yet");
        let b = enter(&mut room, "bob", 2);
        let add = |sid: Sid, name: &str, n: u8| ControlOwned::Add {
            sid,
            username: name.to_owned(),
            key: [n; 48],
        };
        assert_eq!(
            drain(&mut room),
            vec![
                (b, ControlOwned::Sid(b)),
                (b, add(a, "alice", 1)),
                (b, ControlOwned::Muted(Some(a))),
                (a, add(b, "bob", 2)),
            ]
        );
        room.chat(b, "hello");
        room.set_muted(a, false);
        room.set_muted(a, false);
        assert_eq!(
            drain(&mut room),
            vec![
                (
                    a,
                    ControlOwned::Chat {
                        sid: Some(b),
                        msg: "hello".to_owned()
                    }
                ),
                (b, ControlOwned::Unmuted(Some(a))),
            ]
        );
        assert!(room.leave(b));
        assert!(!room.leave(b));
        assert_eq!(drain(&mut room), vec![(a, ControlOwned::Del(b))]);
        assert_eq!(room.udp_addr(b), None);
    }

    #[test]
    fn a_member_that_never_registered_leaves_silently() {
        let mut room = Room::new("r", RoomConfig::default());
        let a = enter(&mut room, "alice", 1);
        drain(&mut room);
        let b = room.join("bob", None, [2; 16]).expect("join");
        assert!(room.leave(b));
        assert!(drain(&mut room).is_empty());
        assert_eq!(room.len(), 1);
        assert_eq!(room.username(a), Some("alice"));
    }
}
