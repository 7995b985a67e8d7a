//! One member's TCP connection, seen from the server: magic, handshake, cookie wait, PING.
//!
//! ```text
//! C -> S  "VoRS v4"                     (7 bytes, no framing)
//! C -> S  NS(Noise message 1)           -> ServerEvent::Message1: the relay screens the
//!                                          client's ephemeral key (a replay cache), then
//!                                          open_hello(wall clock) or refuse_replayed()
//!                                       -> ServerEvent::Hello: the relay asks the room
//! S -> C  NS(Noise message 2)           <- accept(cookie) or reject(reason)
//! C -> S  UDP cookie                    (the room registers the address; 10 s limit)
//! S -> C  NS(["SID", sid])              <- send_control(Sid): the member has joined
//! C -> S  NS(["PING"]) every 10 s       -> PONG; 30 s without PING ends the session
//! ```
//!
//! Sans-IO: the relay feeds TCP bytes, timeouts and the room's decisions in, and drains
//! bytes, events and the next deadline out.
//!
//! **Drain rule.** After every `handle_*`, `open_hello`, `refuse_replayed`, `accept`, `reject`
//! or `send_control` call, drain
//! [`ServerSession::poll_transmit`] until `None` (write the bytes to the socket in order),
//! then [`ServerSession::poll_event`] until `None`, then re-arm the timer with
//! [`ServerSession::poll_timeout`] and call [`ServerSession::handle_timeout`] when it passes.
//! After [`ServerEvent::Closed`], flush what `poll_transmit` gave and close the connection.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::SessionError;
use super::control::{Control, ControlOwned};
use super::freshness::{Freshness, Staleness, UnixTime};
use super::handshake::{
    HandshakeError, KEY_LEN, MAX_HANDSHAKE_LEN, MAX_TRANSPORT_LEN, ServerHandshake, Transport,
    TransportError, client_ephemeral,
};
use super::hello::HelloOwned;
use super::keys::SessionKeys;
use super::netstring::{self, NetstringError};
use super::packet::COOKIE_LEN;

/// What the client sends first, unframed.
pub const MAGIC: &[u8; 7] = b"VoRS v4";
/// The magic and message 1 must arrive within this long of the connection (and the room's
/// decision with them).
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// The UDP cookie must arrive within this long of message 2.
pub const COOKIE_TIMEOUT: Duration = Duration::from_secs(10);
/// A joined member that sends no PING for this long is gone.
pub const PING_TIMEOUT: Duration = Duration::from_secs(30);
/// Input buffer capacity kept once every byte read is consumed: enough for the control
/// frames of a call, not for the handshake's message 1.
const IDLE_INBUF: usize = 256;

/// What the relay must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// Message 1 arrived whole; nothing of it is decrypted yet. `ephemeral` is the client's
    /// ephemeral key, in clear at its start: check it against the keys seen within the
    /// freshness window, then call [`ServerSession::open_hello`] (new key) or
    /// [`ServerSession::refuse_replayed`] (seen before), before reading the connection again.
    Message1 {
        /// The client's ephemeral X25519 public key ([`client_ephemeral`]).
        ephemeral: [u8; KEY_LEN],
    },
    /// Message 1 decrypted, and fresh. Ask the room (`Room::join`), then call
    /// [`ServerSession::accept`] or [`ServerSession::reject`].
    Hello(HelloOwned),
    /// The joined member muted itself: tell the room.
    Muted,
    /// The joined member unmuted itself: tell the room.
    Unmuted,
    /// The joined member said something: tell the room.
    Chat(String),
    /// The session is over: flush, close the connection, and make the room forget the
    /// member (`Room::leave`) if it joined.
    Closed(ServerCloseReason),
}

