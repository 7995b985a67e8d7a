//! A VoRS room member driven by the test itself: `moose_proto`'s client session over plain
//! std TCP and UDP sockets. It joins (or reports the relay's refusal), keeps its session
//! going, sends sealed media packets, and lets a test send exactly the datagrams it wants
//! from a registered member's address (its own packets, copies of them, broken tags) and see
//! what the relay sends back.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use moose_proto::vors::Sid;
use moose_proto::vors::client::{ClientEvent, ClientSession, ClientStats, ClientTransmit};
use moose_proto::vors::hello::Hello;
use moose_proto::vors::keys::SessionKeys;
use moose_proto::vors::packet::COOKIE_LEN;
use socket2::{Domain, Protocol, Socket, Type};

/// The wall clock as a hello carries it: the same reading the real clients make.
pub use moose_bench::vors_client::wall_clock;

/// How long one TCP read waits before timers and datagrams are looked at again.
const READ_SLICE: Duration = Duration::from_millis(10);
/// How long joining may take.
const JOIN_WITHIN: Duration = Duration::from_secs(10);
/// One audio frame, the pace of [`talk`].
const FRAME: Duration = Duration::from_millis(20);
/// What [`talk`] sends: any bytes do, the relay and the sessions never decode Opus.
const TALK_OPUS: [u8; 60] = [0x55; 60];

/// Sends `frames` media packets from `talker` at the pace of a real client (one per 20 ms),
/// keeping the sessions of `others` going meanwhile, and calls `between` after each round.
pub fn talk(
    talker: &mut VorsMember,
    others: &mut [&mut VorsMember],
    frames: u32,
    mut between: impl FnMut(),
) {
    let start = Instant::now();
    let mut sent = 0;
    while sent < frames {
        let due = (start.elapsed().as_millis() / FRAME.as_millis()) as u32 + 1;
        while sent < due.min(frames) {
            talker.send_media(&TALK_OPUS);
            sent += 1;
        }
        talker.step();
        for other in others.iter_mut() {
            other.step();
        }
        between();
    }
}

/// Keeps every member's session going until `done` holds; panics with `what` after `within`.
pub fn settle(
    members: &mut [&mut VorsMember],
    within: Duration,
    what: &str,
    done: impl Fn(&[&mut VorsMember]) -> bool,
) {
    let deadline = Instant::now() + within;
    while !done(members) {
        assert!(
            Instant::now() < deadline,
            "{what} not seen within {within:?}"
        );
        for m in members.iter_mut() {
            m.step();
        }
    }
}

/// A TCP connection to `relay` from the local address `from` (a loopback address such as
/// 127.0.0.2 stands for another machine).
pub fn connect_from(relay: SocketAddr, from: IpAddr) -> TcpStream {
    let domain = if from.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket
        .connect_timeout(&relay.into(), Duration::from_secs(5))
        .unwrap();
    socket.into()
}

/// One member of a room, over its own TCP connection and UDP socket.
pub struct VorsMember {
    pub name: String,
    session: ClientSession,
    tcp: TcpStream,
    udp: UdpSocket,
    relay: SocketAddr,
    /// The reason of an ERR the relay sent, until `try_join` reports it.
    rejected: Option<String>,
    /// Other members by name, from ADD (removed on DEL).
    peers: HashMap<String, Sid>,
    /// Every event the session reported, in order.
    pub events: Vec<ClientEvent>,
    /// Datagrams received under our own SID: the relay must never send a member's packets
    /// back to it.
    pub echoes: u64,
    /// The first TCP bytes we sent: the magic and message 1, as an eavesdropper would have
    /// captured them.
    sent_hello: Vec<u8>,
    /// While set, the datagrams the session sends (cookie, keepalives, media) are kept in
    /// [`held`](Self::held) instead of leaving the socket: a member whose UDP path is cut, or
    /// whose cookie the test sends from elsewhere.
    pub hold_udp: bool,
    /// The datagrams held back while [`hold_udp`](Self::hold_udp) was set, oldest first.
    pub held: Vec<Vec<u8>>,
}

impl std::fmt::Debug for VorsMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VorsMember")
            .field("name", &self.name)
            .field("sid", &self.session.sid())
            .field("peers", &self.peers)
            .field("echoes", &self.echoes)
            .finish_non_exhaustive()
    }
}

impl VorsMember {
    /// Joins `room` as `name` and returns once the relay gave us a SID (which it does after
    /// our cookie registered our UDP address), or panics after 10 s.
    pub fn join(relay: SocketAddr, pubkey_hex: &str, name: &str, room: &str) -> VorsMember {
        Self::join_with_password(relay, pubkey_hex, name, room, "")
    }

    /// As [`VorsMember::join`], with a room password (empty: none).
    pub fn join_with_password(
        relay: SocketAddr,
        pubkey_hex: &str,
        name: &str,
        room: &str,
        password: &str,
    ) -> VorsMember {
        Self::try_join(relay, pubkey_hex, name, room, password, None)
            .unwrap_or_else(|reason| panic!("{name}: refused: {reason}"))
    }

