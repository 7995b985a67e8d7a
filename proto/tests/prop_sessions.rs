//! The VoRS state machines under any sequence of inputs: the room against a model of what
//! every member must have been told, and a server session wired to a client session through
//! byte queues that a generated script delivers in pieces, replays, garbles, cuts, and
//! interleaves with room decisions and time jumps. Nothing may panic, and the invariants of
//! each machine hold after every step.
#![allow(clippy::unwrap_used)]

mod prop_support;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use moose_proto::vors::Sid;
use moose_proto::vors::client::{ClientEvent, ClientSession, ClientTransmit};
use moose_proto::vors::control::{Control, ControlOwned};
use moose_proto::vors::freshness::{Freshness, UnixTime};
use moose_proto::vors::handshake::generate_keypair;
use moose_proto::vors::hello::Hello;
use moose_proto::vors::keys::{KEY_WIRE_LEN, SessionKeys};
use moose_proto::vors::packet::{COOKIE_LEN, compute_tag, seal};
use moose_proto::vors::room::{
    DropReason, EdgeVerdict, PKT_JUMP_PER_SECOND, PKT_JUMP_SLACK, RATE_BURST, RESERVED_SID, Room,
    RoomConfig, SILENCE_PAUSE, SilentMembers,
};
use moose_proto::vors::server::{ServerEvent, ServerSession};
use moose_proto::vors::sid::SidSet;
use prop_support::config;
use proptest::prelude::*;

/// Both sides' wall clock: the client's SENT_AT and the server's judgement of it.
const WALL: UnixTime = UnixTime(1_800_000_000);

fn keys(n: u8) -> SessionKeys {
    let wire: [u8; KEY_WIRE_LEN] = std::array::from_fn(|i| (i as u8).wrapping_mul(13) ^ n);
    SessionKeys::from_wire(&wire)
}

/// Source `from` of a datagram: one of six addresses, or (6 and 7) the member's `own`
/// address when it has one, so that genuine traffic is common.
fn source(from: u8, own: Option<SocketAddr>) -> SocketAddr {
    match own {
        Some(own) if from >= 6 => own,
        _ => addr(from % 6),
    }
}

/// Three IPs, two ports each: a cookie may come from its member's control IP on another port.
fn addr(n: u8) -> SocketAddr {
    SocketAddr::from((ip(n), 5000 + u16::from(n)))
}

fn ip(n: u8) -> IpAddr {
    IpAddr::from([198, 51, 100, n % 3])
}

// --- The room ------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum RoomOp {
    Join {
        name: u8,
        password: u8,
        cookie: u8,
    },
    SetKeys {
        member: u8,
        /// The control connection's IP, by [`ip`].
        ip: u8,
    },
    Leave {
        member: u8,
    },
    Mute {
        member: u8,
        muted: bool,
    },
    Chat {
        member: u8,
    },
    Cookie {
        member: u8,
        from: u8,
    },
    Media {
        member: u8,
        from: u8,
        pkt: u32,
        len: u8,
        right_keys: bool,
    },
    Keepalive {
        member: u8,
        from: u8,
    },
    Garbage {
        bytes: Vec<u8>,
        from: u8,
    },
    /// Time passes before the next datagram (milliseconds).
    Advance(u16),
    /// The relay's once-a-second pause of silent members.
    Sweep,
    /// A member sends `packets` genuine media packets at once, from its own address.
    Talk {
        member: u8,
        packets: u8,
    },
}

fn room_op() -> impl Strategy<Value = RoomOp> {
    prop_oneof![
        3 => (0..5u8, 0..3u8, 0..4u8)
            .prop_map(|(name, password, cookie)| RoomOp::Join { name, password, cookie }),
        2 => (any::<u8>(), 0..3u8).prop_map(|(member, ip)| RoomOp::SetKeys { member, ip }),
        1 => any::<u8>().prop_map(|member| RoomOp::Leave { member }),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(member, muted)| RoomOp::Mute { member, muted }),
        1 => any::<u8>().prop_map(|member| RoomOp::Chat { member }),
        2 => (any::<u8>(), 0..8u8).prop_map(|(member, from)| RoomOp::Cookie { member, from }),
        4 => (any::<u8>(), 0..8u8, pkt(), 0..20u8, any::<bool>()).prop_map(
            |(member, from, pkt, len, right_keys)| RoomOp::Media { member, from, pkt, len, right_keys }
        ),
        1 => (any::<u8>(), 0..8u8).prop_map(|(member, from)| RoomOp::Keepalive { member, from }),
        1 => (proptest::collection::vec(any::<u8>(), 0..24), 0..8u8)
            .prop_map(|(bytes, from)| RoomOp::Garbage { bytes, from }),
        2 => prop_oneof![0..50u16, 0..6_000u16].prop_map(RoomOp::Advance),
        1 => Just(RoomOp::Sweep),
        2 => (any::<u8>(), 1..6u8).prop_map(|(member, packets)| RoomOp::Talk { member, packets }),
    ]
}

