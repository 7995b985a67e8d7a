//! VoRS streams: each a full VoRS v4 member (TCP, `VoRS v4` magic, Noise NKhfs through
//! `moose_proto`'s client session machine, cookie, keepalives, PINGs) sending one
//! Opus-sized packet every 20 ms, sealed exactly as `moose_proto::vors::packet` seals them.
//!
//! The session machine does the handshake and the timers, and opens received packets with
//! the sender's key from ADD. Sending bypasses its `handle_audio_frame` only to reuse one
//! buffer per worker instead of a fresh `Vec` per packet: the packet is the same
//! (`packet::seal` under the session's keys and SID, PKT from 1, FRAME from 0).
//!
//! Against `moose-baseline` (a plain UDP forwarder) there is no handshake: each stream has
//! random keys and its place in its room as SID, and receivers know the senders' keys from
//! the bench's own table.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::{Arc, Mutex};

use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use moose_proto::vors::Sid;
use moose_proto::vors::client::{ClientEvent, ClientSession, ClientTransmit, FIRST_PKT};
use moose_proto::vors::hello::Hello;
use moose_proto::vors::keys::SessionKeys;
use moose_proto::vors::packet::{self, MAX_MEDIA_LEN, MAX_OPUS_LEN};

use super::outbuf::OutBuf;
use super::spread::Spread;
use super::stamp::{self, opus_len};
use super::tally::{Inbox, Tally};
use super::{Endpoint, LoadError, Protocol, WorkerSetup, fd_hint, refusal};
use crate::bind;

/// Handshakes in flight per worker: enough to join quickly, few enough not to overrun the
/// server's accept queue or its Kyber work.
const MAX_JOINING: usize = 32;
/// How often session timers are looked at.
const TIMER_CHECK_NS: u64 = 5_000_000;
/// Keepalive interval against the baseline (the session machine keeps its own otherwise).
const KEEPALIVE_NS: u64 = 1_000_000_000;
/// Longest Opus payload the bench makes (80 bytes) rounded up.
const PLAIN_LEN: usize = 96;

/// How a stream reaches its room.
enum Link {
    /// A VoRS server: the session machine over TCP, and which stream each SID is.
    Server {
        tcp: TcpStream,
        connected: bool,
        session: Box<ClientSession>,
        out: OutBuf,
        sid_stream: Box<[u32; 256]>,
        next_timer: Option<std::time::Instant>,
        /// Streams of the run that leave from this stream's source address, for the error
        /// when the server ends the handshake (its per-address limits).
        sharing: usize,
    },
    /// The baseline forwarder: keys known to everyone, keepalive by hand.
    Baseline { next_keepalive_ns: u64 },
}

struct Member {
    index: usize,
    udp: UdpSocket,
    link: Link,
    sid: Option<Sid>,
    keys: Option<SessionKeys>,
    pkt: u32,
    frame: u32,
    seq: u32,
    plain: [u8; PLAIN_LEN],
    inbox: Inbox,
    ready: bool,
    /// With several targets: the room mates on this member's relay and on others, which
    /// each of its messages should reach.
    relay_peers: Option<(u64, u64)>,
}

/// Where one stream connects, and the local address it leaves from.
#[derive(Debug, Clone, Copy)]
struct Source {
    addr: SocketAddr,
    bind: Option<IpAddr>,
    /// Streams of the run that leave from `bind` (or the default address).
    sharing: usize,
}

/// What a worker needs to start its streams.
enum Target {
    Server {
        spread: Spread,
        /// The public key of each target, in `spread`'s order.
        pubkeys: Vec<[u8; 32]>,
        room_prefix: String,
        binds: Vec<IpAddr>,
    },
    Baseline {
        keys: Arc<Vec<SessionKeys>>,
    },
}