    /// Connects from `from` (TCP and UDP; default 127.0.0.1) and completes the handshake for
    /// `room` as `name`, with [`hold_udp`](Self::hold_udp) set: returns once message 2 has
    /// come and the session's cookie is `held[0]`, unsent. Panics if refused or after 10 s.
    /// The test decides where the cookie goes (another address, another member's socket),
    /// or clears `hold_udp` to let the session send its next one itself.
    pub fn handshake_holding_udp(
        relay: SocketAddr,
        pubkey_hex: &str,
        name: &str,
        room: &str,
        from: Option<IpAddr>,
    ) -> VorsMember {
        let mut member = Self::connect(relay, pubkey_hex, name, room, "", from);
        member.hold_udp = true;
        member
            .joining_until("message 2", |m| !m.held.is_empty())
            .unwrap_or_else(|reason| panic!("{name}: refused: {reason}"));
        member
    }

    /// Joins `room` as `name` from the loopback address `from` (default 127.0.0.1); the
    /// relay's ERR reason when it refuses. Panics when neither comes within 10 s.
    pub fn try_join(
        relay: SocketAddr,
        pubkey_hex: &str,
        name: &str,
        room: &str,
        password: &str,
        from: Option<IpAddr>,
    ) -> Result<VorsMember, String> {
        let mut member = Self::connect(relay, pubkey_hex, name, room, password, from);
        member.joining_until("SID", |m| m.session.sid().is_some())?;
        Ok(member)
    }

    /// Keeps the joining session going until `done` holds; the relay's ERR reason if it
    /// refuses first. Panics if the session closes, or after 10 s.
    fn joining_until(&mut self, what: &str, done: impl Fn(&Self) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + JOIN_WITHIN;
        while !done(self) {
            if let Some(reason) = self.rejected.take() {
                return Err(reason);
            }
            assert!(!self.session.is_closed(), "{}: session closed", self.name);
            assert!(
                Instant::now() < deadline,
                "{}: no {what} within 10 s",
                self.name
            );
            self.step();
        }
        Ok(())
    }

