//! The cluster's two threads, and the handle the cores talk to them through.
//!
//! Redis never comes near a core's forwarding loop. A core sends a request (join, announce,
//! leave, mute, chat) down one channel and goes on; only a join waits, asynchronously, for its
//! answer. The **command thread** (`moose-cluster`) owns the registry connection: it runs the
//! requests' scripts in order, beats every [`HEARTBEAT_EVERY`], sweeps dead relays every
//! [`SWEEP_EVERY`], and when Redis was away, reconnects every [`RECONNECT_EVERY`] and restores
//! what this relay has ([`Mirror`]). The **inbox thread** (`moose-cluster-inbox`) reads this
//! relay's event stream, opens sealed records and chat, and hands each event to the core that
//! owns its room, on that core's own channel ([`CoreEvent`]).
//!
//! Failure is a state, not a wait: while Redis is unreachable, joins are refused at once
//! ([`JoinError::Unavailable`]), every other request only updates the mirror, and calls in
//! progress never notice (media does not pass through here).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use flume::{Receiver, RecvTimeoutError, Sender};
use moose_proto::cluster::seal::{
    MemberRecord, NONCE_LEN, open_chat, open_member, seal_chat, seal_member,
};
use moose_proto::cluster::{ClusterKey, ClusterKeys, RelayId, RoomId};
use moose_proto::vors::Sid;
use moose_proto::vors::keys::PASSWORD_HASH_LEN;
use tracing::{debug, error, info, warn};

use super::inbox::{EventKind, Inbox, InboxEvent};
use super::mirror::Mirror;
use super::registry::{JoinRequest, RedisEndpoint, Refusal, Registry, RegistryError, RoomView};
use super::stats::{ClusterState, ClusterStats};

/// How often the relay renews its liveness (its TTL is `registry::ALIVE_TTL`, 3 s).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How often the relay looks for dead relays. With the TTL this bounds how late a dead
/// relay's members get DEL: 3 s + 0.5 s + the inbox's delivery.
pub const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// How often the relay tries Redis again while it is unreachable.
pub const RECONNECT_EVERY: Duration = Duration::from_millis(250);
/// The ERR text of a join refused while Redis is unreachable. Message 2 has one length
/// whatever it says, so its reason holds at most `REPLY_REASON_LEN` (19) bytes: a longer text
/// reached clients cut short.
pub const UNAVAILABLE: &str = "cluster unavailable";
const _: () = assert!(UNAVAILABLE.len() <= moose_proto::vors::handshake::REPLY_REASON_LEN);

/// What the threads need to start.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// How to reach Redis (password included).
    pub redis: RedisEndpoint,
    /// Where the other relays send this relay's link datagrams.
    pub advertise: SocketAddr,
    pub key: ClusterKey,
    /// This relay's cores: its SID lanes.
    pub cores: usize,
    /// `--max-members`, the same on every relay.
    pub max_members: usize,
}

/// A member of another relay, its record opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMemberInfo {
    pub sid: Sid,
    pub relay: RelayId,
    /// The core of `relay` that owns the room: the first byte of link datagrams sent there.
    pub relay_core: u8,
    pub muted: bool,
    pub record: MemberRecord,
}

/// The others' side of a room: the relays hosting it (and their owner cores) and their
/// announced members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteView {
    pub hosts: Vec<(RelayId, u8)>,
    pub members: Vec<RemoteMemberInfo>,
}

/// What the cluster tells the core that owns a room (or every core, for [`CoreEvent::Relays`]).
#[derive(Debug, Clone, PartialEq)]
pub enum CoreEvent {
    /// A member of another relay was announced: ADD to the room's registered members.
    Add {
        room: RoomId,
        member: RemoteMemberInfo,
        /// The member's relay's link address, from Redis's relay table at the announcement:
        /// the core takes that relay's link datagrams (and sends it media) from now on, even if
        /// it registered after the last sweep (`CoreLink::vouch`).
        link: Option<SocketAddr>,
    },
    /// A member of another relay left: DEL.
    Del {
        room: RoomId,
        relay: RelayId,
        sid: Sid,
    },
    /// A member of another relay muted (true) or unmuted itself.
    Muted { room: RoomId, sid: Sid, muted: bool },
    /// A member of another relay said `msg`.
    Chat { room: RoomId, sid: Sid, msg: String },
    /// After a gap (Redis away, inbox reconnected): the whole remote side of the room, to
    /// replace what the core has (ADD what is new, DEL what is gone, MUTED what changed).
    Resync { room: RoomId, view: RemoteView },
    /// One of this relay's members can no longer be in its room (its place was taken while
    /// this relay was cut off): end its session.
    Evicted { room: RoomId, sid: Sid },
    /// The live relays and their link addresses changed (this one included).
    Relays(Arc<Vec<(RelayId, SocketAddr)>>),
}

