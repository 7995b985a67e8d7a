//! The client side of a VoRS session: handshake, cookie, keepalives, PING, media, peers.
//!
//! ```text
//! TCP  -> "VoRS v4" NS(message 1)      <- NS(message 2): cookie, or ERR
//! UDP  -> cookie every second          until NS(["SID", sid]) arrives
//! UDP  -> SID byte every second        (even when muted)
//! TCP  -> NS(["PING"]) every 10 s      <- NS(["PONG"])
//! UDP  -> media every 20 ms frame      (none while muted; FRAME still counts)
//! TCP  <- ADD / DEL / MUTED / UNMUTED / CHAT about the other members
//! ```
//!
//! Sans-IO: the application feeds TCP bytes, UDP datagrams, encoded 20 ms Opus frames and
//! timeouts in; every UDP transmit goes to the server's UDP address (the TCP address).
//!
//! **Drain rule.** After every `handle_*`, `set_muted` or `send_chat` call, drain
//! [`ClientSession::poll_transmit`] until `None` (TCP bytes in order; UDP datagrams may be
//! sent as they come), then [`ClientSession::poll_event`] until `None`, then re-arm the timer
//! with [`ClientSession::poll_timeout`] and call [`ClientSession::handle_timeout`] when it
//! passes. After [`ClientEvent::Closed`], flush and close the connection.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::SessionError;
use super::control::{Control, ControlOwned};
use super::freshness::UnixTime;
use super::handshake::{
    ClientHandshake, HandshakeError, KEY_LEN, MAX_HANDSHAKE_LEN, MAX_TRANSPORT_LEN, ServerReply,
    Transport, TransportError,
};
use super::hello::Hello;
use super::keys::SessionKeys;
use super::netstring;
use super::packet::{COOKIE_LEN, MAX_COUNTER, PacketError, seal};
use super::server::MAGIC;
use super::sid::Sid;

mod events;
mod peers;

pub use events::{ClientCloseReason, ClientEvent, ClientStats, ClientTransmit};
use peers::Peers;
pub use peers::Received;

/// How often the cookie is sent until SID arrives.
pub const COOKIE_INTERVAL: Duration = Duration::from_secs(1);
/// How often the SID byte is sent once joined.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// How often PING is sent once joined.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
/// How long to wait for message 2, and then for SID. Longer than the server's own 10 s
/// limits, so that the server's verdict (or its closing the connection) arrives first.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// A joined session ends if the server sends nothing (PONG included) for this long.
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(30);
/// The audio frame length: one FRAME tick, one call to `handle_audio_frame`.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);
/// PKT of the first media packet. Never 0, so a receiver that starts its "last PKT" at 0
/// still accepts the first packet.
pub const FIRST_PKT: u32 = 1;

enum State {
    AwaitReply(ClientHandshake),
    AwaitSid {
        transport: Transport,
        cookie: [u8; COOKIE_LEN],
    },
    Joined {
        transport: Transport,
        sid: Sid,
    },
    Closed,
}

/// A client's session with a VoRS server.
pub struct ClientSession {
    state: State,
    closed: bool,
    keys: Option<SessionKeys>,
    inbuf: Vec<u8>,
    transmits: VecDeque<ClientTransmit>,
    events: VecDeque<ClientEvent>,
    peers: Peers,
    muted: bool,
    next_pkt: u32,
    frame: u32,
    /// Reply or SID deadline before joining; server silence deadline after.
    deadline: Option<Instant>,
    next_cookie: Option<Instant>,
    next_keepalive: Option<Instant>,
    next_ping: Option<Instant>,
    stats: ClientStats,
}

