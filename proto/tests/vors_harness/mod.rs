//! A deterministic VoRS network for the session machines: client sessions, their server
//! sessions and one room, wired by in-memory queues, with simulated time and seeded loss,
//! delay and reordering of UDP datagrams. TCP is reliable and in order, but every write is
//! cut into random pieces so the stream decoders see partial frames.
//!
//! The glue between server sessions and the room is the relay's job in production; here it
//! follows the documented drain rules, so the tests also show how to wire the relay.
#![allow(dead_code)] // Each scenario file uses a different part of the harness.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use moose_proto::vors::Sid;
use moose_proto::vors::client::{
    ClientEvent, ClientSession, ClientTransmit, FRAME_DURATION, Received,
};
use moose_proto::vors::freshness::{Freshness, UnixTime};
use moose_proto::vors::handshake::{KEY_LEN, generate_keypair};
use moose_proto::vors::hello::Hello;
use moose_proto::vors::keys::password_field;
use moose_proto::vors::room::{EdgeVerdict, Room, RoomConfig};
use moose_proto::vors::server::{ServerCloseReason, ServerEvent, ServerSession};

/// The simulation step.
pub(crate) const TICK: Duration = Duration::from_millis(5);
/// The wall clock at the start of simulated time, on the clients and the relay alike.
const WALL_AT_T0: UnixTime = UnixTime(1_800_000_000);
/// How often the room pauses its silent members, as the relay does.
const SWEEP: Duration = Duration::from_secs(1);

/// xorshift64*: small, seeded, and the same on every machine.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }
}

/// UDP conditions, per direction.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Link {
    /// Probability that a datagram is lost.
    pub(crate) loss: f64,
    /// Fixed one-way delay.
    pub(crate) delay: Duration,
    /// Extra delay, uniform in `0..=jitter`; with jitter above 20 ms packets overtake.
    pub(crate) jitter: Duration,
}

/// One participant: the client's session, and the relay's session for its connection.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) client: ClientSession,
    pub(crate) server: ServerSession,
    pub(crate) addr: SocketAddr,
    /// The SID the room gave it (relay side).
    pub(crate) sid: Option<Sid>,
    /// When the relay accepted it (message 2 queued).
    pub(crate) accepted_at: Option<Instant>,
    /// Everything the client reported, with the time.
    pub(crate) events: Vec<(Instant, ClientEvent)>,
    /// How the relay's session ended, and when.
    pub(crate) server_closed: Option<(Instant, ServerCloseReason)>,
    /// Media accepted by the client, with the Opus bytes.
    pub(crate) received: Vec<(Received, Vec<u8>)>,
    /// A frozen client is a crashed program: nothing is fed to it, it sends nothing.
    pub(crate) frozen: bool,
    /// Whether it produces a 20 ms frame every 20 ms once joined.
    pub(crate) speaking: bool,
    /// Frames produced so far (the Opus payload names the member and the frame).
    pub(crate) frames_made: u32,
    /// Media datagrams it sent, in order.
    pub(crate) sent_media: Vec<Vec<u8>>,
    tcp_closed_for_client: bool,
}

impl Member {
    pub(crate) fn joined_sid(&self) -> Option<Sid> {
        self.events.iter().find_map(|(_, e)| match e {
            ClientEvent::Joined(sid) => Some(*sid),
            _ => None,
        })
    }

    pub(crate) fn client_events(&self) -> impl Iterator<Item = &ClientEvent> {
        self.events.iter().map(|(_, e)| e)
    }
}

#[derive(Debug)]
struct Flight {
    at: Instant,
    seq: u64,
    member: usize,
    bytes: Vec<u8>,
}