/// A member admitted by the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub sid: Sid,
    /// The room's remote side when this relay starts hosting the room with this member.
    pub view: Option<RemoteView>,
}

/// Why a join was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinError {
    /// A cluster-wide rule refused it (the same reasons as a standalone room).
    Refused(Refusal),
    /// Redis cannot be reached: the member may try again (or another relay).
    Unavailable,
}

impl JoinError {
    /// The text of message 2's `["ERR", reason]`.
    pub fn reason(&self) -> &'static str {
        match self {
            JoinError::Refused(refusal) => refusal.reject().reason(),
            JoinError::Unavailable => UNAVAILABLE,
        }
    }
}

enum Request {
    Reserve {
        join: JoinRequest,
        reply: Sender<Result<Reservation, JoinError>>,
    },
    Announce {
        room: RoomId,
        sid: Sid,
        record: MemberRecord,
    },
    Leave {
        room: RoomId,
        sid: Sid,
    },
    Mute {
        room: RoomId,
        sid: Sid,
        muted: bool,
    },
    Chat {
        room: RoomId,
        sid: Sid,
        msg: String,
    },
    /// The inbox reconnected: send every room's remote side again.
    Resync,
    Stop {
        retire: bool,
        done: Sender<()>,
    },
}

/// What the cores hold: cheap to clone, `Send`, never blocks but in [`ClusterHandle::reserve`]
/// (which awaits).
#[derive(Debug, Clone)]
pub struct ClusterHandle {
    requests: Sender<Request>,
    keys: Arc<ClusterKeys>,
    me: RelayId,
    lanes: u8,
    max_members: usize,
    stats: Arc<ClusterStats>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Request::Reserve { .. } => "Reserve",
            Request::Announce { .. } => "Announce",
            Request::Leave { .. } => "Leave",
            Request::Mute { .. } => "Mute",
            Request::Chat { .. } => "Chat",
            Request::Resync => "Resync",
            Request::Stop { .. } => "Stop",
        })
    }
}

impl ClusterHandle {
    /// This relay.
    pub fn me(&self) -> RelayId {
        self.me
    }

    /// The keys derived from the cluster key (room ids, link tags).
    pub fn keys(&self) -> &ClusterKeys {
        &self.keys
    }

    /// The cluster id of the room called `name`.
    pub fn room_id(&self, name: &str) -> RoomId {
        self.keys.room_id(name)
    }

    /// The threads' figures (state, errors, ...).
    pub fn stats(&self) -> &ClusterStats {
        &self.stats
    }

    /// Asks the cluster to admit `username` to `room`, owned here by `core`, with the
    /// password field of its message 1; with `want_view`, the answer carries the room's view
    /// even if this relay hosts it already. Refused at once while Redis is unreachable.
    pub async fn reserve(
        &self,
        room: RoomId,
        core: u8,
        username: &str,
        password: Option<&[u8; PASSWORD_HASH_LEN]>,
        want_view: bool,
    ) -> Result<Reservation, JoinError> {
        if self.stats.state() != ClusterState::Up {
            self.stats.join_unavailable();
            return Err(JoinError::Unavailable);
        }
        let join = JoinRequest {
            room,
            core,
            lanes: self.lanes,
            max_members: self.max_members,
            tag: self.keys.name_tag(&room, username),
            verifier: self.keys.password_verifier(&room, password),
            want_view,
        };
        let (reply, answer) = flume::bounded(1);
        if self
            .requests
            .send(Request::Reserve { join, reply })
            .is_err()
        {
            return Err(JoinError::Unavailable);
        }
        answer
            .recv_async()
            .await
            .unwrap_or(Err(JoinError::Unavailable))
    }

    /// A reserved member registered its UDP address: the others get ADD.
    pub fn announce(&self, room: RoomId, sid: Sid, record: MemberRecord) {
        let _ = self.requests.send(Request::Announce { room, sid, record });
    }

