//! Moose line streams: each a WebSocket client sending the PCM stream of DESIGN.md §3
//! (1024-byte binary messages, 390.625 a second) and checking what its line sends back.
//!
//! The upgrade is a plain RFC 6455 request with an `Origin` header (the original Go server
//! insists on one). Frames are encoded with `moose_proto::ws` once per stream; a send only
//! rewrites the masked stamp. The mask is fixed per connection: it is random, but the same
//! for every frame, which spares the bench re-masking 1 KiB per message; the relay unmasks
//! whatever mask a frame carries.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use moose_proto::http::accept_key;
use moose_proto::ws::{self, Opcode};
use rand::Rng;

use super::outbuf::OutBuf;
use super::stamp::{self, PCM_MESSAGE_LEN, STAMP_LEN};
use super::tally::{Inbox, Tally};
use super::{Endpoint, LoadError, Protocol, WorkerSetup, fd_hint};
use crate::bind;

/// Largest message accepted from the server (the relay's default limit).
const MAX_MESSAGE: usize = 64 * 1024;
/// Longest response head accepted.
const MAX_HEAD: usize = 8 * 1024;
/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// Outgoing backlog above which sends are skipped (about 250 ms of PCM): the socket is not
/// draining, and piling more on would only measure the bench's own queue.
const MAX_BACKLOG: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Upgrading,
    Open,
    Closed,
}

/// One stream: its connection, its prebuilt frame, and what it has received.
struct Peer {
    index: usize,
    sock: TcpStream,
    phase: Phase,
    ws_key: String,
    frame: Vec<u8>,
    payload_at: usize,
    mask: [u8; 4],
    seq: u32,
    out: OutBuf,
    /// An incomplete response head or frame, kept between reads.
    carry: Vec<u8>,
    /// A fragmented message being put back together (servers that split messages).
    fragments: Option<Vec<u8>>,
    inbox: Inbox,
}

pub(super) fn worker(setup: WorkerSetup, endpoint: &Mutex<Endpoint>) -> Result<Tally, LoadError> {
    let (addr, host, origin, line_keys, binds) = match &*endpoint
        .lock()
        .map_err(|_| LoadError::Plan("endpoint poisoned".into()))?
    {
        Endpoint::Ws {
            addr,
            host,
            origin,
            line_keys,
            binds,
        } => (
            *addr,
            host.clone(),
            origin.clone(),
            line_keys.clone(),
            binds.clone(),
        ),
        _ => return Err(LoadError::Plan("not a WebSocket endpoint".into())),
    };
    let mut poll = Poll::new().map_err(LoadError::io("create an epoll instance"))?;
    let mut peers = Vec::with_capacity(setup.streams.len());
    for (slot, &index) in setup.streams.iter().enumerate() {
        let room = index / setup.room_size;
        let key = line_keys.get(room).ok_or_else(|| {
            LoadError::Plan(format!("no apikey for line {room}: give one per line"))
        })?;
        // Stream i leaves from the i-th source address, round the list.
        let from = binds.get(index % binds.len().max(1)).copied();
        let mut peer = Peer::connect(index, (from, addr), &host, &origin, key, &setup)?;
        poll.registry()
            .register(
                &mut peer.sock,
                Token(slot),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(LoadError::io("register a socket"))?;
        peers.push(peer);
    }

    let clock = setup.shared.clock;
    let mut pacer = setup.pacer(Protocol::Ws);
    let mut tally = Tally::default();
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; MAX_MESSAGE + ws::MAX_HEADER + READ_CHUNK];
    loop {
        let now = clock.now_ns();
        if pacer.finished(now) {
            break;
        }
        match poll.poll(&mut events, Some(pacer.wait(now))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LoadError::io("poll")(e)),
        }
        for event in events.iter() {
            let Some(peer) = peers.get_mut(event.token().0) else {
                continue;
            };
            let past_end = pacer.past_end(clock.now_ns());
            let result = peer.on_event(
                event.is_writable() || event.is_error(),
                event.is_readable() || event.is_read_closed(),
                &mut scratch,
                &setup,
                &mut tally,
            );
            match result {
                Ok(()) => {}
                Err(_) if past_end => peer.phase = Phase::Closed,
                Err(e) => return Err(e),
            }
        }
        let now = clock.now_ns();
        while let Some(due) = pacer.pop_due(now) {
            let peer = &mut peers[due.slot];
            let sent_at = clock.now_ns();
            if let Err(e) = peer.send(due.at_ns, sent_at, &mut tally) {
                if !pacer.past_end(sent_at) {
                    return Err(e);
                }
            }
        }
        pacer.sample(now, &mut tally);
    }
    Ok(tally)
}