/// Why a server session ended.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCloseReason {
    /// The first 7 bytes were not `VoRS v4`.
    BadMagic,
    /// A TCP frame was not a netstring within the size limit.
    Framing(NetstringError),
    /// Message 1 could not be read or message 2 written.
    Handshake(HandshakeError),
    /// The relay has seen message 1's ephemeral key before: a copy of an earlier message 1
    /// ([`ServerSession::refuse_replayed`]). Nothing was decrypted and nothing is answered.
    Replayed,
    /// Message 1 decrypted, but its SENT_AT is missing or outside the window: nothing is
    /// answered (message 2 would cost as much as an acceptance).
    Stale(Staleness),
    /// A control message did not decrypt or decode.
    Transport(TransportError),
    /// The client sent a message only the server may send.
    UnexpectedMessage,
    /// No magic and message 1 (or no room decision) within [`HELLO_TIMEOUT`].
    HelloTimeout,
    /// No UDP cookie within [`COOKIE_TIMEOUT`] of message 2.
    CookieTimeout,
    /// No PING within [`PING_TIMEOUT`].
    PingTimeout,
    /// The room refused the member (message 2 carries the reason).
    Rejected,
    /// The client closed the connection.
    PeerClosed,
}

enum State {
    Magic,
    Hello,
    /// Message 1 is whole at the start of `inbuf`, `frame_len` bytes with its netstring;
    /// waiting for the relay's screening.
    Screening {
        frame_len: usize,
    },
    Deciding(ServerHandshake),
    AwaitCookie(Transport),
    Joined(Transport),
    Closed,
}

/// One member's connection on the server. `Send`, so it can move to the room's core.
pub struct ServerSession {
    state: State,
    /// Set once, with the `Closed` event; `state` is also `Closed` then (and briefly while a
    /// handshake is moved out of it).
    closed: Option<ServerCloseReason>,
    /// The server's static key, kept only until message 1 is read.
    static_private: Option<[u8; KEY_LEN]>,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    events: VecDeque<ServerEvent>,
    deadline: Option<Instant>,
}