    /// A member of this relay left (or was refused after its reservation).
    pub fn leave(&self, room: RoomId, sid: Sid) {
        let _ = self.requests.send(Request::Leave { room, sid });
    }

    /// A member of this relay muted (true) or unmuted itself.
    pub fn set_muted(&self, room: RoomId, sid: Sid, muted: bool) {
        let _ = self.requests.send(Request::Mute { room, sid, muted });
    }

    /// A member of this relay said `msg`.
    pub fn chat(&self, room: RoomId, sid: Sid, msg: &str) {
        let msg = msg.to_owned();
        let _ = self.requests.send(Request::Chat { room, sid, msg });
    }
}

/// The running cluster threads: the handle for the cores, each core's event channel, and
/// [`Cluster::stop`].
#[derive(Debug)]
pub struct Cluster {
    pub handle: ClusterHandle,
    /// Core `i` takes its events from `events[i]`.
    pub events: Vec<Receiver<CoreEvent>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Cluster {
    /// Ends the threads. With `retire`, the relay first leaves the cluster (its members get
    /// DEL everywhere at once, as at a clean stop); without, it simply falls silent, as a
    /// killed relay does, and the others sweep it after the TTL.
    pub fn stop(&mut self, retire: bool) {
        if self.threads.is_empty() {
            return;
        }
        let (done, finished) = flume::bounded(1);
        if self
            .handle
            .requests
            .send(Request::Stop { retire, done })
            .is_ok()
        {
            let _ = finished.recv_timeout(Duration::from_secs(5));
        }
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop(false);
    }
}

/// Starts the threads as a new relay of the cluster (a fresh random [`RelayId`]). Fails only
/// when Redis answers that the cluster uses another key ([`RegistryError::KeyMismatch`]); if
/// Redis cannot be reached, the relay starts unready and keeps trying.
pub fn start(config: ServiceConfig, stats: Arc<ClusterStats>) -> Result<Cluster, RegistryError> {
    let me = RelayId(rand::random());
    let keys = Arc::new(ClusterKeys::derive(&config.key));
    let (senders, events): (Vec<_>, Vec<_>) = (0..config.cores).map(|_| flume::unbounded()).unzip();
    let registry = match Registry::connect(&config.redis, me, config.advertise, &keys) {
        Ok(mut registry) => match registry.register() {
            Ok(()) => Some(registry),
            Err(RegistryError::KeyMismatch) => return Err(RegistryError::KeyMismatch),
            Err(e) => {
                warn!(error = %e, "cluster: Redis refused the registration; retrying");
                None
            }
        },
        Err(e) => {
            warn!(error = %e, "cluster: Redis unreachable at start; retrying");
            None
        }
    };
    stats.set_state(if registry.is_some() {
        ClusterState::Up
    } else {
        ClusterState::Down
    });
    info!(relay = %me, link = %config.advertise, up = registry.is_some(), "cluster: relay started");
    let (requests, inbox_requests) = flume::unbounded();
    let stop = Arc::new(AtomicBool::new(false));
    let lanes = u8::try_from(config.cores).unwrap_or(u8::MAX);
    let handle = ClusterHandle {
        requests: requests.clone(),
        keys: keys.clone(),
        me,
        lanes,
        max_members: config.max_members,
        stats: stats.clone(),
    };
    let commander = Commander {
        redis: config.redis.clone(),
        me,
        advertise: config.advertise,
        keys: keys.clone(),
        registry,
        mirror: Mirror::default(),
        stats: stats.clone(),
        cores: senders.clone(),
        live: Vec::new(),
        max_members: config.max_members,
        key_warned: false,
    };
    let reader = Reader {
        redis: config.redis,
        me,
        keys,
        stats,
        cores: senders,
        requests,
        stop: stop.clone(),
    };
    let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
        thread::Builder::new()
            .name(name.to_owned())
            .spawn(body)
            .map_err(|e| RegistryError::Redis(redis::RedisError::from(e)))
    };
    let threads = vec![
        spawn(
            "moose-cluster",
            Box::new(move || commander.run(&inbox_requests)),
        )?,
        spawn("moose-cluster-inbox", Box::new(move || reader.run()))?,
    ];
    Ok(Cluster {
        handle,
        events,
        stop,
        threads,
    })
}