/// The whole network.
#[derive(Debug)]
pub(crate) struct Sim {
    pub(crate) t0: Instant,
    pub(crate) now: Instant,
    pub(crate) rng: Rng,
    pub(crate) up: Link,
    pub(crate) down: Link,
    pub(crate) room: Room,
    pub(crate) members: Vec<Member>,
    /// Every edge verdict, in order.
    pub(crate) verdicts: Vec<EdgeVerdict>,
    /// The client ephemeral keys of every message 1 the relay has screened: its replay
    /// cache, which never forgets in a simulation this short.
    seen_ephemerals: HashSet<[u8; KEY_LEN]>,
    server_private: [u8; KEY_LEN],
    server_public: [u8; KEY_LEN],
    to_relay: Vec<Flight>,
    to_clients: Vec<Flight>,
    seq: u64,
    next_frame: Instant,
    /// When the room next pauses its silent members (every second, as the relay does).
    next_sweep: Instant,
}

impl Sim {
    pub(crate) fn new(seed: u64, config: RoomConfig) -> Self {
        let (server_private, server_public) = generate_keypair().unwrap();
        // The only clock read: the base of simulated time.
        let t0 = Instant::now();
        Sim {
            t0,
            now: t0,
            rng: Rng::new(seed),
            up: Link {
                delay: Duration::from_millis(10),
                ..Link::default()
            },
            down: Link {
                delay: Duration::from_millis(10),
                ..Link::default()
            },
            room: Room::new("lobby", config),
            members: Vec::new(),
            verdicts: Vec::new(),
            seen_ephemerals: HashSet::new(),
            server_private,
            server_public,
            to_relay: Vec::new(),
            to_clients: Vec::new(),
            seq: 0,
            next_frame: t0,
            next_sweep: t0 + SWEEP,
        }
    }

    /// Seconds since the start, for messages.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// The wall clock now, in simulated time.
    pub(crate) fn wall(&self) -> UnixTime {
        UnixTime(WALL_AT_T0.0 + self.elapsed().as_secs())
    }

    /// A new client connects now; returns its index.
    pub(crate) fn connect(&mut self, name: &str, password: &str) -> usize {
        let hash = password_field(password);
        let hello = Hello {
            username: name,
            room: "lobby",
            password_hash: hash.as_ref(),
        };
        let client =
            ClientSession::new(self.now, self.wall(), &self.server_public, &hello).unwrap();
        let server = ServerSession::new(self.now, &self.server_private);
        let index = self.members.len();
        self.members.push(Member {
            name: name.to_owned(),
            client,
            server,
            addr: SocketAddr::from(([203, 0, 113, 1], 40000 + index as u16)),
            sid: None,
            accepted_at: None,
            events: Vec::new(),
            server_closed: None,
            received: Vec::new(),
            frozen: false,
            speaking: false,
            frames_made: 0,
            sent_media: Vec::new(),
            tcp_closed_for_client: false,
        });
        self.pump();
        index
    }