impl Peer {
    fn connect(
        index: usize,
        (from, addr): (Option<IpAddr>, SocketAddr),
        host: &str,
        origin: &str,
        line_key: &str,
        setup: &WorkerSetup,
    ) -> Result<Peer, LoadError> {
        let sock = bind::mio_tcp_connect(from, addr).map_err(|e| {
            LoadError::stream(index, format!("connect to {addr}: {e}{}", fd_hint(&e)))
        })?;
        let _ = sock.set_nodelay(true);
        let mut rng = rand::thread_rng();
        let nonce: [u8; 16] = rng.r#gen();
        let ws_key = base64_std(&nonce);
        let mask: [u8; 4] = rng.r#gen();

        let mut payload = vec![0u8; PCM_MESSAGE_LEN];
        stamp::fill(&mut payload, index as u32);
        let mut frame = Vec::with_capacity(PCM_MESSAGE_LEN + ws::MAX_HEADER);
        ws::encode_client_frame(true, Opcode::Binary, mask, &payload, &mut frame);
        let payload_at = frame.len() - PCM_MESSAGE_LEN;

        let mut out = OutBuf::default();
        let request = format!(
            "GET /ws?apikey={line_key} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {ws_key}\r\nSec-WebSocket-Version: 13\r\n\
             Origin: {origin}\r\nUser-Agent: moose-bench\r\n\r\n"
        );
        // Not connected yet: the request waits in the buffer for the first writable event.
        out.queue(request.as_bytes());
        let first = setup.room_first(index);
        Ok(Peer {
            index,
            sock,
            phase: Phase::Connecting,
            ws_key,
            frame,
            payload_at,
            mask,
            seq: 0,
            out,
            carry: Vec::new(),
            fragments: None,
            inbox: Inbox::new(index as u32, first as u32, setup.room_size as u32),
        })
    }

    fn fail(&self, what: impl Into<String>) -> LoadError {
        LoadError::stream(self.index, what)
    }

    fn on_event(
        &mut self,
        writable: bool,
        readable: bool,
        scratch: &mut [u8],
        setup: &WorkerSetup,
        tally: &mut Tally,
    ) -> Result<(), LoadError> {
        if self.phase == Phase::Closed {
            return Ok(());
        }
        if self.phase == Phase::Connecting {
            if let Ok(Some(e)) | Err(e) = self.sock.take_error() {
                return Err(self.fail(format!("connect: {e}")));
            }
            match self.sock.peer_addr() {
                Ok(_) => self.phase = Phase::Upgrading,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(self.fail(format!("connect: {e}"))),
            }
        }
        if writable || self.out.pending() > 0 {
            self.out
                .flush(&mut self.sock)
                .map_err(|e| self.fail(format!("write: {e}")))?;
        }
        if readable {
            self.read(scratch, setup, tally)?;
        }
        Ok(())
    }

    /// Reads until the socket is empty (mio's events are edge-triggered).
    fn read(
        &mut self,
        scratch: &mut [u8],
        setup: &WorkerSetup,
        tally: &mut Tally,
    ) -> Result<(), LoadError> {
        let clock = setup.shared.clock;
        loop {
            let kept = self.carry.len();
            scratch[..kept].copy_from_slice(&self.carry);
            let n = match self.sock.read(&mut scratch[kept..kept + READ_CHUNK]) {
                Ok(0) => {
                    let what = match self.phase {
                        Phase::Open => "the server closed the connection",
                        _ => "the server closed the connection before answering the upgrade",
                    };
                    self.phase = Phase::Closed;
                    return Err(self.fail(what));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.fail(format!("read: {e}"))),
            };
            let now = clock.now_ns();
            let buf = &scratch[..kept + n];
            let used = self.consume(buf, now, setup, tally)?;
            self.carry.clear();
            self.carry.extend_from_slice(&buf[used..]);
            if n < READ_CHUNK {
                // A short read emptied the socket: anything arriving later raises a new
                // edge, so the read that would only say "would block" is saved (as tokio
                // does on Linux). Halves the read syscalls.
                return Ok(());
            }
        }
    }