/// A PKT one above the member's last accepted one (no real PKT: they have 24 bits).
const NEXT_PKT: u32 = u32::MAX;

/// PKTs: the next one, small values, jumps around the slack, and the top of the counter.
fn pkt() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => Just(NEXT_PKT),
        4 => 0..6u32,
        // The first packet's bound, at the instant of registration.
        1 => Just(PKT_JUMP_SLACK).prop_union(Just(PKT_JUMP_SLACK + 1)),
        2 => 40..120u32,
        1 => Just(0xff_ffff),
    ]
}

/// One `join` that succeeded, as the model remembers it.
#[derive(Debug)]
struct Joined {
    sid: Sid,
    name: u8,
    cookie: [u8; COOKIE_LEN],
    keys: Option<u8>,
    control_ip: Option<IpAddr>,
    udp: Option<SocketAddr>,
    last_pkt: Option<u32>,
    /// When the last packet was accepted, or the cookie registered.
    last_pkt_at: Option<Instant>,
    /// When the last keepalive or accepted packet came.
    heard_at: Option<Instant>,
    paused: bool,
    /// The rate cap as a token bucket measured in time: full at `RATE_BURST` plus one
    /// packet interval, each packet takes one interval, time refills it.
    bucket: Duration,
    bucket_at: Option<Instant>,
    muted: bool,
    live: bool,
}

/// What the room should be, and what each registered member has been told: for each
/// registered member, the other members it knows of and their mute state.
#[derive(Debug)]
struct RoomModel {
    config: RoomConfig,
    now: Instant,
    password: Option<u8>,
    joined: Vec<Joined>,
    views: BTreeMap<Sid, BTreeMap<Sid, bool>>,
}

impl RoomModel {
    fn new(config: RoomConfig, now: Instant) -> Self {
        RoomModel {
            config,
            now,
            password: None,
            joined: Vec::new(),
            views: BTreeMap::new(),
        }
    }

    /// Registered members not paused: who gets media.
    fn recipients(&self) -> SidSet {
        let mut set = SidSet::new();
        for m in self.live().filter(|m| m.udp.is_some() && !m.paused) {
            set.insert(m.sid);
        }
        set
    }

    /// The packet interval of the rate cap (zero: no cap).
    fn interval(&self) -> Duration {
        match self.config.max_packet_rate {
            0 => Duration::ZERO,
            rate => Duration::from_secs(1) / rate,
        }
    }

    /// Whether a packet from `m` now fits its bucket (not taking it).
    fn fits_rate(&self, m: &Joined) -> bool {
        let interval = self.interval();
        if interval.is_zero() {
            return true;
        }
        let at = m.bucket_at.unwrap_or(self.now);
        let refilled =
            (m.bucket + self.now.saturating_duration_since(at)).min(RATE_BURST + interval);
        refilled >= interval
    }

    fn live(&self) -> impl Iterator<Item = &Joined> {
        self.joined.iter().filter(|m| m.live)
    }

    fn by_sid(&self, sid: Sid) -> Option<&Joined> {
        self.live().find(|m| m.sid == sid)
    }

    fn registered(&self) -> BTreeMap<Sid, bool> {
        self.live()
            .filter(|m| m.udp.is_some())
            .map(|m| (m.sid, m.muted))
            .collect()
    }