    /// Advances simulated time by `d`, tick by tick.
    pub(crate) fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += TICK;
            self.step();
        }
    }

    /// Advances until `done` holds, at most `limit`; returns whether it held.
    pub(crate) fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.now += TICK;
            self.step();
        }
        done(self)
    }

    /// Sends a datagram to the relay as if from `from` (forgeries, replays).
    pub(crate) fn inject_to_relay(&mut self, from: SocketAddr, bytes: &[u8]) -> EdgeVerdict {
        let verdict = self.room.verify_datagram(self.now, from, bytes);
        self.verdicts.push(verdict);
        self.pump();
        verdict
    }

    /// Delivers a datagram straight to member `to`'s client (a replay by the network).
    pub(crate) fn inject_to_client(&mut self, to: usize, bytes: &[u8]) -> Option<Received> {
        let mut opus = Vec::new();
        let got = self.members[to]
            .client
            .handle_datagram(self.now, bytes, &mut opus);
        if let Some(r) = got {
            self.members[to].received.push((r, opus));
        }
        got
    }

    fn step(&mut self) {
        let now = self.now;
        for flight in take_due(&mut self.to_relay, now) {
            let from = self.members[flight.member].addr;
            let verdict = self.room.verify_datagram(now, from, &flight.bytes);
            self.verdicts.push(verdict);
            if let EdgeVerdict::Forward { recipients, .. } = verdict {
                for sid in recipients {
                    let to = self
                        .members
                        .iter()
                        .position(|m| m.sid == Some(sid))
                        .unwrap();
                    self.send_down(to, flight.bytes.clone());
                }
            }
        }
        for flight in take_due(&mut self.to_clients, now) {
            let member = &mut self.members[flight.member];
            if member.frozen || member.client.is_closed() {
                continue;
            }
            let mut opus = Vec::new();
            if let Some(r) = member.client.handle_datagram(now, &flight.bytes, &mut opus) {
                member.received.push((r, opus));
            }
        }
        for member in &mut self.members {
            if !member.frozen && member.client.poll_timeout().is_some_and(|t| t <= now) {
                member.client.handle_timeout(now);
            }
            if member.server.poll_timeout().is_some_and(|t| t <= now) {
                member.server.handle_timeout(now);
            }
        }
        if now >= self.next_sweep {
            self.next_sweep += SWEEP;
            self.room.sweep_silent(now);
        }
        if now >= self.next_frame {
            self.next_frame += FRAME_DURATION;
            for (i, member) in self.members.iter_mut().enumerate() {
                if member.speaking && !member.frozen && member.client.sid().is_some() {
                    let opus = format!("m{i}f{}", member.frames_made);
                    member.frames_made += 1;
                    member
                        .client
                        .handle_audio_frame(now, Some(opus.as_bytes()))
                        .unwrap();
                }
            }
        }
        self.pump();
    }

    fn send_up(&mut self, member: usize, bytes: Vec<u8>) {
        if self.rng.chance(self.up.loss) {
            return;
        }
        let at = self.now + self.up.delay + jitter(&mut self.rng, self.up.jitter);
        self.seq += 1;
        self.to_relay.push(Flight {
            at,
            seq: self.seq,
            member,
            bytes,
        });
    }

    fn send_down(&mut self, member: usize, bytes: Vec<u8>) {
        if self.rng.chance(self.down.loss) {
            return;
        }
        let at = self.now + self.down.delay + jitter(&mut self.rng, self.down.jitter);
        self.seq += 1;
        self.to_clients.push(Flight {
            at,
            seq: self.seq,
            member,
            bytes,
        });
    }

    /// Runs every session and the room until nothing moves (the drain rules, applied).
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.members.len() {
                moved |= self.pump_client(i);
                moved |= self.pump_server(i);
            }
            while let Some((to, msg)) = self.room.poll_message() {
                moved = true;
                let now = self.now;
                if let Some(member) = self.members.iter_mut().find(|m| m.sid == Some(to)) {
                    // A session closing in the same instant may refuse; the room hears of it next.
                    let _ = member.server.send_control(now, &msg.as_control());
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn pump_client(&mut self, i: usize) -> bool {
        let now = self.now;
        let mut moved = false;
        if self.members[i].frozen {
            return false;
        }
        while let Some(t) = self.members[i].client.poll_transmit() {
            moved = true;
            match t {
                ClientTransmit::Tcp(bytes) => {
                    let pieces = split(&mut self.rng, &bytes);
                    for piece in pieces {
                        self.members[i].server.handle_tcp(now, piece);
                    }
                }
                ClientTransmit::Udp(bytes) => {
                    // Cookies are 16 bytes and keepalives 1; the test payloads make longer media.
                    if bytes.len() > 16 {
                        self.members[i].sent_media.push(bytes.clone());
                    }
                    self.send_up(i, bytes);
                }
            }
        }
        let member = &mut self.members[i];
        while let Some(event) = member.client.poll_event() {
            moved = true;
            member.events.push((now, event));
        }
        moved
    }

    fn pump_server(&mut self, i: usize) -> bool {
        let now = self.now;
        let mut moved = false;
        while let Some(bytes) = self.members[i].server.poll_transmit() {
            moved = true;
            if self.members[i].frozen {
                continue;
            }
            for piece in split(&mut self.rng, &bytes) {
                self.members[i].client.handle_tcp(now, piece);
            }
        }
        while let Some(event) = self.members[i].server.poll_event() {
            moved = true;
            match event {
                // The relay's screening: a key seen before is a replay.
                ServerEvent::Message1 { ephemeral } => {
                    let wall = self.wall();
                    let server = &mut self.members[i].server;
                    if self.seen_ephemerals.insert(ephemeral) {
                        server.open_hello(now, wall, &Freshness::default()).unwrap();
                    } else {
                        server.refuse_replayed().unwrap();
                    }
                }
                ServerEvent::Hello(hello) => {
                    let cookie: [u8; 16] = std::array::from_fn(|_| self.rng.next_u64() as u8);
                    let hash = hello.password_hash.as_ref();
                    match self.room.join(&hello.username, hash, cookie) {
                        Ok(sid) => {
                            let member = &mut self.members[i];
                            let keys = member.server.accept(now, &cookie).unwrap();
                            self.room.set_keys(sid, keys, member.addr.ip());
                            member.sid = Some(sid);
                            member.accepted_at = Some(now);
                        }
                        Err(reject) => self.members[i].server.reject(now, reject.reason()).unwrap(),
                    }
                }
                ServerEvent::Muted | ServerEvent::Unmuted => {
                    let sid = self.members[i].sid.unwrap();
                    self.room.set_muted(sid, event == ServerEvent::Muted);
                }
                ServerEvent::Chat(msg) => {
                    let sid = self.members[i].sid.unwrap();
                    self.room.chat(sid, &msg);
                }
                ServerEvent::Closed(reason) => {
                    let member = &mut self.members[i];
                    member.server_closed = Some((now, reason));
                    if let Some(sid) = member.sid.take() {
                        self.room.leave(sid);
                    }
                }
            }
        }
        let member = &mut self.members[i];
        if member.server.is_closed() && !member.tcp_closed_for_client {
            // Flush first: a refusal's message 2 is queued together with the close.
            while let Some(bytes) = member.server.poll_transmit() {
                if !member.frozen {
                    member.client.handle_tcp(now, &bytes);
                }
            }
            // The relay closes the connection after flushing; the client sees EOF.
            member.tcp_closed_for_client = true;
            if !member.frozen {
                member.client.handle_tcp_closed(now);
            }
            moved = true;
        }
        moved
    }
}

fn jitter(rng: &mut Rng, max: Duration) -> Duration {
    let max_us = max.as_micros() as u64;
    if max_us == 0 {
        Duration::ZERO
    } else {
        Duration::from_micros(rng.below(max_us + 1))
    }
}

/// Cuts a TCP write into 1..=4 pieces at random points.
fn split<'a>(rng: &mut Rng, bytes: &'a [u8]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut rest = bytes;
    for _ in 0..3 {
        if rest.len() < 2 || rng.chance(0.5) {
            break;
        }
        let cut = 1 + rng.below(rest.len() as u64 - 1) as usize;
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    pieces.push(rest);
    pieces
}

/// The flights due at `now`, in arrival order (ties in sending order).
fn take_due(flights: &mut Vec<Flight>, now: Instant) -> Vec<Flight> {
    let (mut due, later): (Vec<_>, Vec<_>) = flights.drain(..).partition(|f| f.at <= now);
    *flights = later;
    due.sort_by_key(|f| (f.at, f.seq));
    due
}

/// The client events of one kind, for assertions.
pub(crate) fn added(member: &Member) -> Vec<String> {
    member
        .client_events()
        .filter_map(|e| match e {
            ClientEvent::PeerAdded { username, .. } => Some(username.clone()),
            _ => None,
        })
        .collect()
}

/// Names the client saw leave.
pub(crate) fn removed(member: &Member) -> Vec<String> {
    member
        .client_events()
        .filter_map(|e| match e {
            ClientEvent::PeerRemoved { username, .. } => Some(username.clone()),
            _ => None,
        })
        .collect()
}