impl fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSession")
            .field("sid", &self.sid())
            .field("closed", &self.closed)
            .field("muted", &self.muted)
            .field("peers", &self.peers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ClientSession {
    /// Starts a session with the server whose static key is `server_public`: queues the
    /// magic and message 1 for the TCP connection. `wall` is the wall-clock time now; message
    /// 1 carries it as SENT_AT, and a server whose clock differs by more than its window
    /// (30 s by default) closes the connection without an answer.
    pub fn new(
        now: Instant,
        wall: UnixTime,
        server_public: &[u8; KEY_LEN],
        hello: &Hello<'_>,
    ) -> Result<Self, HandshakeError> {
        let (handshake, msg1) = ClientHandshake::start(server_public, hello, Some(wall))?;
        let mut bytes = MAGIC.to_vec();
        netstring::encode(&msg1, &mut bytes);
        Ok(ClientSession {
            state: State::AwaitReply(handshake),
            closed: false,
            keys: None,
            inbuf: Vec::new(),
            transmits: VecDeque::from([ClientTransmit::Tcp(bytes)]),
            events: VecDeque::new(),
            peers: Peers::default(),
            muted: false,
            next_pkt: FIRST_PKT,
            frame: 0,
            deadline: Some(now + REPLY_TIMEOUT),
            next_cookie: None,
            next_keepalive: None,
            next_ping: None,
            stats: ClientStats::default(),
        })
    }

    /// Our SID, from the server's SID message until the session closes; `None` before and
    /// after.
    pub fn sid(&self) -> Option<Sid> {
        match self.state {
            State::Joined { sid, .. } => Some(sid),
            _ => None,
        }
    }

    /// Our media keys, derived from the handshake once message 2 accepted us (the server
    /// hands the same keys to the other members in ADD, so they can check and decrypt our
    /// media). They stay readable after the session closed.
    pub fn keys(&self) -> Option<&SessionKeys> {
        self.keys.as_ref()
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether we are muted ([`ClientSession::set_muted`]; a session starts unmuted): audio
    /// frames then still advance FRAME, but no media packet is sent.
    pub fn is_muted(&self) -> bool {
        self.muted
    }

    /// The session's counters since [`ClientSession::new`]. They only grow and stay
    /// readable after the session closed, for a summary at the end of a call.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// The members the server announced (ADD, not yet DEL) as `(SID, username, muted)`, in
    /// increasing SID order.
    pub fn peers(&self) -> impl Iterator<Item = (Sid, &str, bool)> {
        self.peers.iter()
    }

    /// Bytes read from the TCP connection, split anywhere: each netstring is handled once it
    /// is complete and the rest waits for more bytes. Bytes that break the protocol (framing,
    /// a message that does not decrypt, one only clients send) end the session with
    /// [`ClientEvent::Closed`]; a closed session ignores further bytes.
    pub fn handle_tcp(&mut self, now: Instant, bytes: &[u8]) {
        if self.closed {
            return;
        }
        self.inbuf.extend_from_slice(bytes);
        while !self.closed {
            let max = match self.state {
                State::AwaitReply(_) => MAX_HANDSHAKE_LEN,
                _ => MAX_TRANSPORT_LEN,
            };
            let (range, used) = match netstring::decode(&self.inbuf, max) {
                Ok(Some((payload, used))) => {
                    let start = used - 1 - payload.len();
                    (start..start + payload.len(), used)
                }
                Ok(None) => return,
                Err(e) => return self.close(ClientCloseReason::Framing(e)),
            };
            let frame = self.inbuf[range].to_vec();
            self.inbuf.drain(..used);
            self.handle_frame(now, &frame);
        }
    }

    /// The server closed the TCP connection (or it broke).
    pub fn handle_tcp_closed(&mut self, _now: Instant) {
        let reason = match self.state {
            State::AwaitReply(_) => ClientCloseReason::ClosedUnanswered,
            _ => ClientCloseReason::PeerClosed,
        };
        self.close(reason);
    }

    /// A UDP datagram from the server: a peer's media packet. On success the Opus payload
    /// is appended to `opus_out`; drops are counted in [`ClientSession::stats`]. A closed
    /// session takes no more media.
    pub fn handle_datagram(
        &mut self,
        _now: Instant,
        datagram: &[u8],
        opus_out: &mut Vec<u8>,
    ) -> Option<Received> {
        if self.closed {
            return None;
        }
        self.peers.receive(datagram, opus_out, &mut self.stats)
    }

    /// One 20 ms audio frame was read from the microphone and encoded: `opus` is the packet,
    /// or `None` when the encoder's DTX says nothing needs sending. Counts the frame once
    /// joined; sends a media packet unless muted. Returns whether a packet was queued.
    pub fn handle_audio_frame(
        &mut self,
        _now: Instant,
        opus: Option<&[u8]>,
    ) -> Result<bool, PacketError> {
        let State::Joined { sid, .. } = self.state else {
            return Ok(false);
        };
        let frame = self.frame;
        // FRAME is informational (receivers compare it with PKT), so it wraps at 24 bits.
        self.frame = (self.frame + 1) & MAX_COUNTER;
        self.stats.frames += 1;
        let (Some(opus), false) = (opus, self.muted) else {
            return Ok(false);
        };
        if self.next_pkt > MAX_COUNTER {
            self.close(ClientCloseReason::CounterExhausted);
            return Ok(false);
        }
        let Some(keys) = &self.keys else {
            return Ok(false);
        };
        let mut datagram = Vec::new();
        seal(keys, sid, self.next_pkt, frame, opus, &mut datagram)?;
        self.next_pkt += 1;
        self.stats.packets_sent += 1;
        self.transmits.push_back(ClientTransmit::Udp(datagram));
        Ok(true)
    }

    /// Mutes or unmutes: no media while muted (frames still count), and the room is told.
    /// Nothing changes once the session is closed.
    pub fn set_muted(&mut self, now: Instant, muted: bool) {
        if self.closed || self.muted == muted {
            return;
        }
        self.muted = muted;
        if self.sid().is_some() {
            let msg = if muted {
                Control::Muted(None)
            } else {
                Control::Unmuted(None)
            };
            self.send_control(now, &msg);
        }
    }

    /// Sends `msg` to the room as CHAT; the server relays it, with our SID, to every other
    /// member. Only while joined: [`SessionError::WrongState`] before our SID arrived,
    /// [`SessionError::Closed`] after the end, and [`SessionError::Transport`] for a text
    /// over [`MAX_CHAT_LEN`](crate::vors::control::MAX_CHAT_LEN) bytes (nothing is sent).
    pub fn send_chat(&mut self, _now: Instant, msg: &str) -> Result<(), SessionError> {
        let State::Joined { transport, .. } = &mut self.state else {
            return Err(if self.closed {
                SessionError::Closed
            } else {
                SessionError::WrongState
            });
        };
        let mut frame = Vec::new();
        transport
            .encrypt_control(&Control::Chat { sid: None, msg }, &mut frame)
            .map_err(SessionError::Transport)?;
        self.transmits.push_back(ClientTransmit::Tcp(frame));
        Ok(())
    }

    /// Time passed; call when [`ClientSession::poll_timeout`] is reached.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            let reason = match self.state {
                State::Joined { .. } => ClientCloseReason::ServerTimeout,
                _ => ClientCloseReason::ReplyTimeout,
            };
            return self.close(reason);
        }
        if due(self.next_cookie, now) {
            if let State::AwaitSid { cookie, .. } = &self.state {
                self.transmits
                    .push_back(ClientTransmit::Udp(cookie.to_vec()));
                self.stats.cookies_sent += 1;
            }
            self.next_cookie = Some(now + COOKIE_INTERVAL);
        }
        if due(self.next_keepalive, now) {
            if let Some(sid) = self.sid() {
                self.transmits.push_back(ClientTransmit::Udp(vec![sid.0]));
                self.stats.keepalives_sent += 1;
            }
            self.next_keepalive = Some(now + KEEPALIVE_INTERVAL);
        }
        if due(self.next_ping, now) {
            self.send_control(now, &Control::Ping);
            self.stats.pings_sent += 1;
            self.next_ping = Some(now + PING_INTERVAL);
        }
    }

    /// The next thing to send, oldest first: TCP bytes must go out in this order, UDP
    /// datagrams as they come.
    pub fn poll_transmit(&mut self) -> Option<ClientTransmit> {
        self.transmits.pop_front()
    }

    /// The next event for the application, oldest first; [`ClientEvent::Closed`] is the last.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When to call [`ClientSession::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.deadline,
            self.next_cookie,
            self.next_keepalive,
            self.next_ping,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn handle_frame(&mut self, now: Instant, frame: &[u8]) {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::AwaitReply(handshake) => match handshake.finish(frame) {
                Ok((ServerReply::Cookie(cookie), transport, keys)) => {
                    self.keys = Some(keys);
                    self.state = State::AwaitSid { transport, cookie };
                    self.deadline = Some(now + REPLY_TIMEOUT);
                    // The first cookie goes out at once; handle_timeout repeats it.
                    self.next_cookie = Some(now);
                    self.handle_timeout(now);
                }
                Ok((ServerReply::Err(reason), _, _)) => {
                    self.events.push_back(ClientEvent::Rejected(reason));
                    self.close(ClientCloseReason::Rejected);
                }
                Err(e) => self.close(ClientCloseReason::Handshake(e)),
            },
            State::AwaitSid {
                mut transport,
                cookie,
            } => {
                let msg = transport.decrypt_control(frame);
                self.state = State::AwaitSid { transport, cookie };
                self.on_control(now, msg);
            }
            State::Joined { mut transport, sid } => {
                let msg = transport.decrypt_control(frame);
                self.state = State::Joined { transport, sid };
                self.on_control(now, msg);
            }
            State::Closed => {}
        }
    }

    fn on_control(&mut self, now: Instant, msg: Result<ControlOwned, TransportError>) {
        let msg = match msg {
            Ok(msg) => msg,
            Err(e) => return self.close(ClientCloseReason::Transport(e)),
        };
        if self.sid().is_some() {
            self.deadline = Some(now + SERVER_TIMEOUT);
        }
        match msg {
            ControlOwned::Sid(sid) => self.joined(now, sid),
            ControlOwned::Pong => {}
            ControlOwned::Add { sid, username, key } => {
                let keys = SessionKeys::from_wire(&key);
                self.peers.add(sid, username.clone(), keys);
                let event = ClientEvent::PeerAdded { sid, username };
                self.events.push_back(event);
            }
            ControlOwned::Del(sid) => {
                if let Some(username) = self.peers.remove(sid) {
                    let event = ClientEvent::PeerRemoved { sid, username };
                    self.events.push_back(event);
                }
            }
            ControlOwned::Muted(Some(sid)) | ControlOwned::Unmuted(Some(sid)) => {
                let muted = matches!(msg, ControlOwned::Muted(_));
                self.peers.set_muted(sid, muted);
                let event = if muted {
                    ClientEvent::PeerMuted(sid)
                } else {
                    ClientEvent::PeerUnmuted(sid)
                };
                self.events.push_back(event);
            }
            ControlOwned::Chat {
                sid: Some(sid),
                msg,
            } => {
                self.events.push_back(ClientEvent::Chat { sid, msg });
            }
            ControlOwned::Err(reason) => {
                self.events.push_back(ClientEvent::Rejected(reason));
                self.close(ClientCloseReason::Rejected);
            }
            _ => self.close(ClientCloseReason::UnexpectedMessage),
        }
    }

    fn joined(&mut self, now: Instant, sid: Sid) {
        let State::AwaitSid { .. } = self.state else {
            return; // A repeated SID changes nothing.
        };
        if let State::AwaitSid { transport, .. } = std::mem::replace(&mut self.state, State::Closed)
        {
            self.state = State::Joined { transport, sid };
        }
        self.events.push_back(ClientEvent::Joined(sid));
        self.deadline = Some(now + SERVER_TIMEOUT);
        self.next_cookie = None;
        self.next_keepalive = Some(now);
        self.next_ping = Some(now + PING_INTERVAL);
        if self.muted {
            self.send_control(now, &Control::Muted(None));
        }
        self.handle_timeout(now);
    }

    /// Queues a control message without fields that could exceed a limit.
    fn send_control(&mut self, _now: Instant, msg: &Control<'_>) {
        let (State::AwaitSid { transport, .. } | State::Joined { transport, .. }) = &mut self.state
        else {
            return;
        };
        let mut frame = Vec::new();
        match transport.encrypt_control(msg, &mut frame) {
            Ok(()) => self.transmits.push_back(ClientTransmit::Tcp(frame)),
            Err(e) => self.close(ClientCloseReason::Transport(e)),
        }
    }

    fn close(&mut self, reason: ClientCloseReason) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.state = State::Closed;
        self.deadline = None;
        self.next_cookie = None;
        self.next_keepalive = None;
        self.next_ping = None;
        self.inbuf = Vec::new();
        self.events.push_back(ClientEvent::Closed(reason));
    }
}