    /// The verdict the edge check must give, by its documented order of checks.
    fn expect(&self, from: SocketAddr, d: &[u8]) -> EdgeVerdict {
        let at_from = self.live().find(|m| m.udp == Some(from));
        match d.len() {
            1 => match self.by_sid(Sid(d[0])) {
                None => EdgeVerdict::Drop(DropReason::UnknownSid),
                Some(m) if m.udp == Some(from) => EdgeVerdict::Keepalive(m.sid),
                Some(_) => EdgeVerdict::Drop(DropReason::UnknownSource),
            },
            COOKIE_LEN if at_from.is_none() => {
                let mut waiting: Vec<&Joined> = self
                    .live()
                    .filter(|m| m.keys.is_some() && m.udp.is_none() && m.cookie[..] == *d)
                    .collect();
                waiting.sort_by_key(|m| m.sid);
                match waiting.first() {
                    Some(m)
                        if !self.config.cookie_from_any_ip && m.control_ip != Some(from.ip()) =>
                    {
                        EdgeVerdict::Drop(DropReason::WrongAddress)
                    }
                    Some(m) => EdgeVerdict::Registered(m.sid),
                    None => EdgeVerdict::Drop(DropReason::UnknownSource),
                }
            }
            0 | 2..=14 => EdgeVerdict::Drop(DropReason::Malformed),
            _ => {
                if d.len() == COOKIE_LEN && at_from.is_some_and(|m| m.cookie[..] == *d) {
                    return EdgeVerdict::Drop(DropReason::CookieRepeat);
                }
                let Some(m) = self.by_sid(Sid(d[0])) else {
                    return EdgeVerdict::Drop(DropReason::UnknownSid);
                };
                if m.udp != Some(from) {
                    return EdgeVerdict::Drop(DropReason::UnknownSource);
                }
                let (body, tag) = d.split_at(d.len() - 8);
                let tag_ok = m
                    .keys
                    .is_some_and(|k| compute_tag(&keys(k).mac, body)[..] == *tag);
                if !tag_ok {
                    return EdgeVerdict::Drop(DropReason::BadTag);
                }
                let pkt = u32::from_be_bytes([0, d[1], d[2], d[3]]);
                match m.last_pkt {
                    Some(last) if pkt == last => return EdgeVerdict::Drop(DropReason::Replayed),
                    Some(last) if pkt < last => return EdgeVerdict::Drop(DropReason::Reordered),
                    _ => {}
                }
                let since = self.now - m.last_pkt_at.unwrap();
                let allowed = since.as_millis() as u64 * u64::from(PKT_JUMP_PER_SECOND) / 1000
                    + u64::from(PKT_JUMP_SLACK);
                if u64::from(pkt - m.last_pkt.unwrap_or(0)) > allowed {
                    return EdgeVerdict::Drop(DropReason::PktJump);
                }
                if !self.fits_rate(m) {
                    return EdgeVerdict::Drop(DropReason::Rate);
                }
                let mut recipients = self.recipients();
                recipients.remove(m.sid);
                EdgeVerdict::Forward {
                    sender: m.sid,
                    recipients,
                }
            }
        }
    }

    /// Applies a verdict the room gave (already checked against `expect`).
    fn apply(&mut self, from: SocketAddr, d: &[u8], verdict: EdgeVerdict) {
        let now = self.now;
        let interval = self.interval();
        let full = RATE_BURST + interval;
        fn member(model: &mut RoomModel, sid: Sid) -> &mut Joined {
            model
                .joined
                .iter_mut()
                .find(|m| m.live && m.sid == sid)
                .unwrap()
        }
        match verdict {
            EdgeVerdict::Registered(sid) => {
                let m = member(self, sid);
                m.udp = Some(from);
                m.last_pkt_at = Some(now);
                m.heard_at = Some(now);
                m.bucket = full;
                m.bucket_at = Some(now);
            }
            EdgeVerdict::Keepalive(sid) => {
                let m = member(self, sid);
                m.heard_at = Some(now);
                m.paused = false;
            }
            EdgeVerdict::Forward { .. } | EdgeVerdict::Drop(DropReason::Rate) => {
                let sid = match verdict {
                    EdgeVerdict::Forward { sender, .. } => sender,
                    _ => Sid(d[0]),
                };
                let m = member(self, sid);
                m.last_pkt = Some(u32::from_be_bytes([0, d[1], d[2], d[3]]));
                m.last_pkt_at = Some(now);
                m.heard_at = Some(now);
                m.paused = false;
                if matches!(verdict, EdgeVerdict::Forward { .. }) && !interval.is_zero() {
                    let at = m.bucket_at.unwrap();
                    m.bucket = (m.bucket + (now - at)).min(full) - interval;
                    m.bucket_at = Some(now);
                }
            }
            _ => {}
        }
    }

    /// The relay's sweep: members silent for longer than the pause window stop getting
    /// media. Returns what the room must report.
    fn sweep(&mut self) -> SilentMembers {
        let now = self.now;
        let mut swept = SilentMembers::default();
        for m in self.joined.iter_mut().filter(|m| m.live && m.udp.is_some()) {
            if !m.paused && now - m.heard_at.unwrap() > SILENCE_PAUSE {
                m.paused = true;
                swept.newly_paused += 1;
            }
            if m.paused {
                swept.paused += 1;
            }
        }
        swept
    }