/// The command thread's state.
struct Commander {
    redis: RedisEndpoint,
    me: RelayId,
    advertise: SocketAddr,
    keys: Arc<ClusterKeys>,
    /// `None` while Redis is unreachable.
    registry: Option<Registry>,
    mirror: Mirror,
    stats: Arc<ClusterStats>,
    cores: Vec<Sender<CoreEvent>>,
    /// The live relays at the last sweep, sorted.
    live: Vec<(RelayId, SocketAddr)>,
    max_members: usize,
    /// A key mismatch is logged once per outage, not every retry.
    key_warned: bool,
}

impl Commander {
    fn run(mut self, requests: &Receiver<Request>) {
        let mut next_beat = Instant::now() + HEARTBEAT_EVERY;
        let mut next_sweep = Instant::now();
        let mut next_reconnect = Instant::now() + RECONNECT_EVERY;
        loop {
            let now = Instant::now();
            let wake = if self.registry.is_some() {
                next_beat.min(next_sweep)
            } else {
                next_reconnect
            };
            match requests.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(Request::Stop { retire, done }) => {
                    let registry = if retire { self.registry.as_mut() } else { None };
                    if let Some(registry) = registry {
                        match registry.retire() {
                            Ok(()) => info!(relay = %self.me, "cluster: relay retired"),
                            Err(e) => warn!(error = %e, "cluster: retiring failed"),
                        }
                    }
                    let _ = done.send(());
                    return;
                }
                Ok(request) => self.handle(request),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if self.registry.is_none() {
                if now >= next_reconnect {
                    self.reconnect();
                    next_reconnect = Instant::now() + RECONNECT_EVERY;
                    next_sweep = Instant::now();
                }
                continue;
            }
            if now >= next_beat {
                next_beat = now + HEARTBEAT_EVERY;
                self.call(|r| r.heartbeat());
            }
            if now >= next_sweep {
                next_sweep = now + SWEEP_EVERY;
                self.sweep();
            }
        }
    }

    /// Runs `f` on the registry, if Redis is reachable; a Redis failure makes the relay
    /// unready, a lost registration makes it register again.
    fn call<T>(&mut self, f: impl FnOnce(&mut Registry) -> Result<T, RegistryError>) -> Option<T> {
        let registry = self.registry.as_mut()?;
        match f(registry) {
            Ok(value) => Some(value),
            Err(RegistryError::Gone) => {
                warn!(relay = %self.me, "cluster: this relay was dropped from Redis; registering again");
                self.restore();
                None
            }
            Err(RegistryError::KeyMismatch) => {
                self.key_mismatch();
                None
            }
            Err(e) => {
                self.down(&e);
                None
            }
        }
    }

    /// Redis now holds another key's check value (it was emptied, and a relay with another
    /// key registered first): this relay cannot serve the cluster; it says so once and stays
    /// down, trying again.
    fn key_mismatch(&mut self) {
        if !std::mem::replace(&mut self.key_warned, true) {
            error!("cluster: {}", RegistryError::KeyMismatch);
        }
        self.registry = None;
        self.stats.set_state(ClusterState::Down);
    }

    fn down(&mut self, e: &RegistryError) {
        self.stats.redis_error();
        if self.registry.take().is_some() {
            warn!(error = %e, "cluster: Redis unreachable; calls go on, joins are refused");
        }
        self.stats.set_state(ClusterState::Down);
    }

    fn reconnect(&mut self) {
        match Registry::connect(&self.redis, self.me, self.advertise, &self.keys) {
            Ok(registry) => {
                self.registry = Some(registry);
                self.restore();
            }
            Err(e) => {
                self.stats.redis_error();
                debug!(error = %e, "cluster: Redis still unreachable");
            }
        }
    }