impl fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Magic => "magic",
            State::Hello => "hello",
            State::Screening { .. } => "screening",
            State::Deciding(_) => "deciding",
            State::AwaitCookie(_) => "await-cookie",
            State::Joined(_) => "joined",
            State::Closed => "closed",
        };
        f.debug_struct("ServerSession")
            .field("state", &state)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl ServerSession {
    /// A session for a connection accepted at `now`, answering with the server's static key.
    pub fn new(now: Instant, static_private: &[u8; KEY_LEN]) -> Self {
        ServerSession {
            state: State::Magic,
            closed: None,
            static_private: Some(*static_private),
            inbuf: Vec::new(),
            out: Vec::new(),
            events: VecDeque::new(),
            deadline: Some(now + HELLO_TIMEOUT),
        }
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Why the session ended (the reason its [`ServerEvent::Closed`] carries); `None` while
    /// it goes on.
    pub fn close_reason(&self) -> Option<ServerCloseReason> {
        self.closed
    }

    /// Bytes read from the connection, split anywhere: the session waits for whole frames
    /// and never fails on partial input. Bytes that break the protocol end the session with
    /// [`ServerEvent::Closed`] (its [`ServerCloseReason`] says why); a closed session ignores
    /// further bytes.
    pub fn handle_tcp(&mut self, now: Instant, bytes: &[u8]) {
        if self.is_closed() {
            return;
        }
        self.inbuf.extend_from_slice(bytes);
        self.process(now);
    }

    /// The client closed its side of the connection (or it broke).
    pub fn handle_tcp_closed(&mut self, _now: Instant) {
        self.close(ServerCloseReason::PeerClosed);
    }

    /// Time passed; call when [`ServerSession::poll_timeout`] is reached.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_none_or(|d| now < d) {
            return;
        }
        let reason = match self.state {
            State::Magic | State::Hello | State::Screening { .. } | State::Deciding(_) => {
                ServerCloseReason::HelloTimeout
            }
            State::AwaitCookie(_) => ServerCloseReason::CookieTimeout,
            State::Joined(_) => ServerCloseReason::PingTimeout,
            State::Closed => return,
        };
        self.close(reason);
    }

    /// After [`ServerEvent::Message1`], for a message 1 whose ephemeral key is new: decrypts
    /// it (the costly step) and judges its SENT_AT by `freshness` at `wall`, the server's
    /// wall-clock time now. A fresh hello gives [`ServerEvent::Hello`]; a stale one, or one
    /// that does not decrypt, closes the session without an answer
    /// ([`ServerSession::close_reason`] says which).
    pub fn open_hello(
        &mut self,
        now: Instant,
        wall: UnixTime,
        freshness: &Freshness,
    ) -> Result<(), SessionError> {
        let State::Screening { frame_len } = self.state else {
            return Err(self.state_error());
        };
        let (Some(key), Some((msg1, _))) =
            (self.static_private.take(), self.frame(MAX_HANDSHAKE_LEN))
        else {
            self.close(ServerCloseReason::Handshake(HandshakeError::Setup));
            return Ok(());
        };
        match ServerHandshake::respond_to(&key, &self.inbuf[msg1]) {
            Ok((handshake, hello, sent_at)) => match freshness.judge(sent_at, wall) {
                Ok(()) => {
                    self.state = State::Deciding(handshake);
                    self.events.push_back(ServerEvent::Hello(hello));
                    self.consumed(frame_len);
                    // Bytes after message 1 break the protocol (see `process`).
                    self.process(now);
                }
                Err(staleness) => self.close(ServerCloseReason::Stale(staleness)),
            },
            Err(e) => self.close(ServerCloseReason::Handshake(e)),
        }
        Ok(())
    }

    /// After [`ServerEvent::Message1`], for a message 1 whose ephemeral key was seen before:
    /// ends the session with [`ServerCloseReason::Replayed`], nothing decrypted or answered.
    pub fn refuse_replayed(&mut self) -> Result<(), SessionError> {
        let State::Screening { .. } = self.state else {
            return Err(self.state_error());
        };
        self.close(ServerCloseReason::Replayed);
        Ok(())
    }

    /// The room admitted the member: sends message 2 with `cookie` and starts the cookie
    /// timer. Returns the member's media keys for the room (`Room::set_keys`).
    pub fn accept(
        &mut self,
        now: Instant,
        cookie: &[u8; COOKIE_LEN],
    ) -> Result<SessionKeys, SessionError> {
        let handshake = match std::mem::replace(&mut self.state, State::Closed) {
            State::Deciding(handshake) => handshake,
            other => {
                self.state = other;
                return Err(self.state_error());
            }
        };
        match handshake.accept(cookie) {
            Ok((msg2, transport, keys)) => {
                netstring::encode(&msg2, &mut self.out);
                self.state = State::AwaitCookie(transport);
                self.deadline = Some(now + COOKIE_TIMEOUT);
                Ok(keys)
            }
            Err(e) => {
                self.close(ServerCloseReason::Handshake(e));
                Err(SessionError::Handshake(e))
            }
        }
    }

    /// The room refused the member: sends message 2 with `["ERR", reason]` and ends the
    /// session (flush before closing).
    pub fn reject(&mut self, _now: Instant, reason: &str) -> Result<(), SessionError> {
        let handshake = match std::mem::replace(&mut self.state, State::Closed) {
            State::Deciding(handshake) => handshake,
            other => {
                self.state = other;
                return Err(self.state_error());
            }
        };
        match handshake.reject(reason) {
            Ok(msg2) => {
                netstring::encode(&msg2, &mut self.out);
                self.close(ServerCloseReason::Rejected);
                Ok(())
            }
            Err(e) => {
                self.close(ServerCloseReason::Handshake(e));
                Err(SessionError::Handshake(e))
            }
        }
    }

    /// Sends a control message from the room (SID, ADD, DEL, MUTED, UNMUTED, CHAT). Sending
    /// SID completes the join: the cookie timer stops and the PING timer starts.
    pub fn send_control(&mut self, now: Instant, msg: &Control<'_>) -> Result<(), SessionError> {
        let transport = match &mut self.state {
            State::AwaitCookie(transport) | State::Joined(transport) => transport,
            State::Closed => return Err(SessionError::Closed),
            _ => return Err(SessionError::WrongState),
        };
        transport
            .encrypt_control(msg, &mut self.out)
            .map_err(SessionError::Transport)?;
        if let (Control::Sid(_), State::AwaitCookie(_)) = (msg, &self.state) {
            if let State::AwaitCookie(transport) = std::mem::replace(&mut self.state, State::Closed)
            {
                self.state = State::Joined(transport);
            }
            self.deadline = Some(now + PING_TIMEOUT);
        }
        Ok(())
    }

    /// Everything queued for the connection since the last call, as one buffer to write
    /// before the next one.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }

    /// The next event for the relay, oldest first; [`ServerEvent::Closed`] is the last.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        let event = self.events.pop_front();
        if self.events.is_empty() {
            // Events are rare (the hello, then mutes and chat); an idle member holds no queue.
            self.events = VecDeque::new();
        }
        event
    }

    /// When to call [`ServerSession::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    fn state_error(&self) -> SessionError {
        if self.is_closed() {
            SessionError::Closed
        } else {
            SessionError::WrongState
        }
    }

    fn close(&mut self, reason: ServerCloseReason) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(reason);
        self.state = State::Closed;
        self.deadline = None;
        self.static_private = None;
        self.inbuf = Vec::new();
        self.events.push_back(ServerEvent::Closed(reason));
    }

    /// Consumes whole frames from `inbuf` for as long as the state allows.
    fn process(&mut self, now: Instant) {
        loop {
            let consumed = match &self.state {
                State::Magic => self.read_magic(),
                State::Hello => self.read_hello(),
                State::AwaitCookie(_) | State::Joined(_) => self.read_control(now),
                // Noise lets the client send nothing between messages 1 and 2, so bytes now
                // are a protocol violation (and must not pile up while the relay screens
                // message 1 or the room decides).
                State::Screening { frame_len } if self.inbuf.len() > *frame_len => {
                    self.close(ServerCloseReason::UnexpectedMessage);
                    None
                }
                State::Deciding(_) if !self.inbuf.is_empty() => {
                    self.close(ServerCloseReason::UnexpectedMessage);
                    None
                }
                State::Screening { .. } | State::Deciding(_) | State::Closed => None,
            };
            match consumed {
                Some(n) if !self.is_closed() => self.consumed(n),
                _ => return,
            }
        }
    }

    /// Drops the first `n` bytes of `inbuf`, whose frame has been handled.
    fn consumed(&mut self, n: usize) {
        self.inbuf.drain(..n);
        if self.inbuf.is_empty() && self.inbuf.capacity() > IDLE_INBUF {
            // Message 1 is over a kilobyte; a member then idles for the whole call, reading a
            // few small control frames.
            self.inbuf = Vec::new();
        }
    }

    fn read_magic(&mut self) -> Option<usize> {
        let have = self.inbuf.len().min(MAGIC.len());
        if self.inbuf[..have] != MAGIC[..have] {
            self.close(ServerCloseReason::BadMagic);
            return None;
        }
        if have < MAGIC.len() {
            return None;
        }
        self.state = State::Hello;
        Some(MAGIC.len())
    }

    /// Frames message 1 and stops for the relay's screening, message 1 left in `inbuf`
    /// (consumed by [`ServerSession::open_hello`]).
    fn read_hello(&mut self) -> Option<usize> {
        let (msg1, used) = self.frame(MAX_HANDSHAKE_LEN)?;
        match client_ephemeral(&self.inbuf[msg1]) {
            Some(ephemeral) => {
                self.state = State::Screening { frame_len: used };
                self.events.push_back(ServerEvent::Message1 { ephemeral });
            }
            None => self.close(ServerCloseReason::Handshake(HandshakeError::Crypto)),
        }
        None
    }

    fn read_control(&mut self, now: Instant) -> Option<usize> {
        let (ciphertext, used) = self.frame(MAX_TRANSPORT_LEN)?;
        let (State::AwaitCookie(transport) | State::Joined(transport)) = &mut self.state else {
            return None;
        };
        // Borrowck: `frame` returned a range into `inbuf`, which `transport` does not alias.
        let msg = match transport.decrypt_control(&self.inbuf[ciphertext]) {
            Ok(msg) => msg,
            Err(e) => {
                self.close(ServerCloseReason::Transport(e));
                return None;
            }
        };
        let joined = matches!(self.state, State::Joined(_));
        match msg {
            ControlOwned::Ping => {
                if joined {
                    self.deadline = Some(now + PING_TIMEOUT);
                }
                // Cannot fail: PONG has no fields to exceed a limit.
                if let Err(e) = self.send_control(now, &Control::Pong) {
                    debug_assert!(false, "PONG failed: {e}");
                }
            }
            // Before SID the member is not in the room yet: nothing to tell anyone.
            ControlOwned::Muted(None)
            | ControlOwned::Unmuted(None)
            | ControlOwned::Chat { sid: None, .. }
                if !joined => {}
            ControlOwned::Muted(None) => self.events.push_back(ServerEvent::Muted),
            ControlOwned::Unmuted(None) => self.events.push_back(ServerEvent::Unmuted),
            ControlOwned::Chat { sid: None, msg } => self.events.push_back(ServerEvent::Chat(msg)),
            _ => {
                self.close(ServerCloseReason::UnexpectedMessage);
                return None;
            }
        }
        Some(used)
    }

    /// The next complete netstring in `inbuf`: the payload's range and the bytes it spans.
    fn frame(&mut self, max_len: usize) -> Option<(std::ops::Range<usize>, usize)> {
        match netstring::decode(&self.inbuf, max_len) {
            Ok(Some((payload, used))) => {
                let start = used - 1 - payload.len();
                Some((start..start + payload.len(), used))
            }
            Ok(None) => None,
            Err(e) => {
                self.close(ServerCloseReason::Framing(e));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vors::handshake::{ClientHandshake, ServerReply, generate_keypair};
    use crate::vors::hello::Hello;
    use crate::vors::sid::Sid;

    struct Peer {
        session: ServerSession,
        client: Option<ClientHandshake>,
        transport: Option<Transport>,
        t0: Instant,
    }

    /// The server's wall clock in these tests.
    const WALL: UnixTime = UnixTime(1_800_000_000);

    const HELLO: Hello<'static> = Hello {
        username: "ann",
        room: "r",
        password_hash: None,
    };

    /// A session that has read a valid magic and message 1 (sent at `sent_at`) from a real
    /// client handshake and stopped for screening; the client's ephemeral key.
    fn screening(sent_at: Option<UnixTime>) -> (Peer, [u8; KEY_LEN]) {
        let (private, public) = generate_keypair().expect("keypair");
        let t0 = Instant::now();
        let mut session = ServerSession::new(t0, &private);
        let (client, msg1) = ClientHandshake::start(&public, &HELLO, sent_at).expect("start");
        let mut bytes = MAGIC.to_vec();
        netstring::encode(&msg1, &mut bytes);
        // One byte at a time: the decoder must wait, never fail, on partial input.
        for b in &bytes {
            session.handle_tcp(t0, std::slice::from_ref(b));
        }
        let ephemeral = match session.poll_event() {
            Some(ServerEvent::Message1 { ephemeral }) => ephemeral,
            other => panic!("expected message 1, got {other:?}"),
        };
        assert_eq!(Some(ephemeral), client_ephemeral(&msg1));
        assert_eq!(session.poll_event(), None, "nothing decrypted yet");
        let peer = Peer {
            session,
            client: Some(client),
            transport: None,
            t0,
        };
        (peer, ephemeral)
    }

    /// A session that has read and opened a fresh message 1.
    fn hello_received() -> Peer {
        let (mut peer, _) = screening(Some(WALL));
        peer.session
            .open_hello(peer.t0, WALL, &Freshness::default())
            .expect("screening");
        match peer.session.poll_event() {
            Some(ServerEvent::Hello(h)) => assert_eq!(h.as_hello(), HELLO),
            other => panic!("expected hello, got {other:?}"),
        }
        peer
    }

    fn accepted() -> Peer {
        let mut peer = hello_received();
        peer.session
            .accept(peer.t0, &[5; COOKIE_LEN])
            .expect("accept");
        let out = peer.session.poll_transmit().expect("message 2");
        let (msg2, used) = netstring::decode(&out, MAX_HANDSHAKE_LEN)
            .expect("valid")
            .expect("complete");
        assert_eq!(used, out.len());
        let client = peer.client.take().expect("client");
        let (reply, transport, _) = client.finish(msg2).expect("finish");
        assert_eq!(reply, ServerReply::Cookie([5; COOKIE_LEN]));
        peer.transport = Some(transport);
        peer
    }

    fn send(peer: &mut Peer, now: Instant, msg: Control<'_>) {
        let mut frame = Vec::new();
        let transport = peer.transport.as_mut().expect("transport");
        transport
            .encrypt_control(&msg, &mut frame)
            .expect("encrypt");
        peer.session.handle_tcp(now, &frame);
    }

    fn closed_with(session: &mut ServerSession) -> Option<ServerCloseReason> {
        std::iter::from_fn(|| session.poll_event()).find_map(|e| match e {
            ServerEvent::Closed(reason) => Some(reason),
            _ => None,
        })
    }

    #[test]
    fn bad_magic_closes_at_the_first_wrong_byte() {
        let mut session = ServerSession::new(Instant::now(), &[1; KEY_LEN]);
        session.handle_tcp(Instant::now(), b"VoRS");
        assert!(!session.is_closed());
        session.handle_tcp(Instant::now(), b" v3");
        assert_eq!(closed_with(&mut session), Some(ServerCloseReason::BadMagic));
        assert_eq!(session.poll_timeout(), None);
    }

    #[test]
    fn oversized_message_1_is_refused_on_its_length() {
        let mut session = ServerSession::new(Instant::now(), &[1; KEY_LEN]);
        session.handle_tcp(Instant::now(), b"VoRS v499999:");
        assert_eq!(
            closed_with(&mut session),
            Some(ServerCloseReason::Framing(NetstringError::TooLong))
        );
    }

    #[test]
    fn hello_timeout_fires_at_ten_seconds() {
        let t0 = Instant::now();
        let mut session = ServerSession::new(t0, &[1; KEY_LEN]);
        assert_eq!(session.poll_timeout(), Some(t0 + HELLO_TIMEOUT));
        session.handle_timeout(t0 + HELLO_TIMEOUT - Duration::from_millis(1));
        assert!(!session.is_closed());
        session.handle_timeout(t0 + HELLO_TIMEOUT);
        assert_eq!(
            closed_with(&mut session),
            Some(ServerCloseReason::HelloTimeout)
        );
    }

    #[test]
    fn accept_then_cookie_timeout() {
        let mut peer = accepted();
        assert_eq!(peer.session.poll_timeout(), Some(peer.t0 + COOKIE_TIMEOUT));
        peer.session.handle_timeout(peer.t0 + COOKIE_TIMEOUT);
        assert_eq!(
            closed_with(&mut peer.session),
            Some(ServerCloseReason::CookieTimeout)
        );
    }

    #[test]
    fn reject_sends_err_then_closes() {
        let mut peer = hello_received();
        peer.session
            .reject(peer.t0, "name is taken")
            .expect("reject");
        let out = peer.session.poll_transmit().expect("message 2");
        let (msg2, _) = netstring::decode(&out, MAX_HANDSHAKE_LEN)
            .expect("valid")
            .expect("complete");
        let client = peer.client.take().expect("client");
        let (reply, _, _) = client.finish(msg2).expect("finish");
        assert_eq!(reply, ServerReply::Err("name is taken".to_owned()));
        assert_eq!(
            closed_with(&mut peer.session),
            Some(ServerCloseReason::Rejected)
        );
        assert_eq!(
            peer.session.accept(peer.t0, &[0; 16]),
            Err(SessionError::Closed)
        );
    }

    #[test]
    fn an_idle_member_keeps_no_handshake_buffers() {
        // A relay holds a session per member for the whole call: message 1's bytes and the
        // hello event must not stay allocated behind it.
        let mut peer = accepted();
        assert_eq!(peer.session.inbuf.capacity(), 0);
        assert_eq!(peer.session.events.capacity(), 0);
        let t0 = peer.t0;
        send(&mut peer, t0, Control::Ping);
        assert!(peer.session.inbuf.capacity() <= IDLE_INBUF);
    }

    #[test]
    fn sid_joins_and_pings_keep_the_member() {
        let mut peer = accepted();
        let t = peer.t0 + Duration::from_secs(2);
        peer.session
            .send_control(t, &Control::Sid(Sid(9)))
            .expect("sid");
        assert!(matches!(peer.session.state, State::Joined(_)));
        assert_eq!(peer.session.poll_timeout(), Some(t + PING_TIMEOUT));
        let frame = peer.session.poll_transmit().expect("SID frame");
        let (ct, _) = netstring::decode(&frame, MAX_TRANSPORT_LEN)
            .expect("ok")
            .expect("whole");
        let transport = peer.transport.as_mut().expect("transport");
        assert_eq!(transport.decrypt_control(ct), Ok(ControlOwned::Sid(Sid(9))));

        let t2 = t + Duration::from_secs(25);
        send(&mut peer, t2, Control::Ping);
        assert_eq!(peer.session.poll_timeout(), Some(t2 + PING_TIMEOUT));
        let frame = peer.session.poll_transmit().expect("PONG frame");
        let (ct, _) = netstring::decode(&frame, MAX_TRANSPORT_LEN)
            .expect("ok")
            .expect("whole");
        let transport = peer.transport.as_mut().expect("transport");
        assert_eq!(transport.decrypt_control(ct), Ok(ControlOwned::Pong));

        send(&mut peer, t2, Control::Muted(None));
        send(
            &mut peer,
            t2,
            Control::Chat {
                sid: None,
                msg: "hi",
            },
        );
        assert_eq!(peer.session.poll_event(), Some(ServerEvent::Muted));
        assert_eq!(
            peer.session.poll_event(),
            Some(ServerEvent::Chat("hi".to_owned()))
        );
        peer.session.handle_timeout(t2 + PING_TIMEOUT);
        assert_eq!(
            closed_with(&mut peer.session),
            Some(ServerCloseReason::PingTimeout)
        );
    }

    #[test]
    fn server_only_messages_from_the_client_close_the_session() {
        let mut peer = accepted();
        peer.session
            .send_control(peer.t0, &Control::Sid(Sid(1)))
            .expect("sid");
        let t0 = peer.t0;
        send(&mut peer, t0, Control::Del(Sid(3)));
        assert_eq!(
            closed_with(&mut peer.session),
            Some(ServerCloseReason::UnexpectedMessage)
        );
    }

    #[test]
    fn bytes_before_message_2_close_the_session() {
        let mut peer = hello_received();
        peer.session.handle_tcp(peer.t0, b"1:x,");
        let reason = closed_with(&mut peer.session);
        assert_eq!(reason, Some(ServerCloseReason::UnexpectedMessage));
    }

    #[test]
    fn a_replayed_message_1_is_refused_unread_and_unanswered() {
        let (mut peer, _) = screening(Some(WALL));
        peer.session.refuse_replayed().expect("screening");
        assert_eq!(
            closed_with(&mut peer.session),
            Some(ServerCloseReason::Replayed)
        );
        assert_eq!(peer.session.poll_transmit(), None);
        assert_eq!(
            peer.session.close_reason(),
            Some(ServerCloseReason::Replayed)
        );
    }

    #[test]
    fn stale_and_untimed_hellos_are_closed_without_an_answer() {
        let rules = Freshness::default();
        let late = UnixTime(WALL.0 + rules.max_skew + 1);
        for (sent_at, wall, staleness) in [
            (Some(WALL), late, Staleness::OutsideWindow),
            (Some(late), WALL, Staleness::OutsideWindow),
            (None, WALL, Staleness::Untimed),
        ] {
            let (mut peer, _) = screening(sent_at);
            peer.session
                .open_hello(peer.t0, wall, &rules)
                .expect("screening");
            assert_eq!(
                closed_with(&mut peer.session),
                Some(ServerCloseReason::Stale(staleness)),
                "{sent_at:?} at {wall:?}"
            );
            assert_eq!(peer.session.poll_transmit(), None);
        }
        // Within the window either way, and untimed when the rules allow it.
        let lenient = Freshness {
            accept_untimed: true,
            ..rules
        };
        for (sent_at, wall) in [
            (Some(WALL), UnixTime(WALL.0 + rules.max_skew)),
            (Some(WALL), UnixTime(WALL.0 - rules.max_skew)),
            (None, WALL),
        ] {
            let (mut peer, _) = screening(sent_at);
            peer.session
                .open_hello(peer.t0, wall, &lenient)
                .expect("screening");
            assert!(
                matches!(peer.session.poll_event(), Some(ServerEvent::Hello(_))),
                "{sent_at:?} at {wall:?}"
            );
        }
    }

    #[test]
    fn bytes_while_screening_close_the_session() {
        let (mut peer, _) = screening(Some(WALL));
        peer.session.handle_tcp(peer.t0, b"1:x,");
        assert_eq!(
            closed_with(&mut peer.session),
            Some(ServerCloseReason::UnexpectedMessage)
        );
        assert_eq!(
            peer.session
                .open_hello(peer.t0, WALL, &Freshness::default()),
            Err(SessionError::Closed)
        );
    }

    #[test]
    fn a_session_waits_while_screening_until_its_deadline() {
        let (mut peer, _) = screening(Some(WALL));
        assert_eq!(peer.session.poll_timeout(), Some(peer.t0 + HELLO_TIMEOUT));
        peer.session.handle_timeout(peer.t0 + HELLO_TIMEOUT);
        assert_eq!(
            closed_with(&mut peer.session),
            Some(ServerCloseReason::HelloTimeout)
        );
    }

    #[test]
    fn calls_out_of_order_are_refused() {
        let mut peer = hello_received();
        assert_eq!(
            peer.session.send_control(peer.t0, &Control::Pong),
            Err(SessionError::WrongState)
        );
        let mut fresh = ServerSession::new(peer.t0, &[1; KEY_LEN]);
        assert_eq!(
            fresh.accept(peer.t0, &[0; 16]),
            Err(SessionError::WrongState)
        );
        assert_eq!(fresh.reject(peer.t0, "no"), Err(SessionError::WrongState));
        assert_eq!(fresh.refuse_replayed(), Err(SessionError::WrongState));
        assert_eq!(
            fresh.open_hello(peer.t0, WALL, &Freshness::default()),
            Err(SessionError::WrongState)
        );
        assert_eq!(
            peer.session.refuse_replayed(),
            Err(SessionError::WrongState)
        );
    }

    #[test]
    fn sessions_can_move_between_cores() {
        fn assert_send<T: Send>() {}
        assert_send::<ServerSession>();
    }
}