    /// Delivers the room's queued messages to the members' views.
    fn deliver(&mut self, room: &mut Room) -> Result<(), TestCaseError> {
        while let Some((to, msg)) = room.poll_message() {
            let recipient = self.by_sid(to);
            prop_assert!(
                recipient.is_some_and(|m| m.udp.is_some()),
                "message to a member that is not registered: {to:?} {msg:?}"
            );
            if let ControlOwned::Sid(sid) = msg {
                prop_assert_eq!(sid, to);
                prop_assert!(!self.views.contains_key(&to), "SID twice");
                self.views.insert(to, BTreeMap::new());
                continue;
            }
            let Some(view) = self.views.get_mut(&to) else {
                return Err(TestCaseError::fail(format!(
                    "{msg:?} to {to:?} before its SID"
                )));
            };
            match msg {
                ControlOwned::Add { sid, username, key } => {
                    prop_assert_ne!(sid, to);
                    let m = self.joined.iter().find(|m| m.live && m.sid == sid).unwrap();
                    prop_assert_eq!(username, format!("n{}", m.name));
                    prop_assert_eq!(key, keys(m.keys.unwrap()).to_wire());
                    prop_assert!(view.insert(sid, false).is_none(), "ADD twice");
                }
                ControlOwned::Del(sid) => {
                    prop_assert!(view.remove(&sid).is_some(), "DEL of a member never added");
                }
                ControlOwned::Muted(Some(sid)) | ControlOwned::Unmuted(Some(sid)) => {
                    let muted = matches!(msg, ControlOwned::Muted(_));
                    let known = view.get_mut(&sid);
                    prop_assert!(known.is_some(), "MUTED of a member never added");
                    *known.unwrap() = muted;
                }
                ControlOwned::Chat { sid: Some(sid), .. } => {
                    prop_assert!(view.contains_key(&sid), "CHAT from a member never added");
                }
                other => return Err(TestCaseError::fail(format!("room sent {other:?}"))),
            }
        }
        Ok(())
    }

    /// Every registered member knows exactly the other registered members and their mute
    /// state.
    fn check_views(&self) -> Result<(), TestCaseError> {
        let registered = self.registered();
        for (sid, view) in &self.views {
            let mut others = registered.clone();
            others.remove(sid);
            prop_assert_eq!(view, &others, "what {:?} knows", sid);
        }
        Ok(())
    }
}

fn password(n: u8) -> Option<[u8; 32]> {
    (n > 0).then_some([n; 32])
}