    /// Registers again and makes Redis hold what this relay has, room by room; then sends
    /// each room's remote side to its core. On any failure, the relay stays down.
    fn restore(&mut self) {
        self.stats.set_state(ClusterState::Restoring);
        let Some(registry) = self.registry.as_mut() else {
            return;
        };
        let restored = (|| -> Result<usize, RegistryError> {
            registry.register()?;
            let mut rooms: Vec<RoomId> = self.mirror.rooms().map(|(id, _)| *id).collect();
            for hosted in registry.hosted_rooms()? {
                if !rooms.contains(&hosted) {
                    rooms.push(hosted);
                }
            }
            let mut evicted = Vec::new();
            for room in &rooms {
                let Some(mine) = self.mirror.room(*room) else {
                    // Redis still has members here that this relay no longer has.
                    let none = moose_proto::cluster::PasswordVerifier([0; 16]);
                    registry.reconcile(*room, 0, none, self.max_members, &[])?;
                    continue;
                };
                let members: Vec<_> = mine.members.values().cloned().collect();
                let out = registry.reconcile(
                    *room,
                    mine.core,
                    mine.verifier,
                    self.max_members,
                    &members,
                )?;
                evicted.extend(out.into_iter().map(|sid| (*room, mine.core, sid)));
            }
            for (room, core, sid) in evicted {
                self.mirror.left(room, sid);
                warn!(%room, sid = sid.0, "cluster: member evicted on re-registration");
                self.stats.evicted();
                send(&self.cores, core, CoreEvent::Evicted { room, sid });
            }
            Ok(rooms.len())
        })();
        match restored {
            Ok(rooms) => {
                self.key_warned = false;
                self.stats.reregistered();
                self.stats.set_state(ClusterState::Up);
                info!(relay = %self.me, rooms, members = self.mirror.members(), "cluster: registered again");
                self.resync();
                self.sweep();
            }
            Err(RegistryError::KeyMismatch) => self.key_mismatch(),
            Err(e) => self.down(&e),
        }
    }

    /// Sends every room's remote side to its core.
    fn resync(&mut self) {
        let rooms: Vec<(RoomId, u8)> = self.mirror.rooms().map(|(id, r)| (*id, r.core)).collect();
        for (room, core) in rooms {
            let Some(view) = self.call(|r| r.snapshot(room)) else {
                return;
            };
            let view = open_view(&self.keys, &self.stats, room, view);
            send(&self.cores, core, CoreEvent::Resync { room, view });
        }
    }

    fn sweep(&mut self) {
        let Some(sweep) = self.call(|r| r.sweep()) else {
            return;
        };
        if !sweep.swept.is_empty() {
            self.stats.swept(sweep.swept.len() as u64);
            info!(swept = ?sweep.swept, "cluster: dead relays removed");
        }
        let mut live = sweep.live;
        live.sort_unstable();
        self.stats.set_relays(live.len() as u64);
        if live != self.live {
            self.live.clone_from(&live);
            let table = Arc::new(live);
            for core in &self.cores {
                let _ = core.send(CoreEvent::Relays(table.clone()));
            }
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Reserve { join, reply } => {
                let answer = match self.call(|r| r.reserve(&join)) {
                    Some(Ok(reserved)) => {
                        self.mirror.reserved(
                            join.room,
                            join.core,
                            join.verifier,
                            reserved.sid,
                            join.tag,
                        );
                        Ok(Reservation {
                            sid: reserved.sid,
                            view: reserved
                                .view
                                .map(|v| open_view(&self.keys, &self.stats, join.room, v)),
                        })
                    }
                    Some(Err(refusal)) => Err(JoinError::Refused(refusal)),
                    None => {
                        self.stats.join_unavailable();
                        Err(JoinError::Unavailable)
                    }
                };
                let gone = reply.send(answer.clone()).is_err();
                // The member's connection went while it waited: give its place back.
                if let (true, Ok(reservation)) = (gone, answer) {
                    self.mirror.left(join.room, reservation.sid);
                    self.call(|r| r.leave(join.room, reservation.sid));
                }
            }
            Request::Announce { room, sid, record } => {
                let nonce: [u8; NONCE_LEN] = rand::random();
                let Ok(sealed) = seal_member(self.keys.seal(), &room, sid, &record, nonce) else {
                    return;
                };
                if self.mirror.announced(room, sid, sealed.clone()) {
                    self.call(|r| r.announce(room, sid, &sealed));
                }
            }
            Request::Leave { room, sid } => {
                if self.mirror.left(room, sid) {
                    self.call(|r| r.leave(room, sid));
                }
            }
            Request::Mute { room, sid, muted } => {
                if self.mirror.muted(room, sid, muted) {
                    self.call(|r| r.set_muted(room, sid, muted));
                }
            }
            Request::Chat { room, sid, msg } => {
                if !self.mirror.is_announced(room, sid) {
                    return;
                }
                let nonce: [u8; NONCE_LEN] = rand::random();
                if let Ok(sealed) = seal_chat(self.keys.seal(), &room, sid, &msg, nonce) {
                    self.call(|r| r.chat(room, sid, &sealed));
                }
            }
            Request::Resync => self.resync(),
            Request::Stop { .. } => {}
        }
    }
}

