//! A small VoRS room member for relay tests: `moose_proto`'s client session over plain std TCP
//! and UDP sockets. It joins, keeps its session going, sends sealed media packets and counts
//! what it accepts from its peers. (bench/tests/vors_support/member.rs has a fuller one.)
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use moose_proto::vors::client::{ClientEvent, ClientSession, ClientTransmit};
use moose_proto::vors::hello::Hello;
use socket2::{Domain, Protocol, Socket, Type};

/// How long one TCP read waits before timers and datagrams are looked at again.
const READ_SLICE: Duration = Duration::from_millis(10);

pub struct VorsMember {
    pub name: String,
    session: ClientSession,
    pub tcp: TcpStream,
    udp: UdpSocket,
    relay: SocketAddr,
    /// The reason of an ERR the relay sent, until `try_join` reports it.
    rejected: Option<String>,
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
        };
        let deadline = Instant::now() + Duration::from_secs(10);
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

    /// Media packets accepted from peers (tag and counter checked by the session).
    pub fn received(&self) -> u64 {
        self.session.stats().packets_received
    }

    /// Members this one knows of (from ADD).
    pub fn peers(&self) -> usize {
        self.session.peers().count()
    }

    /// Keeps the session going until `done` holds; panics with `what` after `within`.
    pub fn run_until(&mut self, within: Duration, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + within;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "{}: {what} not seen within {within:?}; {:?}",
                self.name,
                self.session.stats()
            );
            assert!(!self.session.is_closed(), "{}: session closed", self.name);
            self.step();
        }
    }

    /// One round: TCP bytes (up to 10 ms), the datagrams waiting, due timers, transmits.
    pub fn step(&mut self) {
        let mut tcp = [0u8; 4096];
        let read = self.tcp.read(&mut tcp);
        let now = Instant::now();
        match read {
            Ok(0) => self.session.handle_tcp_closed(now),
            Ok(n) => self.session.handle_tcp(now, &tcp[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => self.session.handle_tcp_closed(now),
        }
        // ADDs just read must reach the peer table before the datagrams they announce.
        self.drain();
        let mut buf = [0u8; 2048];
        let mut opus = Vec::new();
        while let Ok((n, _)) = self.udp.recv_from(&mut buf) {
            opus.clear();
            self.session
                .handle_datagram(Instant::now(), &buf[..n], &mut opus);
        }
        let now = Instant::now();
        if self.session.poll_timeout().is_some_and(|t| now >= t) {
            self.session.handle_timeout(now);
        }
        self.drain();
    }

    /// Seals one 20 ms frame holding `opus` and sends it; returns the datagram's length.
    pub fn send_media(&mut self, opus: &[u8]) -> usize {
        assert!(
            self.session
                .handle_audio_frame(Instant::now(), Some(opus))
                .unwrap(),
            "media packet not queued"
        );
        self.drain()
            .into_iter()
            .find(|&len| len > 16)
            .expect("the media datagram")
    }

    /// Sends what the session queued; returns the lengths of the datagrams sent.
    fn drain(&mut self) -> Vec<usize> {
        let mut sent = Vec::new();
        while let Some(transmit) = self.session.poll_transmit() {
            match transmit {
                ClientTransmit::Tcp(bytes) => {
                    let _ = self.tcp.write_all(&bytes);
                }
                ClientTransmit::Udp(datagram) => {
                    self.udp.send_to(&datagram, self.relay).unwrap();
                    sent.push(datagram.len());
                }
            }
        }
        while let Some(event) = self.session.poll_event() {
            if let ClientEvent::Rejected(reason) = event {
                self.rejected = Some(reason);
            }
        }
        sent
    }
}