fn run_room(config: RoomConfig, ops: Vec<RoomOp>) -> Result<(), TestCaseError> {
    let mut room = Room::new("r", config);
    let max = config.max_members.clamp(1, 255);
    let lanes = config.sid_lanes.max(1);
    let lane = config.sid_lane % lanes;
    let mut model = RoomModel::new(config, Instant::now());
    for op in ops {
        let pick = |member: u8, model: &RoomModel| {
            (!model.joined.is_empty()).then(|| usize::from(member) % model.joined.len())
        };
        let recipients_before = model.recipients();
        let mut datagrams: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        match op {
            RoomOp::Join {
                name,
                password: pw,
                cookie,
            } => {
                let username = format!("n{name}");
                let live = model.live().count();
                let want = if live > 0 && model.password != Some(pw).filter(|&p| p > 0) {
                    Err("wrong password")
                } else if model.live().any(|m| m.name == name) {
                    Err("name is taken")
                } else if live >= max {
                    Err("room is full")
                } else {
                    Ok(())
                };
                let got = room.join(&username, password(pw).as_ref(), [cookie; COOKIE_LEN]);
                prop_assert_eq!(got.map(|_| ()).map_err(|r| r.reason()), want);
                if let Ok(sid) = got {
                    prop_assert_ne!(sid, RESERVED_SID);
                    prop_assert_eq!(sid.0 % lanes, lane);
                    prop_assert!(model.by_sid(sid).is_none(), "SID {sid:?} handed out twice");
                    if live == 0 {
                        model.password = Some(pw).filter(|&p| p > 0);
                        model.views.clear();
                    }
                    model.joined.push(Joined {
                        sid,
                        name,
                        cookie: [cookie; COOKIE_LEN],
                        keys: None,
                        control_ip: None,
                        udp: None,
                        last_pkt: None,
                        last_pkt_at: None,
                        heard_at: None,
                        paused: false,
                        bucket: Duration::ZERO,
                        bucket_at: None,
                        muted: false,
                        live: true,
                    });
                }
            }
            RoomOp::SetKeys { member, ip: n } => {
                if let Some(i) = pick(member, &model) {
                    let m = &mut model.joined[i];
                    let set = room.set_keys(m.sid, keys(i as u8), ip(n));
                    // Keys are set once, for a member that is still there.
                    let fresh = m.live && m.keys.is_none();
                    prop_assert_eq!(set, fresh);
                    if fresh {
                        m.keys = Some(i as u8);
                        m.control_ip = Some(ip(n));
                    }
                }
            }
            RoomOp::Advance(ms) => model.now += Duration::from_millis(u64::from(ms)),
            RoomOp::Sweep => {
                let want = model.sweep();
                prop_assert_eq!(room.sweep_silent(model.now), want);
            }
            RoomOp::Leave { member } => {
                if let Some(i) = pick(member, &model) {
                    let sid = model.joined[i].sid;
                    let was = model.joined[i].live;
                    prop_assert_eq!(room.leave(sid), was);
                    model.joined[i].live = false;
                    model.views.remove(&sid);
                }
            }
            RoomOp::Mute { member, muted } => {
                if let Some(i) = pick(member, &model) {
                    let sid = model.joined[i].sid;
                    room.set_muted(sid, muted);
                    if model.joined[i].live {
                        model.joined[i].muted = muted;
                    }
                }
            }
            RoomOp::Chat { member } => {
                if let Some(i) = pick(member, &model) {
                    room.chat(model.joined[i].sid, "hello");
                }
            }
            RoomOp::Cookie { member, from } => {
                if let Some(i) = pick(member, &model) {
                    let m = &model.joined[i];
                    let own = (0..6).map(addr).find(|a| Some(a.ip()) == m.control_ip);
                    datagrams.push((source(from, own), m.cookie.to_vec()));
                }
            }
            RoomOp::Media {
                member,
                from,
                pkt,
                len,
                right_keys,
            } => {
                if let Some(i) = pick(member, &model) {
                    let m = &model.joined[i];
                    let k = match (right_keys, m.keys) {
                        (true, Some(k)) => keys(k),
                        _ => keys(200),
                    };
                    let pkt = match pkt {
                        NEXT_PKT => m.last_pkt.unwrap_or(0) + 1,
                        pkt => pkt,
                    };
                    let mut d = Vec::new();
                    seal(&k, m.sid, pkt, pkt, &vec![7; usize::from(len)], &mut d).unwrap();
                    datagrams.push((source(from, m.udp), d));
                }
            }
            RoomOp::Keepalive { member, from } => {
                if let Some(i) = pick(member, &model) {
                    let m = &model.joined[i];
                    datagrams.push((source(from, m.udp), vec![m.sid.0]));
                }
            }
            RoomOp::Garbage { bytes, from } => datagrams.push((addr(from), bytes)),
            RoomOp::Talk { member, packets } => {
                if let Some(i) = pick(member, &model) {
                    let m = &model.joined[i];
                    let k = keys(m.keys.unwrap_or(200));
                    let from = m.udp.unwrap_or(addr(0));
                    let last = m.last_pkt.unwrap_or(0);
                    for pkt in last + 1..=last + u32::from(packets) {
                        let mut d = Vec::new();
                        seal(&k, m.sid, pkt, pkt, &[7; 20], &mut d).unwrap();
                        datagrams.push((from, d));
                    }
                }
            }
        }
        for (from, d) in datagrams {
            let want = model.expect(from, &d);
            let got = room.verify_datagram(model.now, from, &d);
            prop_assert_eq!(got, want, "datagram {:?} from {}", d, from);
            model.apply(from, &d, got);
            if let EdgeVerdict::Forward { sender, recipients } = got {
                prop_assert!(!recipients.contains(sender));
                for to in recipients {
                    prop_assert!(room.udp_addr(to).is_some());
                    prop_assert!(!room.is_paused(to), "media to a paused member");
                }
            }
        }
        // The recipients are the model's, and a change is said once.
        let recipients = model.recipients();
        prop_assert_eq!(room.recipients(), recipients);
        prop_assert_eq!(
            room.take_recipients_changed(),
            recipients != recipients_before
        );
        prop_assert!(!room.take_recipients_changed());
        model.deliver(&mut room)?;
        model.check_views()?;
        prop_assert_eq!(room.len(), model.live().count());
        prop_assert!(room.len() <= max);
        prop_assert_eq!(room.is_empty(), model.live().next().is_none());
        for m in model.live() {
            prop_assert_eq!(room.udp_addr(m.sid), m.udp);
            prop_assert_eq!(room.is_paused(m.sid), m.paused);
            let name = format!("n{}", m.name);
            prop_assert_eq!(room.username(m.sid), Some(name.as_str()));
        }
    }
    Ok(())
}

fn room_config() -> impl Strategy<Value = RoomConfig> {
    (
        0..8usize,
        0..5u8,
        any::<u8>(),
        any::<bool>(),
        prop_oneof![Just(0u32), 1..4u32, Just(200u32)],
    )
        .prop_map(
            |(max_members, sid_lanes, sid_lane, cookie_from_any_ip, max_packet_rate)| RoomConfig {
                max_members,
                sid_lanes,
                sid_lane,
                cookie_from_any_ip,
                max_packet_rate,
            },
        )
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn room_keeps_its_invariants_and_tells_every_member_the_truth(
        config in room_config(),
        ops in proptest::collection::vec(room_op(), 1..80),
    ) {
        run_room(config, ops)?;
    }
}

// --- Server and client sessions ------------------------------------------------------------