/// Gives `event` to core `core`'s channel (a core that is gone has nothing to do with it).
fn send(cores: &[Sender<CoreEvent>], core: u8, event: CoreEvent) {
    if let Some(channel) = cores.get(usize::from(core)) {
        let _ = channel.send(event);
    }
}

/// Opens every record of a view; a record that does not open is left out and counted.
fn open_view(keys: &ClusterKeys, stats: &ClusterStats, room: RoomId, view: RoomView) -> RemoteView {
    let members = view
        .members
        .into_iter()
        .filter_map(|m| {
            let relay_core = view.hosts.iter().find(|(r, _)| *r == m.relay).map(|(_, c)| *c)?;
            match open_member(keys.seal(), &room, m.sid, &m.sealed) {
                Ok(record) => Some(RemoteMemberInfo {
                    sid: m.sid,
                    relay: m.relay,
                    relay_core,
                    muted: m.muted,
                    record,
                }),
                Err(e) => {
                    stats.event_dropped();
                    warn!(%room, sid = m.sid.0, error = %e, "cluster: a member record did not open");
                    None
                }
            }
        })
        .collect();
    RemoteView {
        hosts: view.hosts,
        members,
    }
}

/// The inbox thread's state.
struct Reader {
    redis: RedisEndpoint,
    me: RelayId,
    keys: Arc<ClusterKeys>,
    stats: Arc<ClusterStats>,
    cores: Vec<Sender<CoreEvent>>,
    requests: Sender<Request>,
    stop: Arc<AtomicBool>,
}

impl Reader {
    fn run(self) {
        let mut inbox: Option<Inbox> = None;
        let mut broken = false;
        while !self.stop.load(Ordering::Relaxed) {
            let Some(reader) = inbox.as_mut() else {
                match Inbox::open(&self.redis, self.me) {
                    Ok(opened) => inbox = Some(opened),
                    Err(_) => {
                        self.stats.redis_error();
                        thread::sleep(RECONNECT_EVERY);
                    }
                }
                continue;
            };
            if broken {
                match reader.reconnect(&self.redis) {
                    Ok(()) => {
                        broken = false;
                        // Events may have been missed; the command thread sends snapshots.
                        let _ = self.requests.send(Request::Resync);
                    }
                    Err(_) => thread::sleep(RECONNECT_EVERY),
                }
                continue;
            }
            match reader.read() {
                Ok(events) => {
                    for event in events {
                        self.deliver(event);
                    }
                }
                Err(e) => {
                    self.stats.redis_error();
                    debug!(error = %e, "cluster: inbox read failed");
                    broken = true;
                }
            }
        }
    }

    fn deliver(&self, event: Result<InboxEvent, ()>) {
        let Ok(InboxEvent {
            room,
            core,
            from,
            kind,
        }) = event
        else {
            self.stats.event_dropped();
            return;
        };
        if from == self.me || usize::from(core) >= self.cores.len() {
            self.stats.event_dropped();
            return;
        }
        self.stats.event_in();
        let event = match kind {
            EventKind::Add {
                sid,
                origin_core,
                muted,
                sealed,
                link,
            } => match open_member(self.keys.seal(), &room, sid, &sealed) {
                Ok(record) => CoreEvent::Add {
                    room,
                    member: RemoteMemberInfo {
                        sid,
                        relay: from,
                        relay_core: origin_core,
                        muted,
                        record,
                    },
                    link,
                },
                Err(e) => {
                    self.stats.event_dropped();
                    warn!(%room, sid = sid.0, error = %e, "cluster: an ADD record did not open");
                    return;
                }
            },
            EventKind::Del { sid } => CoreEvent::Del {
                room,
                relay: from,
                sid,
            },
            EventKind::Muted { sid, muted } => CoreEvent::Muted { room, sid, muted },
            EventKind::Chat { sid, sealed } => {
                match open_chat(self.keys.seal(), &room, sid, &sealed) {
                    Ok(msg) => CoreEvent::Chat { room, sid, msg },
                    Err(_) => {
                        self.stats.event_dropped();
                        return;
                    }
                }
            }
        };
        send(&self.cores, core, event);
    }
}