    /// A session for `room` over a TCP connection and a UDP socket bound to `from`, message 1
    /// not sent yet.
    fn connect(
        relay: SocketAddr,
        pubkey_hex: &str,
        name: &str,
        room: &str,
        password: &str,
        from: Option<IpAddr>,
    ) -> VorsMember {
        let mut key = [0u8; 32];
        hex::decode_to_slice(pubkey_hex, &mut key).unwrap();
        let password_hash = moose_proto::vors::keys::password_field(password);
        let hello = Hello {
            username: name,
            room,
            password_hash: password_hash.as_ref(),
        };
        let session = ClientSession::new(Instant::now(), wall_clock(), &key, &hello).unwrap();
        let from = from.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let tcp = connect_from(relay, from);
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(READ_SLICE)).unwrap();
        let udp = UdpSocket::bind(SocketAddr::new(from, 0)).unwrap();
        udp.set_nonblocking(true).unwrap();
        VorsMember {
            name: name.to_owned(),
            session,
            tcp,
            udp,
            relay,
            rejected: None,
            peers: HashMap::new(),
            events: Vec::new(),
            echoes: 0,
            sent_hello: Vec::new(),
            hold_udp: false,
            held: Vec::new(),
        }
    }

    /// The magic and message 1 exactly as we sent them, for a test that replays them.
    pub fn sent_hello(&self) -> &[u8] {
        &self.sent_hello
    }

    /// Whether the session has ended (the relay closed the connection, or we left).
    pub fn is_closed(&self) -> bool {
        self.session.is_closed()
    }

    /// Our SID.
    pub fn sid(&self) -> Sid {
        self.session.sid().expect("joined")
    }

    /// Whether the relay gave us a SID (our cookie registered our UDP address).
    pub fn has_sid(&self) -> bool {
        self.session.sid().is_some()
    }

    /// Our media keys (cipher and MAC), as the relay and the other members know them.
    pub fn keys(&self) -> SessionKeys {
        self.session.keys().expect("keys after message 2").clone()
    }

    /// The session's counters (media received from peers, drops by reason).
    pub fn stats(&self) -> ClientStats {
        self.session.stats().clone()
    }

    /// Media packets accepted from peers (tag and counter checked by the session).
    pub fn received(&self) -> u64 {
        self.session.stats().packets_received
    }

    /// Members this one knows of (from ADD).
    pub fn peers(&self) -> usize {
        self.session.peers().count()
    }

    /// A member's SID, once its ADD arrived.
    pub fn peer_sid(&self, name: &str) -> Option<Sid> {
        self.peers.get(name).copied()
    }

    /// The local address of our UDP socket (the address the relay registered).
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp.local_addr().expect("udp addr")
    }

    /// Keeps the session going (reads, timers, keepalives) until `done` holds; panics with
    /// `what` after `within`.
    pub fn run_until(&mut self, within: Duration, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + within;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "{}: {what} not seen within {within:?}; events {:?}; {:?}",
                self.name,
                self.events,
                self.session.stats()
            );
            assert!(
                !self.session.is_closed(),
                "{}: session closed while waiting for {what}; events {:?}",
                self.name,
                self.events
            );
            self.step();
        }
    }

    /// One round: read TCP for up to 10 ms, read the datagrams waiting, act on both, run due
    /// timers and drain the session.
    ///
    /// TCP and UDP race each other: a newcomer's first packets can arrive before its ADD,
    /// and a leaver's last ones before its DEL has been acted on, both within one read. So
    /// datagrams of members we know go before the TCP bytes (a DEL among them must not orphan
    /// them), and the others after (their ADD may be among them).
    pub fn step(&mut self) {
        let mut tcp = [0u8; 4096];
        let read = self.tcp.read(&mut tcp);
        let mut buf = [0u8; 2048];
        let mut later = Vec::new();
        // Non-blocking: everything queued by now.
        while let Ok((n, _)) = self.udp.recv_from(&mut buf) {
            let datagram = &buf[..n];
            if datagram.first() == Some(&self.sid_byte()) {
                self.echoes += 1;
            }
            let known = datagram
                .first()
                .is_some_and(|&b| self.peers.values().any(|s| s.0 == b));
            if known {
                self.receive(datagram);
            } else {
                later.push(datagram.to_vec());
            }
        }
        let now = Instant::now();
        match read {
            Ok(0) => self.session.handle_tcp_closed(now),
            Ok(n) => self.session.handle_tcp(now, &tcp[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => self.session.handle_tcp_closed(now),
        }
        // The ADDs just read must reach the peer table first.
        self.drain();
        for datagram in later {
            self.receive(&datagram);
        }
        let now = Instant::now();
        if self.session.poll_timeout().is_some_and(|t| now >= t) {
            self.session.handle_timeout(now);
        }
        self.drain();
    }

    /// Counts one 20 ms frame holding `opus` and sends the sealed media packet as the real
    /// client would; returns the datagram sent, so the test can send copies later.
    pub fn send_media(&mut self, opus: &[u8]) -> Vec<u8> {
        assert!(
            opus.len() + 15 > COOKIE_LEN,
            "a 1-byte payload would make a cookie-sized datagram"
        );
        let queued = self
            .session
            .handle_audio_frame(Instant::now(), Some(opus))
            .expect("seal");
        assert!(queued, "media packet not queued (muted or not joined?)");
        let sent = self.drain();
        let mut media = sent.into_iter().filter(|d| d.len() > COOKIE_LEN);
        let packet = media.next().expect("the media datagram");
        assert!(media.next().is_none(), "one frame, one packet");
        packet
    }

    /// Sends `text` to the room as CHAT, at once.
    pub fn send_chat(&mut self, text: &str) {
        self.session
            .send_chat(Instant::now(), text)
            .expect("chat while joined");
        self.drain();
    }

    /// Mutes or unmutes (MUTED/UNMUTED to the room), at once.
    pub fn set_muted(&mut self, muted: bool) {
        self.session.set_muted(Instant::now(), muted);
        self.drain();
    }

    /// The local address of our TCP connection to the relay.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp.local_addr().expect("tcp addr")
    }

    /// Sends `datagram` from our registered UDP socket, as is.
    pub fn send_raw(&self, datagram: &[u8]) {
        self.udp
            .send_to(datagram, self.relay)
            .expect("send datagram");
    }

    fn receive(&mut self, datagram: &[u8]) {
        let mut opus = Vec::new();
        self.session
            .handle_datagram(Instant::now(), datagram, &mut opus);
    }

    fn sid_byte(&self) -> u8 {
        self.session.sid().map_or(255, |s| s.0)
    }

    /// Sends what the session queued (or holds its datagrams, see `hold_udp`) and records its
    /// events; returns the UDP datagrams the session sent.
    fn drain(&mut self) -> Vec<Vec<u8>> {
        let mut sent = Vec::new();
        while let Some(transmit) = self.session.poll_transmit() {
            match transmit {
                ClientTransmit::Tcp(bytes) => {
                    if self.sent_hello.is_empty() {
                        self.sent_hello.clone_from(&bytes);
                    }
                    // The relay closing first shows up as an event on the next read.
                    let _ = self.tcp.write_all(&bytes);
                }
                ClientTransmit::Udp(datagram) => {
                    if self.hold_udp {
                        self.held.push(datagram.clone());
                    } else {
                        self.send_raw(&datagram);
                    }
                    sent.push(datagram);
                }
            }
        }
        while let Some(event) = self.session.poll_event() {
            match &event {
                ClientEvent::PeerAdded { sid, username } => {
                    self.peers.insert(username.clone(), *sid);
                }
                ClientEvent::PeerRemoved { username, .. } => {
                    self.peers.remove(username);
                }
                ClientEvent::Rejected(reason) => self.rejected = Some(reason.clone()),
                _ => {}
            }
            self.events.push(event);
        }
        sent
    }
}