#[derive(Debug, Clone)]
enum SessionOp {
    /// Up to `max` pending bytes from the client reach the server, in two pieces.
    ToServer {
        max: u16,
        cut: u16,
    },
    /// Up to `max` pending bytes from the server reach the client, in two pieces.
    ToClient {
        max: u16,
        cut: u16,
    },
    /// An earlier piece arrives again (a replay, or a message out of order).
    Replay {
        to_server: bool,
        index: u8,
    },
    /// Bytes no peer sent.
    Garbage {
        to_server: bool,
        bytes: Vec<u8>,
    },
    /// The room's answer to the hello.
    Decide {
        accept: bool,
    },
    /// A message from the room through the server session.
    Room(u8, u8),
    ClientMute(bool),
    ClientChat(u8),
    ClientAudio,
    /// A datagram reaches the client: a peer's media (valid for peer SID `sid` when `valid`).
    ClientUdp {
        sid: u8,
        pkt: u32,
        valid: bool,
    },
    /// Time passes: small steps and jumps past every timeout.
    Advance(u32),
    CloseTcp {
        server_side: bool,
    },
}

/// Steps of a call going well: deliveries in pieces, the room admitting the member and
/// announcing others, the client talking, time passing within every timeout.
fn benign_op() -> impl Strategy<Value = SessionOp> {
    prop_oneof![
        4 => (any::<u16>(), any::<u16>()).prop_map(|(max, cut)| SessionOp::ToServer { max, cut }),
        4 => (any::<u16>(), any::<u16>()).prop_map(|(max, cut)| SessionOp::ToClient { max, cut }),
        2 => Just(SessionOp::Decide { accept: true }),
        2 => (0..4u8).prop_map(|sid| SessionOp::Room(0, sid)),
        2 => (1..6u8, 0..4u8).prop_map(|(kind, sid)| SessionOp::Room(kind, sid)),
        1 => any::<bool>().prop_map(SessionOp::ClientMute),
        1 => any::<u8>().prop_map(SessionOp::ClientChat),
        1 => Just(SessionOp::ClientAudio),
        1 => (0..4u8, 0..6u32).prop_map(|(sid, pkt)| SessionOp::ClientUdp { sid, pkt, valid: true }),
        2 => (0..3_000u32).prop_map(SessionOp::Advance),
    ]
}

/// A script: a stretch of a call going well, then anything at all.
fn script() -> impl Strategy<Value = Vec<SessionOp>> {
    (
        proptest::collection::vec(benign_op(), 0..30),
        proptest::collection::vec(session_op(), 0..30),
    )
        .prop_map(|(mut well, chaos)| {
            well.extend(chaos);
            well
        })
}

fn session_op() -> impl Strategy<Value = SessionOp> {
    prop_oneof![
        6 => (any::<u16>(), any::<u16>()).prop_map(|(max, cut)| SessionOp::ToServer { max, cut }),
        6 => (any::<u16>(), any::<u16>()).prop_map(|(max, cut)| SessionOp::ToClient { max, cut }),
        1 => (any::<bool>(), any::<u8>()).prop_map(|(to_server, index)| SessionOp::Replay { to_server, index }),
        1 => (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..12))
            .prop_map(|(to_server, bytes)| SessionOp::Garbage { to_server, bytes }),
        3 => any::<bool>().prop_map(|accept| SessionOp::Decide { accept }),
        3 => (0..7u8, 0..4u8).prop_map(|(kind, sid)| SessionOp::Room(kind, sid)),
        1 => any::<bool>().prop_map(SessionOp::ClientMute),
        1 => any::<u8>().prop_map(SessionOp::ClientChat),
        2 => Just(SessionOp::ClientAudio),
        2 => (0..4u8, 0..6u32, any::<bool>()).prop_map(|(sid, pkt, valid)| SessionOp::ClientUdp { sid, pkt, valid }),
        3 => prop_oneof![0..2_000u32, 9_000..12_000u32, 29_000..40_000u32].prop_map(SessionOp::Advance),
        1 => any::<bool>().prop_map(|server_side| SessionOp::CloseTcp { server_side }),
    ]
}

/// What one session machine has reported so far, to check its history is coherent.
#[derive(Debug, Default)]
struct Seen {
    closed: bool,
    events_after_close: usize,
    joined: usize,
    hellos: usize,
}

/// A client and a server session joined by byte queues the script delivers.
struct Link {
    now: Instant,
    client: ClientSession,
    server: ServerSession,
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    sent_to_server: Vec<Vec<u8>>,
    sent_to_client: Vec<Vec<u8>>,
    client_seen: Seen,
    server_seen: Seen,
    /// The hello arrived and the room has not answered yet.
    deciding: bool,
    /// The server session took the room's SID: the member has joined, and only now may it
    /// report mutes and chat.
    sid_sent: bool,
    server_keys: Option<SessionKeys>,
    /// Last PKT the client accepted from each peer SID.
    peer_pkts: BTreeMap<Sid, u32>,
}