pub(super) fn worker(setup: WorkerSetup, endpoint: &Mutex<Endpoint>) -> Result<Tally, LoadError> {
    let mut baseline_sockets = Vec::new();
    let target = match &mut *endpoint
        .lock()
        .map_err(|_| LoadError::Plan("endpoint poisoned".into()))?
    {
        Endpoint::Vors {
            targets,
            pubkeys,
            room_prefix,
            binds,
            place,
        } => Target::Server {
            spread: Spread::new(targets.clone(), setup.room_size, *place),
            pubkeys: pubkeys.clone(),
            room_prefix: room_prefix.clone(),
            binds: binds.clone(),
        },
        Endpoint::VorsBaseline { sockets, keys, .. } => {
            for &i in &setup.streams {
                let socket = sockets.get_mut(i).and_then(Option::take).ok_or_else(|| {
                    LoadError::Plan(format!("no bound UDP socket for stream {i}"))
                })?;
                baseline_sockets.push(socket);
            }
            Target::Baseline {
                keys: Arc::new(keys.clone()),
            }
        }
        Endpoint::Ws { .. } => return Err(LoadError::Plan("not a VoRS endpoint".into())),
    };
    let mut poll = Poll::new().map_err(LoadError::io("create an epoll instance"))?;
    let clock = setup.shared.clock;
    let mut members: Vec<Member> = Vec::with_capacity(setup.streams.len());
    if let Target::Baseline { keys } = &target {
        for (slot, socket) in baseline_sockets.into_iter().enumerate() {
            let index = setup.streams[slot];
            let mut member = Member::baseline(index, socket, keys, &setup)?;
            poll.registry()
                .register(&mut member.udp, Token(slot * 2 + 1), Interest::READABLE)
                .map_err(LoadError::io("register a socket"))?;
            members.push(member);
            setup.ready();
        }
    }

    let mut pacer = setup.pacer(Protocol::Vors);
    let mut tally = Tally::default();
    let mut events = Events::with_capacity(1024);
    let mut tcp_buf = vec![0u8; 16 * 1024];
    let mut udp_buf = vec![0u8; MAX_MEDIA_LEN + 64];
    let mut opus = Vec::with_capacity(MAX_OPUS_LEN);
    let mut sealed = Vec::with_capacity(MAX_MEDIA_LEN);
    let mut next_timers = 0;
    loop {
        let now = clock.now_ns();
        if pacer.finished(now) {
            break;
        }
        if let Target::Server {
            spread,
            pubkeys,
            room_prefix,
            binds,
        } = &target
            && members.len() < setup.streams.len()
        {
            let joining = members.iter().filter(|m| !m.ready).count();
            for _ in joining..MAX_JOINING {
                let slot = members.len();
                let Some(&index) = setup.streams.get(slot) else {
                    break;
                };
                // Stream i leaves from the i-th source address, round the list.
                let bind = binds.get(index % binds.len().max(1)).copied();
                let from = Source {
                    addr: spread.addr_of(index),
                    bind,
                    sharing: setup.total_streams.div_ceil(binds.len().max(1)),
                };
                let pubkey = pubkeys
                    .get(spread.target_of(index))
                    .or(pubkeys.first())
                    .ok_or_else(|| LoadError::Plan("no --pubkey".into()))?;
                let mut member = Member::join(index, from, pubkey, room_prefix, &setup, now)?;
                if spread.is_spread() {
                    member.relay_peers = Some(spread.peers(index));
                }
                member.register(&poll, slot)?;
                member.drain(&setup, pacer.past_end(now))?;
                members.push(member);
            }
        }
        match poll.poll(&mut events, Some(pacer.wait(now))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LoadError::io("poll")(e)),
        }
        for event in events.iter() {
            let slot = event.token().0 / 2;
            let Some(member) = members.get_mut(slot) else {
                continue;
            };
            let past_end = pacer.past_end(clock.now_ns());
            let result = if event.token().0 % 2 == 1 {
                member.read_udp(&mut udp_buf, &mut opus, &target, &setup, &mut tally);
                Ok(())
            } else {
                member.on_tcp_event(
                    event.is_writable() || event.is_error(),
                    event.is_readable() || event.is_read_closed(),
                    &mut tcp_buf,
                    &setup,
                    past_end,
                )
            };
            // Past the end, a stream's error no longer stops the run.
            if !past_end {
                result?;
            }
        }
        let now = clock.now_ns();
        if now >= next_timers {
            next_timers = now + TIMER_CHECK_NS;
            let past_end = pacer.past_end(now);
            for member in &mut members {
                let result = member.timers(now, &setup, past_end);
                if !past_end {
                    result?;
                }
            }
        }
        while let Some(due) = pacer.pop_due(now) {
            let member = &mut members[due.slot];
            member.send(due.at_ns, clock.now_ns(), &mut sealed, &mut tally);
        }
        pacer.sample(now, &mut tally);
    }
    Ok(tally)
}