fn due(at: Option<Instant>, now: Instant) -> bool {
    at.is_some_and(|t| now >= t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vors::freshness::Freshness;
    use crate::vors::handshake::generate_keypair;
    use crate::vors::packet::open;
    use crate::vors::server::{ServerEvent, ServerSession};

    /// Both sides' wall clock in these tests.
    const WALL: UnixTime = UnixTime(1_800_000_000);

    /// A client wired to a real server session by hand (no room): `accept` with cookie 0x11.
    struct Pair {
        client: ClientSession,
        server: ServerSession,
        t0: Instant,
        udp: Vec<Vec<u8>>,
        server_events: Vec<ServerEvent>,
    }

    impl Pair {
        fn new() -> Self {
            let (private, public) = generate_keypair().expect("keypair");
            let t0 = Instant::now();
            let hello = Hello {
                username: "c",
                room: "r",
                password_hash: None,
            };
            let client = ClientSession::new(t0, WALL, &public, &hello).expect("client");
            let server = ServerSession::new(t0, &private);
            Pair {
                client,
                server,
                t0,
                udp: Vec::new(),
                server_events: Vec::new(),
            }
        }

        /// Moves TCP bytes both ways until quiet; collects the client's UDP datagrams.
        fn pump(&mut self, now: Instant) {
            loop {
                let mut moved = false;
                while let Some(t) = self.client.poll_transmit() {
                    moved = true;
                    match t {
                        ClientTransmit::Tcp(bytes) => self.server.handle_tcp(now, &bytes),
                        ClientTransmit::Udp(bytes) => self.udp.push(bytes),
                    }
                }
                while let Some(bytes) = self.server.poll_transmit() {
                    moved = true;
                    self.client.handle_tcp(now, &bytes);
                }
                while let Some(event) = self.server.poll_event() {
                    moved = true;
                    match event {
                        ServerEvent::Message1 { .. } => self
                            .server
                            .open_hello(now, WALL, &Freshness::default())
                            .expect("open"),
                        ServerEvent::Hello(_) => {
                            self.server
                                .accept(now, &[0x11; COOKIE_LEN])
                                .expect("accept");
                        }
                        event => self.server_events.push(event),
                    }
                }
                if !moved {
                    return;
                }
            }
        }

        fn events(&mut self) -> Vec<ClientEvent> {
            std::iter::from_fn(|| self.client.poll_event()).collect()
        }

        fn joined(sid: Sid) -> Self {
            let mut pair = Pair::new();
            pair.pump(pair.t0);
            pair.server
                .send_control(pair.t0, &Control::Sid(sid))
                .expect("sid");
            pair.pump(pair.t0);
            assert_eq!(pair.events(), vec![ClientEvent::Joined(sid)]);
            pair.udp.clear();
            pair
        }
    }

    /// Keys of the peer that [`with_pat`] adds.
    fn pat_keys() -> SessionKeys {
        SessionKeys::from_wire(&[3; 48])
    }

    /// A session joined as SID 1 whose server has sent the ADD of "pat" (SID 9, keys
    /// [`pat_keys`]); its events are not drained.
    fn with_pat() -> Pair {
        let mut pair = Pair::joined(Sid(1));
        let wire = pat_keys().to_wire();
        let add = Control::Add {
            sid: Sid(9),
            username: "pat",
            key: &wire,
        };
        pair.server.send_control(pair.t0, &add).expect("add");
        pair.pump(pair.t0);
        pair
    }

    /// Pat's media packet `pkt` (frame `pkt - 1`) holding "voice".
    fn from_pat(pkt: u32) -> Vec<u8> {
        let mut packet = Vec::new();
        seal(&pat_keys(), Sid(9), pkt, pkt - 1, b"voice", &mut packet).expect("seal");
        packet
    }

    #[test]
    fn starts_with_magic_and_message_1() {
        let mut pair = Pair::new();
        match pair.client.poll_transmit() {
            Some(ClientTransmit::Tcp(bytes)) => {
                assert_eq!(&bytes[..7], MAGIC);
                let (msg1, used) = netstring::decode(&bytes[7..], MAX_HANDSHAKE_LEN)
                    .expect("valid")
                    .expect("complete");
                assert_eq!(used, bytes.len() - 7);
                assert!(msg1.len() > 1600, "hybrid message 1 carries a Kyber key");
            }
            other => panic!("expected TCP bytes, got {other:?}"),
        }
    }

    #[test]
    fn cookie_goes_out_at_once_then_every_second_until_sid() {
        let mut pair = Pair::new();
        pair.pump(pair.t0);
        assert_eq!(pair.udp, vec![vec![0x11; COOKIE_LEN]]);
        for s in 1..=3 {
            let now = pair.t0 + Duration::from_secs(s);
            assert_eq!(pair.client.poll_timeout(), Some(now));
            pair.client.handle_timeout(now);
            pair.pump(now);
        }
        assert_eq!(pair.udp.len(), 4);
        assert_eq!(pair.client.stats().cookies_sent, 4);
        let now = pair.t0 + Duration::from_millis(3500);
        pair.server
            .send_control(now, &Control::Sid(Sid(6)))
            .expect("sid");
        pair.pump(now);
        assert_eq!(pair.events(), vec![ClientEvent::Joined(Sid(6))]);
        // Joining sends the first keepalive at once and stops the cookies.
        assert_eq!(pair.udp.last(), Some(&vec![6]));
        assert_eq!(pair.client.poll_timeout(), Some(now + KEEPALIVE_INTERVAL));
    }

    #[test]
    fn a_close_before_message_2_says_the_hello_went_unanswered() {
        let mut pair = Pair::new();
        pair.client.handle_tcp_closed(pair.t0);
        assert_eq!(
            pair.events(),
            vec![ClientEvent::Closed(ClientCloseReason::ClosedUnanswered)]
        );
        let mut pair = Pair::new();
        pair.pump(pair.t0);
        pair.client.handle_tcp_closed(pair.t0);
        assert_eq!(
            pair.events(),
            vec![ClientEvent::Closed(ClientCloseReason::PeerClosed)]
        );
    }

    #[test]
    fn message_1_carries_the_wall_clock() {
        let (private, public) = generate_keypair().expect("keypair");
        let hello = Hello {
            username: "c",
            room: "r",
            password_hash: None,
        };
        let t0 = Instant::now();
        let mut client = ClientSession::new(t0, WALL, &public, &hello).expect("client");
        let Some(ClientTransmit::Tcp(bytes)) = client.poll_transmit() else {
            panic!("TCP bytes first");
        };
        let (msg1, _) = netstring::decode(&bytes[MAGIC.len()..], MAX_HANDSHAKE_LEN)
            .expect("valid")
            .expect("complete");
        let (_, _, sent_at) =
            crate::vors::handshake::ServerHandshake::respond_to(&private, msg1).expect("msg1");
        assert_eq!(sent_at, Some(WALL));
    }

    #[test]
    fn no_sid_in_time_ends_the_session() {
        let mut pair = Pair::new();
        pair.pump(pair.t0);
        pair.client.handle_timeout(pair.t0 + REPLY_TIMEOUT);
        assert_eq!(
            pair.events(),
            vec![ClientEvent::Closed(ClientCloseReason::ReplyTimeout)]
        );
    }

    #[test]
    fn pings_every_ten_seconds_and_times_out_on_silence() {
        let mut pair = Pair::joined(Sid(1));
        let mut now = pair.t0;
        for _ in 0..10 {
            now += KEEPALIVE_INTERVAL;
            pair.client.handle_timeout(now);
            pair.pump(now);
        }
        assert_eq!(pair.client.stats().pings_sent, 1);
        assert_eq!(pair.client.stats().keepalives_sent, 11);
        // The server's PONG at t0+10 s moved the silence deadline.
        pair.client
            .handle_timeout(now + SERVER_TIMEOUT - Duration::from_millis(1));
        assert!(!pair.client.is_closed());
        pair.client.handle_timeout(now + SERVER_TIMEOUT);
        let events = pair.events();
        assert_eq!(
            events.last(),
            Some(&ClientEvent::Closed(ClientCloseReason::ServerTimeout))
        );
    }

    #[test]
    fn frames_count_while_muted_and_pkt_only_counts_packets() {
        let mut pair = Pair::joined(Sid(2));
        let keys = pair.client.keys().expect("keys").clone();
        let t = pair.t0;
        assert_eq!(pair.client.handle_audio_frame(t, Some(b"a")), Ok(true));
        pair.client.set_muted(t, true);
        for _ in 0..3 {
            assert_eq!(pair.client.handle_audio_frame(t, Some(b"b")), Ok(false));
        }
        pair.client.set_muted(t, false);
        assert_eq!(pair.client.handle_audio_frame(t, None), Ok(false));
        assert_eq!(pair.client.handle_audio_frame(t, Some(b"c")), Ok(true));
        pair.pump(t);
        assert_eq!(
            pair.server_events,
            vec![ServerEvent::Muted, ServerEvent::Unmuted]
        );
        let media: Vec<_> = pair
            .udp
            .iter()
            .filter(|d| d.len() > COOKIE_LEN - 1)
            .collect();
        assert_eq!(media.len(), 2);
        let mut opus = Vec::new();
        assert_eq!(open(&keys, media[0], &mut opus), Ok((FIRST_PKT, 0)));
        assert_eq!(open(&keys, media[1], &mut opus), Ok((FIRST_PKT + 1, 5)));
        assert_eq!(opus, b"ac");
        assert_eq!(pair.client.stats().frames, 6);
    }

    #[test]
    fn add_and_del_drive_the_peer_table_and_its_media() {
        let mut pair = with_pat();
        pair.server
            .send_control(pair.t0, &Control::Muted(Some(Sid(9))))
            .expect("muted");
        pair.pump(pair.t0);
        let added = ClientEvent::PeerAdded {
            sid: Sid(9),
            username: "pat".to_owned(),
        };
        assert_eq!(pair.events(), vec![added, ClientEvent::PeerMuted(Sid(9))]);
        assert_eq!(
            pair.client.peers().collect::<Vec<_>>(),
            vec![(Sid(9), "pat", true)]
        );
        let mut opus = Vec::new();
        assert!(
            pair.client
                .handle_datagram(pair.t0, &from_pat(1), &mut opus)
                .is_some()
        );
        assert_eq!(opus, b"voice");

        pair.server
            .send_control(pair.t0, &Control::Del(Sid(9)))
            .expect("del");
        pair.pump(pair.t0);
        let removed = ClientEvent::PeerRemoved {
            sid: Sid(9),
            username: "pat".to_owned(),
        };
        assert_eq!(pair.events(), vec![removed]);
        assert_eq!(
            pair.client
                .handle_datagram(pair.t0, &from_pat(2), &mut opus),
            None
        );
        assert_eq!(pair.client.stats().dropped_unknown_sid, 1);
    }

    #[test]
    fn a_closed_session_takes_no_media_and_no_mute() {
        let mut pair = with_pat();
        pair.client.handle_tcp_closed(pair.t0);
        assert!(pair.client.is_closed());
        let mut opus = Vec::new();
        assert_eq!(
            pair.client
                .handle_datagram(pair.t0, &from_pat(1), &mut opus),
            None
        );
        assert!(opus.is_empty(), "media decoded after close");
        assert_eq!(pair.client.stats().packets_received, 0);
        pair.client.set_muted(pair.t0, true);
        assert!(!pair.client.is_muted(), "muted after close");
        assert_eq!(pair.client.poll_transmit(), None);
    }

    #[test]
    fn chat_needs_a_sid_and_client_only_messages_are_refused() {
        let mut pair = Pair::new();
        assert_eq!(
            pair.client.send_chat(pair.t0, "hi"),
            Err(SessionError::WrongState)
        );
        let mut pair = Pair::joined(Sid(1));
        pair.client.send_chat(pair.t0, "hi").expect("chat");
        pair.pump(pair.t0);
        assert_eq!(pair.server_events, vec![ServerEvent::Chat("hi".to_owned())]);
        pair.server
            .send_control(pair.t0, &Control::Ping)
            .expect("send");
        pair.pump(pair.t0);
        let closed = ClientEvent::Closed(ClientCloseReason::UnexpectedMessage);
        assert_eq!(pair.events(), vec![closed]);
    }
}