impl Link {
    /// Drains both machines by their drain rules and checks what they report.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        while let Some(t) = self.client.poll_transmit() {
            match t {
                ClientTransmit::Tcp(bytes) => self.to_server.extend_from_slice(&bytes),
                ClientTransmit::Udp(d) => prop_assert!(!d.is_empty()),
            }
        }
        while let Some(bytes) = self.server.poll_transmit() {
            self.to_client.extend_from_slice(&bytes);
        }
        while let Some(event) = self.client.poll_event() {
            let seen = &mut self.client_seen;
            prop_assert!(!seen.closed, "client event after Closed: {event:?}");
            match event {
                ClientEvent::Closed(_) => seen.closed = true,
                ClientEvent::Joined(sid) => {
                    seen.joined += 1;
                    prop_assert_eq!(self.client.sid(), Some(sid));
                }
                // A new ADD for a SID starts its PKT afresh.
                ClientEvent::PeerAdded { sid, .. } | ClientEvent::PeerRemoved { sid, .. } => {
                    self.peer_pkts.remove(&sid);
                }
                _ => {}
            }
        }
        while let Some(event) = self.server.poll_event() {
            let seen = &mut self.server_seen;
            if seen.closed {
                seen.events_after_close += 1;
            }
            match event {
                ServerEvent::Closed(_) => seen.closed = true,
                // Screened as new at once: the relay's replay cache is not this test's concern.
                ServerEvent::Message1 { .. } => {
                    let opened = self
                        .server
                        .open_hello(self.now, WALL, &Freshness::default());
                    prop_assert_eq!(opened, Ok(()));
                }
                ServerEvent::Hello(hello) => {
                    seen.hellos += 1;
                    prop_assert_eq!(hello.username, "ann");
                    self.deciding = true;
                }
                ServerEvent::Muted | ServerEvent::Unmuted | ServerEvent::Chat(_) => {
                    prop_assert!(self.sid_sent, "a member event before the SID: {event:?}");
                }
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let (c, s) = (&self.client_seen, &self.server_seen);
        prop_assert_eq!(
            self.client.is_closed(),
            c.closed,
            "client: is_closed vs Closed event"
        );
        prop_assert_eq!(
            self.server.is_closed(),
            s.closed,
            "server: is_closed vs Closed event"
        );
        prop_assert_eq!(s.events_after_close, 0);
        prop_assert!(c.joined <= 1 && s.hellos <= 1);
        for (closed, timeout) in [
            (self.client.is_closed(), self.client.poll_timeout()),
            (self.server.is_closed(), self.server.poll_timeout()),
        ] {
            if closed {
                prop_assert_eq!(timeout, None, "a closed session wants no timer");
            } else {
                prop_assert!(timeout.is_some(), "an open session always has a deadline");
            }
        }
        if self.client.sid().is_some() {
            prop_assert!(!self.client.is_closed());
            prop_assert!(self.client.keys().is_some());
        }
        if let (Some(client), Some(server)) = (self.client.keys(), &self.server_keys) {
            prop_assert_eq!(client.to_wire(), server.to_wire());
        }
        Ok(())
    }

    fn deliver(&mut self, to_server: bool, max: u16, cut: u16) {
        let queue = if to_server {
            &mut self.to_server
        } else {
            &mut self.to_client
        };
        let n = usize::from(max).min(queue.len());
        let bytes: Vec<u8> = queue.drain(..n).collect();
        let (a, b) = bytes.split_at(usize::from(cut) % (n + 1));
        for piece in [a, b] {
            self.feed(to_server, piece);
        }
    }

    fn feed(&mut self, to_server: bool, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if to_server {
            self.sent_to_server.push(bytes.to_vec());
            self.server.handle_tcp(self.now, bytes);
        } else {
            self.sent_to_client.push(bytes.to_vec());
            self.client.handle_tcp(self.now, bytes);
        }
    }
}