impl Member {
    fn new(index: usize, udp: UdpSocket, link: Link, setup: &WorkerSetup) -> Member {
        let mut plain = [0u8; PLAIN_LEN];
        stamp::fill(&mut plain, index as u32);
        let first = setup.room_first(index);
        Member {
            index,
            udp,
            link,
            sid: None,
            keys: None,
            pkt: FIRST_PKT,
            frame: 0,
            seq: 0,
            plain,
            inbox: Inbox::new(index as u32, first as u32, setup.room_size as u32),
            ready: false,
            relay_peers: None,
        }
    }

    /// A member of a baseline room: ready at once.
    fn baseline(
        index: usize,
        socket: StdUdpSocket,
        keys: &[SessionKeys],
        setup: &WorkerSetup,
    ) -> Result<Member, LoadError> {
        socket
            .set_nonblocking(true)
            .map_err(LoadError::io("make a UDP socket non-blocking"))?;
        let link = Link::Baseline {
            next_keepalive_ns: 0,
        };
        let mut member = Member::new(index, UdpSocket::from_std(socket), link, setup);
        member.sid = Some(Sid((index - setup.room_first(index)) as u8));
        member.keys = keys.get(index).cloned();
        member.ready = true;
        Ok(member)
    }

    /// Starts joining a server's room: connects, and queues the magic and message 1.
    fn join(
        index: usize,
        Source {
            addr,
            bind,
            sharing,
        }: Source,
        pubkey: &[u8; 32],
        room_prefix: &str,
        setup: &WorkerSetup,
        now: u64,
    ) -> Result<Member, LoadError> {
        let fail = |what: String| LoadError::stream(index, what);
        let tcp = bind::mio_tcp_connect(bind, addr)
            .map_err(|e| fail(format!("connect to {addr}: {e}{}", fd_hint(&e))))?;
        let _ = tcp.set_nodelay(true);
        let from = bind.map(|ip| SocketAddr::new(ip, 0));
        let udp = bind::udp_connect(from, addr)
            .and_then(|udp| udp.set_nonblocking(true).map(|()| UdpSocket::from_std(udp)))
            .map_err(|e| fail(format!("UDP to {addr}: {e}{}", fd_hint(&e))))?;
        let username = format!("s{index}");
        let room = format!("{room_prefix}-{}", index / setup.room_size);
        let hello = Hello {
            username: &username,
            room: &room,
            password_hash: None,
        };
        let (now, wall) = (
            setup.shared.clock.instant(now),
            crate::vors_client::wall_clock(),
        );
        let session = ClientSession::new(now, wall, pubkey, &hello)
            .map_err(|e| fail(format!("start the handshake: {e}")))?;
        let link = Link::Server {
            tcp,
            connected: false,
            session: Box::new(session),
            out: OutBuf::default(),
            sid_stream: Box::new([u32::MAX; 256]),
            next_timer: None,
            sharing,
        };
        Ok(Member::new(index, udp, link, setup))
    }

