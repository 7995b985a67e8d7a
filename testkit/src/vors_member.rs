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

/// How long one TCP read waits before timers and datagrams are looked at again.
const READ_SLICE: Duration = Duration::from_millis(10);
/// How long joining may take.
const JOIN_WITHIN: Duration = Duration::from_secs(10);

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
        let mut key = [0u8; 32];
        hex::decode_to_slice(pubkey_hex, &mut key).unwrap();
        let password_hash = moose_proto::vors::keys::password_field(password);
        let hello = Hello {
            username: name,
            room,
            password_hash: password_hash.as_ref(),
        };
        let session = ClientSession::new(Instant::now(), &key, &hello).unwrap();
        let from = from.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
        socket.connect(&relay.into()).unwrap();
        let tcp: TcpStream = socket.into();
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(READ_SLICE)).unwrap();
        let udp = UdpSocket::bind(SocketAddr::new(from, 0)).unwrap();
        udp.set_nonblocking(true).unwrap();
        let mut member = VorsMember {
            name: name.to_owned(),
            session,
            tcp,
            udp,
            relay,
            rejected: None,
            peers: HashMap::new(),
            events: Vec::new(),
            echoes: 0,
        };
        let deadline = Instant::now() + JOIN_WITHIN;
        while member.session.sid().is_none() {
            if let Some(reason) = member.rejected.take() {
                return Err(reason);
            }
            assert!(!member.session.is_closed(), "{name}: session closed");
            assert!(Instant::now() < deadline, "{name}: no SID within 10 s");
            member.step();
        }
        Ok(member)
    }

    /// Our SID.
    pub fn sid(&self) -> Sid {
        self.session.sid().expect("joined")
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

    /// Sends what the session queued and records its events; returns the UDP datagrams sent.
    fn drain(&mut self) -> Vec<Vec<u8>> {
        let mut sent = Vec::new();
        while let Some(transmit) = self.session.poll_transmit() {
            match transmit {
                ClientTransmit::Tcp(bytes) => {
                    // The relay closing first shows up as an event on the next read.
                    let _ = self.tcp.write_all(&bytes);
                }
                ClientTransmit::Udp(datagram) => {
                    self.send_raw(&datagram);
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