fn run_sessions(ops: Vec<SessionOp>) -> Result<(), TestCaseError> {
    let (private, public) = generate_keypair().unwrap();
    let t0 = Instant::now();
    let hello = Hello {
        username: "ann",
        room: "r",
        password_hash: None,
    };
    let mut link = Link {
        now: t0,
        client: ClientSession::new(t0, WALL, &public, &hello).unwrap(),
        server: ServerSession::new(t0, &private),
        to_server: Vec::new(),
        to_client: Vec::new(),
        sent_to_server: Vec::new(),
        sent_to_client: Vec::new(),
        client_seen: Seen::default(),
        server_seen: Seen::default(),
        deciding: false,
        sid_sent: false,
        server_keys: None,
        peer_pkts: BTreeMap::new(),
    };
    link.drain()?;
    for op in ops {
        let now = link.now;
        let (client_was_closed, server_was_closed) =
            (link.client.is_closed(), link.server.is_closed());
        match op {
            SessionOp::ToServer { max, cut } => link.deliver(true, max, cut),
            SessionOp::ToClient { max, cut } => link.deliver(false, max, cut),
            SessionOp::Replay { to_server, index } => {
                let old = if to_server {
                    &link.sent_to_server
                } else {
                    &link.sent_to_client
                };
                if !old.is_empty() {
                    let piece = old[usize::from(index) % old.len()].clone();
                    link.feed(to_server, &piece);
                }
            }
            SessionOp::Garbage { to_server, bytes } => link.feed(to_server, &bytes),
            SessionOp::Decide { accept } => {
                let deciding = link.deciding && !link.server.is_closed();
                let result = if accept {
                    link.server
                        .accept(now, &[9; COOKIE_LEN])
                        .map(|k| link.server_keys = Some(k))
                } else {
                    link.server.reject(now, "room is full")
                };
                prop_assert_eq!(
                    result.is_ok(),
                    deciding,
                    "accept/reject only while deciding"
                );
                if deciding {
                    link.deciding = false;
                } else {
                    // A refused call changes nothing.
                    prop_assert_eq!(link.server.is_closed(), server_was_closed);
                }
            }
            SessionOp::Room(kind, sid) => {
                let sid = Sid(sid);
                let key = keys(sid.0).to_wire();
                let msg = match kind {
                    0 => Control::Sid(Sid(3)),
                    1 => Control::Add {
                        sid,
                        username: "bob",
                        key: &key,
                    },
                    2 => Control::Del(sid),
                    3 => Control::Muted(Some(sid)),
                    4 => Control::Unmuted(Some(sid)),
                    5 => Control::Chat {
                        sid: Some(sid),
                        msg: "hi",
                    },
                    _ => Control::Pong,
                };
                let result = link.server.send_control(now, &msg);
                if matches!(msg, Control::Sid(_)) && result.is_ok() {
                    link.sid_sent = true;
                }
                if link.server.is_closed() {
                    prop_assert_eq!(result, Err(moose_proto::vors::SessionError::Closed));
                }
            }
            SessionOp::ClientMute(muted) => {
                link.client.set_muted(now, muted);
                if !link.client.is_closed() {
                    prop_assert_eq!(link.client.is_muted(), muted);
                }
            }
            SessionOp::ClientChat(len) => {
                let msg = "c".repeat(usize::from(len));
                let result = link.client.send_chat(now, &msg);
                prop_assert_eq!(result.is_ok(), link.client.sid().is_some());
            }
            SessionOp::ClientAudio => {
                let sent = link.client.handle_audio_frame(now, Some(b"opus")).unwrap();
                prop_assert!(!sent || link.client.sid().is_some());
            }
            SessionOp::ClientUdp { sid, pkt, valid } => {
                let k = if valid { keys(sid) } else { keys(99) };
                let mut d = Vec::new();
                seal(&k, Sid(sid), pkt, pkt, b"opus", &mut d).unwrap();
                let mut opus = Vec::new();
                if let Some(r) = link.client.handle_datagram(now, &d, &mut opus) {
                    prop_assert!(valid, "a forged datagram was accepted");
                    prop_assert_eq!(&opus[..], b"opus");
                    let last = link.peer_pkts.insert(r.sid, r.pkt);
                    prop_assert!(last.is_none_or(|l| r.pkt > l), "PKT went back");
                }
            }
            SessionOp::Advance(ms) => link.now += Duration::from_millis(u64::from(ms)),
            SessionOp::CloseTcp { server_side } => {
                if server_side {
                    link.server.handle_tcp_closed(now);
                } else {
                    link.client.handle_tcp_closed(now);
                }
            }
        }
        link.drain()?;
        // The drain rule's last step: handle the timeout when it is due.
        let now = link.now;
        if link.client.poll_timeout().is_some_and(|t| t <= now) {
            link.client.handle_timeout(now);
        }
        if link.server.poll_timeout().is_some_and(|t| t <= now) {
            link.server.handle_timeout(now);
        }
        link.drain()?;
        prop_assert!(
            link.client.poll_timeout().is_none_or(|t| t > now),
            "client deadline in the past"
        );
        prop_assert!(
            link.server.poll_timeout().is_none_or(|t| t > now),
            "server deadline in the past"
        );
        prop_assert!(
            !client_was_closed || link.client.is_closed(),
            "a closed client reopened"
        );
        prop_assert!(
            !server_was_closed || link.server.is_closed(),
            "a closed server reopened"
        );
        link.check()?;
    }
    Ok(())
}

proptest! {
    // A real Noise handshake per case (X25519 and Kyber1024).
    #![proptest_config(config(128))]

    #[test]
    fn sessions_stay_coherent_under_any_script(
        ops in script(),
    ) {
        run_sessions(ops)?;
    }
}