    fn register(&mut self, poll: &Poll, slot: usize) -> Result<(), LoadError> {
        let registry = poll.registry();
        if let Link::Server { tcp, .. } = &mut self.link {
            registry
                .register(
                    tcp,
                    Token(slot * 2),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(LoadError::io("register a socket"))?;
        }
        registry
            .register(&mut self.udp, Token(slot * 2 + 1), Interest::READABLE)
            .map_err(LoadError::io("register a socket"))
    }

    fn on_tcp_event(
        &mut self,
        writable: bool,
        readable: bool,
        buf: &mut [u8],
        setup: &WorkerSetup,
        past_end: bool,
    ) -> Result<(), LoadError> {
        let index = self.index;
        let fail = |what: String| LoadError::stream(index, what);
        let Link::Server {
            tcp,
            connected,
            session,
            out,
            sharing,
            ..
        } = &mut self.link
        else {
            return Ok(());
        };
        if session.is_closed() {
            return Ok(());
        }
        if !*connected {
            if let Ok(Some(e)) | Err(e) = tcp.take_error() {
                return Err(fail(format!("connect: {e}")));
            }
            match tcp.peer_addr() {
                Ok(_) => *connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(fail(format!("connect: {e}"))),
            }
        }
        if writable || out.pending() > 0 {
            out.flush(tcp).map_err(|e| fail(format!("write: {e}")))?;
        }
        if readable {
            let clock = setup.shared.clock;
            loop {
                match tcp.read(buf) {
                    Ok(0) => {
                        session.handle_tcp_closed(clock.instant(clock.now_ns()));
                        break;
                    }
                    Ok(n) => session.handle_tcp(clock.instant(clock.now_ns()), &buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        session.handle_tcp_closed(clock.instant(clock.now_ns()));
                        if !past_end {
                            // A reset before the keys: the relay closed the connection at
                            // accept (its per-address connection limit) or mid-handshake.
                            return Err(fail(match session.keys() {
                                None if e.kind() == io::ErrorKind::ConnectionReset => {
                                    refusal::handshake_ended(&format!("read: {e}"), *sharing)
                                }
                                _ => format!("read: {e}"),
                            }));
                        }
                        break;
                    }
                }
            }
        }
        self.drain(setup, past_end)
    }

    /// The drain rule: transmits in order, then events, then the next timer.
    fn drain(&mut self, setup: &WorkerSetup, past_end: bool) -> Result<(), LoadError> {
        let index = self.index;
        let fail = |what: String| LoadError::stream(index, what);
        let Link::Server {
            tcp,
            connected,
            session,
            out,
            sid_stream,
            next_timer,
            sharing,
        } = &mut self.link
        else {
            return Ok(());
        };
        while let Some(transmit) = session.poll_transmit() {
            match transmit {
                ClientTransmit::Tcp(bytes) if *connected => {
                    out.write(tcp, &bytes)
                        .map_err(|e| fail(format!("write: {e}")))?;
                }
                ClientTransmit::Tcp(bytes) => {
                    // Still connecting: keep it for the first writable event.
                    out.queue(&bytes);
                }
                // A datagram the kernel refuses is lost like any other; the session resends
                // cookies and keepalives on its own.
                ClientTransmit::Udp(bytes) => {
                    let _ = self.udp.send(&bytes);
                }
            }
        }
        let mut refusal = None;
        while let Some(event) = session.poll_event() {
            match event {
                ClientEvent::Joined(sid) => {
                    self.sid = Some(sid);
                    self.keys = session.keys().cloned();
                }
                ClientEvent::PeerAdded { sid, username } => {
                    if let Some(n) = username.strip_prefix('s').and_then(|n| n.parse().ok()) {
                        sid_stream[usize::from(sid.0)] = n;
                    }
                }
                ClientEvent::Rejected(reason) => refusal = Some(reason),
                ClientEvent::Closed(reason) if !past_end => {
                    return Err(fail(match refusal.take() {
                        Some(reason) => format!(
                            "the server refused the join: {reason}{}",
                            refusal::join_refused_hint(&reason)
                        ),
                        None if session.keys().is_none() => {
                            refusal::handshake_ended(&format!("{reason:?}"), *sharing)
                        }
                        None => format!("the session ended: {reason:?}"),
                    }));
                }
                _ => {}
            }
        }
        *next_timer = session.poll_timeout();
        let room_complete = session.peers().count() + 1 >= setup.room_size;
        if !self.ready && self.sid.is_some() && room_complete {
            self.ready = true;
            setup.ready();
        }
        Ok(())
    }

    /// Session timers (cookie, keepalive, PING, silence) or the baseline keepalive.
    fn timers(&mut self, now: u64, setup: &WorkerSetup, past_end: bool) -> Result<(), LoadError> {
        match &mut self.link {
            Link::Server {
                session,
                next_timer,
                ..
            } => {
                let at = setup.shared.clock.instant(now);
                if next_timer.is_some_and(|t| t <= at) {
                    session.handle_timeout(at);
                    return self.drain(setup, past_end);
                }
            }
            Link::Baseline { next_keepalive_ns } => {
                if now >= *next_keepalive_ns {
                    *next_keepalive_ns = now + KEEPALIVE_NS;
                    if let Some(sid) = self.sid {
                        let _ = self.udp.send(&[sid.0]);
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads every waiting datagram: checks, opens, attributes and times each.
    fn read_udp(
        &mut self,
        buf: &mut [u8],
        opus: &mut Vec<u8>,
        target: &Target,
        setup: &WorkerSetup,
        tally: &mut Tally,
    ) {
        let clock = setup.shared.clock;
        loop {
            let n = match self.udp.recv(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // ICMP errors on a connected socket, interrupted calls: read on.
                Err(_) => continue,
            };
            let now = clock.now_ns();
            let datagram = &buf[..n];
            if n == packet::KEEPALIVE_LEN {
                continue; // a forwarder may pass keepalives on; they carry no audio.
            }
            opus.clear();
            let sender = match (&mut self.link, target) {
                (
                    Link::Server {
                        session,
                        sid_stream,
                        ..
                    },
                    _,
                ) => session
                    .handle_datagram(clock.instant(now), datagram, opus)
                    .map(|r| sid_stream[usize::from(r.sid.0)]),
                (Link::Baseline { .. }, Target::Baseline { keys }) => {
                    let first = setup.room_first(self.index);
                    let sender = first + usize::from(datagram[0]);
                    match keys.get(sender) {
                        Some(k) if sender < first + setup.room_size => {
                            packet::open(k, datagram, opus).ok().map(|_| sender as u32)
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            let checked = sender.and_then(|sender| {
                stamp::check(opus, opus_len)
                    .ok()
                    .filter(|s| s.stream == sender && self.inbox.accept(s))
            });
            match (checked, target) {
                (Some(s), Target::Server { spread, .. }) if self.relay_peers.is_some() => {
                    let cross = !spread.same_relay(s.stream as usize, self.index);
                    tally.delivered_via(s.sent_ns, now, cross);
                }
                (Some(s), _) => tally.delivered(s.sent_ns, now),
                (None, _) => tally.corrupted += 1,
            }
        }
    }

    /// Seals and sends the next packet, stamped `now`.
    fn send(&mut self, due_ns: u64, now: u64, sealed: &mut Vec<u8>, tally: &mut Tally) {
        let (Some(sid), Some(keys)) = (self.sid, &self.keys) else {
            return;
        };
        let len = opus_len(self.index as u32, self.seq);
        let plain = &mut self.plain[..len];
        stamp::write_stamp(plain, self.index as u32, self.seq, now);
        sealed.clear();
        if packet::seal(keys, sid, self.pkt, self.frame, plain, sealed).is_err() {
            tally.send_skipped += 1;
            return;
        }
        match self.udp.send(sealed) {
            Ok(_) => {
                self.seq += 1;
                self.pkt += 1;
                self.frame = (self.frame + 1) & packet::MAX_COUNTER;
                tally.sent(due_ns, now);
                if let Some((same, cross)) = self.relay_peers {
                    tally.expect_via(same, cross);
                }
            }
            Err(_) => tally.send_skipped += 1,
        }
    }
}
