//! A room member driven by the test itself: `moose_proto`'s client session over plain std
//! TCP and UDP sockets, so a test can send exactly the datagrams it wants from a registered
//! member's address (its own sealed packets, copies of them, broken tags) and see what the
//! relay sends back.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use moose_proto::vors::Sid;
use moose_proto::vors::client::{ClientEvent, ClientSession, ClientStats, ClientTransmit};
use moose_proto::vors::hello::Hello;
use moose_proto::vors::keys::SessionKeys;
use moose_proto::vors::packet::COOKIE_LEN;

/// How long one read waits before timers are looked at again.
const READ_SLICE: Duration = Duration::from_millis(20);

pub struct RawMember {
    pub name: String,
    session: ClientSession,
    tcp: TcpStream,
    udp: UdpSocket,
    relay: SocketAddr,
    /// Other members by name, from ADD (removed on DEL).
    peers: HashMap<String, Sid>,
    /// Every event the session reported, in order.
    pub events: Vec<ClientEvent>,
    /// Datagrams received under our own SID: the relay must never send a member's packets
    /// back to it.
    pub echoes: u64,
}

impl RawMember {
    /// Connects to the relay's VoRS port and joins `room` as `name` (no password); returns
    /// once the relay gave us a SID, or panics after `within`.
    pub fn join(
        relay: SocketAddr,
        pubkey_hex: &str,
        name: &str,
        room: &str,
        within: Duration,
    ) -> RawMember {
        let mut key = [0u8; 32];
        hex::decode_to_slice(pubkey_hex, &mut key).expect("relay pubkey hex");
        let hello = Hello {
            username: name,
            room,
            password_hash: None,
        };
        let session = ClientSession::new(Instant::now(), &key, &hello).expect("client session");
        let tcp = TcpStream::connect(relay).expect("connect to the vors port");
        tcp.set_nodelay(true).expect("nodelay");
        tcp.set_read_timeout(Some(READ_SLICE))
            .expect("read timeout");
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        udp.set_nonblocking(true).expect("nonblocking udp");
        let mut member = RawMember {
            name: name.to_owned(),
            session,
            tcp,
            udp,
            relay,
            peers: HashMap::new(),
            events: Vec::new(),
            echoes: 0,
        };
        member.run_until(within, "our SID", |m| m.session.sid().is_some());
        member
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

    /// The local address of our UDP socket (the address the relay registered).
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp.local_addr().expect("udp addr")
    }

    /// A member's SID, once its ADD arrived.
    pub fn peer_sid(&self, name: &str) -> Option<Sid> {
        self.peers.get(name).copied()
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

    /// One round: read TCP for up to 20 ms, read the datagrams waiting, act on both, run due
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

    fn receive(&mut self, datagram: &[u8]) {
        let mut opus = Vec::new();
        self.session
            .handle_datagram(Instant::now(), datagram, &mut opus);
    }

    fn sid_byte(&self) -> u8 {
        self.session.sid().map_or(255, |s| s.0)
    }

    /// Sends `datagram` from our registered UDP socket, as is.
    pub fn send_raw(&self, datagram: &[u8]) {
        self.udp
            .send_to(datagram, self.relay)
            .expect("send datagram");
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
                _ => {}
            }
            self.events.push(event);
        }
        sent
    }
}