    /// Handles the complete head or frames at the start of `buf`; returns the bytes used.
    fn consume(
        &mut self,
        buf: &[u8],
        now: u64,
        setup: &WorkerSetup,
        tally: &mut Tally,
    ) -> Result<usize, LoadError> {
        let mut at = 0;
        if self.phase == Phase::Upgrading {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                if buf.len() > MAX_HEAD {
                    return Err(self.fail("the upgrade response head is too long"));
                }
                return Ok(0);
            };
            self.upgraded(&buf[..end + 4])?;
            setup.ready();
            at = end + 4;
        }
        while self.phase == Phase::Open {
            let rest = &buf[at..];
            let h = match ws::decode_server_header(rest, MAX_MESSAGE) {
                Ok(Some(h)) if rest.len() >= h.frame_len() => h,
                Ok(_) => break,
                Err(e) => return Err(self.fail(format!("bad frame from the server: {e}"))),
            };
            self.frame_in(h, &rest[h.payload_range()], now, tally)?;
            at += h.frame_len();
        }
        Ok(at)
    }

    fn upgraded(&mut self, head: &[u8]) -> Result<(), LoadError> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(self.fail("the server's upgrade response is not HTTP")),
        }
        let code = response.code.unwrap_or(0);
        if code != 101 {
            let reason = response.reason.unwrap_or("");
            return Err(self.fail(format!(
                "the server refused the WebSocket upgrade: HTTP {code} {reason}"
            )));
        }
        let accept = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("Sec-WebSocket-Accept"))
            .map(|h| h.value);
        if accept != Some(accept_key(&self.ws_key).as_bytes()) {
            return Err(self.fail("the server's Sec-WebSocket-Accept is wrong or missing"));
        }
        self.phase = Phase::Open;
        Ok(())
    }

    fn frame_in(
        &mut self,
        h: ws::FrameHeader,
        payload: &[u8],
        now: u64,
        tally: &mut Tally,
    ) -> Result<(), LoadError> {
        match h.opcode {
            Opcode::Binary if h.fin && self.fragments.is_none() => {
                self.message(payload, now, tally);
            }
            Opcode::Binary => self.fragments = Some(payload.to_vec()),
            Opcode::Continuation => {
                let Some(mut message) = self.fragments.take() else {
                    tally.corrupted += 1;
                    return Ok(());
                };
                message.extend_from_slice(payload);
                if h.fin {
                    self.message(&message, now, tally);
                } else {
                    self.fragments = Some(message);
                }
            }
            Opcode::Text => tally.corrupted += 1,
            Opcode::Ping => {
                let mut pong = Vec::with_capacity(payload.len() + ws::MAX_HEADER);
                ws::encode_client_frame(true, Opcode::Pong, self.mask, payload, &mut pong);
                self.out
                    .write(&mut self.sock, &pong)
                    .map_err(|e| self.fail(format!("write: {e}")))?;
            }
            Opcode::Pong => {}
            Opcode::Close => {
                let why = match ws::parse_close(payload) {
                    Ok(Some((code, reason))) => format!("code {} {reason}", code.0),
                    _ => "no code".to_owned(),
                };
                self.phase = Phase::Closed;
                return Err(self.fail(format!("the server closed the line ({why})")));
            }
        }
        Ok(())
    }

    fn message(&mut self, payload: &[u8], now: u64, tally: &mut Tally) {
        match stamp::check(payload, |_, _| PCM_MESSAGE_LEN) {
            Ok(s) if self.inbox.accept(&s) => tally.delivered(s.sent_ns, now),
            _ => tally.corrupted += 1,
        }
    }

    /// Sends the next message, stamped `now`, unless the backlog is full.
    fn send(&mut self, due_ns: u64, now: u64, tally: &mut Tally) -> Result<(), LoadError> {
        if self.phase != Phase::Open {
            return Ok(());
        }
        if self.out.pending() > MAX_BACKLOG {
            tally.send_skipped += 1;
            return Ok(());
        }
        let mut head = stamp::encode(self.index as u32, self.seq, now);
        ws::apply_mask(&mut head, self.mask, 0);
        self.frame[self.payload_at..self.payload_at + STAMP_LEN].copy_from_slice(&head);
        self.seq += 1;
        tally.sent(due_ns, now);
        self.out
            .write(&mut self.sock, &self.frame)
            .map_err(|e| self.fail(format!("write: {e}")))
    }
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
