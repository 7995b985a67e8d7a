//! The Moose side of the baseline: WebSocket lines with nothing but the forwarding.
//!
//! A connection is accepted by whichever worker the kernel's SO_REUSEPORT hash picks. That
//! worker reads the upgrade request, answers `101`, and hands the socket to the line's owner
//! worker (a hash of the apikey) through a channel and an eventfd, as the relay does, so every
//! member of a line lives on one thread and a message is forwarded without locks. Each binary
//! message is unmasked in the read buffer and written whole (`writev` of the server frame) to
//! every other member; what a full socket does not take waits in that member's byte backlog.
//! No rate limits, no audio-time queues, no key list: any well-formed apikey opens a line.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};

use moose_proto::apikey;
use moose_proto::http::{self, Parse, Status, Upgrade};
use moose_proto::ws::{self, CloseCode, Fragments, MessagePart, Opcode};

use super::sys::{Epoll, EventFd};

/// Largest message forwarded, as the relay's default: a longer one closes with 1009.
pub(crate) const MAX_MESSAGE: usize = 64 * 1024;
/// A member whose unsent bytes exceed this misses whole messages until it catches up.
const MAX_BACKLOG: usize = 4 * 1024 * 1024;
/// A connection's first read buffer; it doubles while a frame does not fit, up to
/// [`MAX_BUFFER`], and is reused (never zeroed again) for every read after.
const FIRST_BUFFER: usize = 4096;
/// Room for the largest frame, so a full buffer always holds at least one whole frame.
const MAX_BUFFER: usize = MAX_MESSAGE + ws::MAX_HEADER;

/// A connection moving to the worker that owns its line.
#[derive(Debug)]
pub(crate) struct Handoff {
    stream: TcpStream,
    line: Arc<str>,
    /// Bytes still to write (the `101`).
    out: Vec<u8>,
    /// Bytes read after the request head: the first frames.
    input: Vec<u8>,
}

/// Where workers send connections: one mailbox per worker, in worker order.
#[derive(Debug)]
pub(crate) struct Mailbox {
    /// Handoffs for this worker.
    pub(crate) tx: Sender<Handoff>,
    /// Wakes this worker's loop.
    pub(crate) wake: Arc<EventFd>,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    /// `None` until the upgrade request is read.
    line: Option<Arc<str>>,
    /// Read buffer; `input[..filled]` holds bytes not yet handled.
    input: Vec<u8>,
    filled: usize,
    out: Vec<u8>,
    fragments: Fragments,
    /// Unmasked payload of a fragmented message, until its last frame.
    partial: Vec<u8>,
    /// Close once `out` is written.
    closing: bool,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            line: None,
            input: Vec::new(),
            filled: 0,
            out: Vec::new(),
            fragments: Fragments::new(MAX_MESSAGE),
            partial: Vec::new(),
            closing: false,
        }
    }

    /// Writes the frame `head` + `body` now if nothing is waiting, keeping what the socket
    /// does not take; behind a backlog, appends it whole, or drops it when the backlog is
    /// over its cap.
    fn send(&mut self, head: &[u8], body: &[u8]) {
        if self.closing {
            return;
        }
        let mut skip = 0;
        if self.out.is_empty() {
            let io = [IoSlice::new(head), IoSlice::new(body)];
            skip = match (&self.stream).write_vectored(&io) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(_) => return, // The read side sees the broken connection and drops it.
            };
        } else if self.out.len() > MAX_BACKLOG {
            return;
        }
        for s in [head, body] {
            let taken = skip.min(s.len());
            self.out.extend_from_slice(&s[taken..]);
            skip -= taken;
        }
    }

    /// One read into the free end of the buffer (grown first if full).
    fn read_some(&mut self) -> ReadOutcome {
        if self.filled == self.input.len() {
            let len = (self.input.len() * 2).clamp(FIRST_BUFFER, MAX_BUFFER);
            if len == self.input.len() {
                // Cannot happen: a full MAX_BUFFER holds a whole frame, which was handled.
                return ReadOutcome::Gone;
            }
            self.input.resize(len, 0);
        }
        loop {
            return match (&self.stream).read(&mut self.input[self.filled..]) {
                Ok(0) => ReadOutcome::Gone,
                Ok(n) => {
                    self.filled += n;
                    ReadOutcome::Bytes {
                        full: self.filled == self.input.len(),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::Nothing,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => ReadOutcome::Gone,
            };
        }
    }

    /// Forgets the first `n` handled bytes of the buffer.
    fn consume(&mut self, n: usize) {
        self.input.copy_within(n..self.filled, 0);
        self.filled -= n;
    }

    /// Writes as much of the backlog as the socket takes. `Err` when the peer is gone.
    fn flush(&mut self) -> io::Result<()> {
        while !self.out.is_empty() {
            match (&self.stream).write(&self.out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => drop(self.out.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn close_with(&mut self, code: CloseCode, reason: &str) {
        ws::encode_server_close(code, reason, &mut self.out);
        self.closing = true;
    }

    fn refuse(&mut self, status: Status, extra: &[(&str, &str)]) {
        http::write_response(status, "text/plain", extra, b"", &mut self.out);
        self.closing = true;
    }
}

/// One worker's WebSocket connections and the lines it owns.
#[derive(Debug)]
pub(crate) struct WsSide {
    me: usize,
    mailboxes: Arc<[Mailbox]>,
    inbox: Receiver<Handoff>,
    conns: HashMap<u64, Conn>,
    lines: HashMap<Arc<str>, Vec<u64>>,
    next_token: u64,
}

impl WsSide {
    /// Worker `me`'s side; connection tokens start at `first_token`.
    pub(crate) fn new(
        me: usize,
        mailboxes: Arc<[Mailbox]>,
        inbox: Receiver<Handoff>,
        first_token: u64,
    ) -> WsSide {
        WsSide {
            me,
            mailboxes,
            inbox,
            conns: HashMap::new(),
            lines: HashMap::new(),
            next_token: first_token,
        }
    }

    /// Accepts every waiting connection.
    pub(crate) fn on_acceptable(&mut self, epoll: &Epoll, listener: &TcpListener) {
        while let Ok((stream, _)) = listener.accept() {
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let _ = stream.set_nodelay(true);
            let token = self.token();
            if epoll.add(stream.as_raw_fd(), token, false).is_ok() {
                self.conns.insert(token, Conn::new(stream));
            }
        }
    }

    /// Adopts the connections other workers handed over.
    pub(crate) fn on_handoffs(&mut self, epoll: &Epoll) {
        while let Ok(h) = self.inbox.try_recv() {
            let token = self.token();
            if epoll.add(h.stream.as_raw_fd(), token, true).is_err() {
                continue;
            }
            let mut conn = Conn::new(h.stream);
            conn.out = h.out;
            conn.filled = h.input.len();
            conn.input = h.input;
            conn.line = Some(Arc::clone(&h.line));
            self.lines.entry(h.line).or_default().push(token);
            self.conns.insert(token, conn);
            self.on_ready(epoll, token, true);
        }
    }

    /// Reads and forwards for connection `token` when `readable`, then writes its backlog
    /// (writability needs nothing else: the loop is level-triggered).
    pub(crate) fn on_ready(&mut self, epoll: &Epoll, token: u64, readable: bool) {
        // Out of the map while we work on it, so that forwarding can borrow the others.
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        let mut alive = true;
        // Handed-over connections may bring bytes read by the accepting worker.
        let mut pending = conn.filled > 0;
        while readable && !conn.closing {
            let more = match conn.read_some() {
                ReadOutcome::Bytes { full } => {
                    pending = true;
                    full
                }
                ReadOutcome::Nothing => false,
                ReadOutcome::Gone => {
                    alive = false;
                    false
                }
            };
            if pending {
                pending = false;
                if conn.line.is_none() {
                    match self.upgrade(epoll, token, conn) {
                        Some(c) => conn = c,
                        None => return, // Handed over to its owner.
                    }
                }
                if conn.line.is_some() {
                    self.forward_frames(epoll, &mut conn);
                }
            }
            // A read that did not fill the buffer emptied the socket; epoll tells when more
            // arrives.
            if !more {
                break;
            }
        }
        alive &= conn.flush().is_ok();
        if !alive || (conn.closing && conn.out.is_empty()) {
            self.drop_conn(token, conn);
            return;
        }
        let _ = epoll.modify(conn.stream.as_raw_fd(), token, !conn.out.is_empty());
        self.conns.insert(token, conn);
    }

    /// Answers a complete upgrade request: refuses it, or joins the line here, or hands the
    /// connection to the line's owner (then returns `None`).
    fn upgrade(&mut self, epoll: &Epoll, token: u64, mut conn: Conn) -> Option<Conn> {
        let (line, head_len) = match http::parse_request(&conn.input[..conn.filled]) {
            Ok(Parse::Partial) => return Some(conn),
            Err(e) => {
                conn.refuse(e.status(), &[]);
                return Some(conn);
            }
            Ok(Parse::Complete { value, head_len }) => match check_request(&value) {
                Ok((key, line)) => {
                    http::write_switching_protocols(key, &mut conn.out);
                    (Arc::from(line), head_len)
                }
                Err((status, extra)) => {
                    conn.refuse(status, extra);
                    return Some(conn);
                }
            },
        };
        conn.consume(head_len);
        let owner = owner_of(&line, self.mailboxes.len());
        if owner == self.me {
            conn.line = Some(Arc::clone(&line));
            self.lines.entry(line).or_default().push(token);
            return Some(conn);
        }
        let _ = epoll.delete(conn.stream.as_raw_fd());
        let mailbox = &self.mailboxes[owner];
        let handoff = Handoff {
            stream: conn.stream,
            line,
            out: conn.out,
            input: conn.input[..conn.filled].to_vec(),
        };
        if mailbox.tx.send(handoff).is_ok() {
            mailbox.wake.wake();
        }
        None
    }

    /// Handles every complete frame in `conn.input`.
    fn forward_frames(&mut self, epoll: &Epoll, conn: &mut Conn) {
        let mut input = std::mem::take(&mut conn.input);
        let filled = conn.filled;
        let mut at = 0;
        while !conn.closing {
            let h = match ws::decode_client_header(&input[at..filled], MAX_MESSAGE) {
                Ok(Some(h)) if filled - at >= h.frame_len() => h,
                Ok(_) => break,
                Err(e) => {
                    conn.close_with(e.close_code(), e.reason());
                    break;
                }
            };
            let frame = &mut input[at..at + h.frame_len()];
            at += h.frame_len();
            let part = match conn.fragments.on_data_frame(&h) {
                Ok(part) => part,
                Err(e) => {
                    conn.close_with(e.close_code(), e.reason());
                    break;
                }
            };
            let server_frame = ws::reframe_in_place(frame, &h);
            let payload = &frame[h.header_len..];
            match part {
                MessagePart::Whole(Opcode::Binary) => {
                    self.fan_out(epoll, conn, &frame[server_frame], &[]);
                }
                MessagePart::First(Opcode::Binary) | MessagePart::Middle => {
                    conn.partial.extend_from_slice(payload);
                }
                MessagePart::Last(_) => {
                    conn.partial.extend_from_slice(payload);
                    let mut header = [0u8; ws::MAX_SERVER_HEADER];
                    let n = ws::write_server_header_before(
                        true,
                        Opcode::Binary,
                        conn.partial.len(),
                        &mut header,
                    );
                    let whole = std::mem::take(&mut conn.partial);
                    self.fan_out(epoll, conn, &header[header.len() - n..], &whole);
                    conn.partial = whole;
                    conn.partial.clear();
                }
                MessagePart::Whole(Opcode::Ping) => {
                    ws::encode_server_frame(true, Opcode::Pong, payload, &mut conn.out);
                }
                MessagePart::Whole(Opcode::Close) => {
                    let code = match ws::parse_close(payload) {
                        Ok(Some((code, _))) => code,
                        Ok(None) => CloseCode::NORMAL,
                        Err(e) => e.close_code(),
                    };
                    conn.close_with(code, "");
                }
                MessagePart::Whole(Opcode::Text) | MessagePart::First(_) => {
                    conn.close_with(CloseCode::UNSUPPORTED_DATA, "binary messages only");
                }
                MessagePart::Whole(_) => {} // Pong.
            }
        }
        conn.input = input;
        conn.consume(at);
    }

    /// Sends one frame, `head` then `body`, to every member of `from`'s line but `from`
    /// (which is out of the map while it is read).
    fn fan_out(&mut self, epoll: &Epoll, from: &Conn, head: &[u8], body: &[u8]) {
        let Some(line) = from.line.as_ref() else {
            return;
        };
        for &token in self.lines.get(line).into_iter().flatten() {
            if let Some(member) = self.conns.get_mut(&token) {
                let was_idle = member.out.is_empty();
                member.send(head, body);
                if was_idle && !member.out.is_empty() {
                    // The socket is full: its writability event flushes the rest.
                    let _ = epoll.modify(member.stream.as_raw_fd(), token, true);
                }
            }
        }
    }

    fn drop_conn(&mut self, token: u64, conn: Conn) {
        if let Some(line) = &conn.line {
            if let Some(members) = self.lines.get_mut(line) {
                members.retain(|&t| t != token);
                if members.is_empty() {
                    self.lines.remove(line);
                }
            }
        }
        // Dropping the stream closes it, which also removes it from epoll.
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }
}

/// What one read brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadOutcome {
    /// New bytes; `full` when they filled the buffer (more may be waiting).
    Bytes { full: bool },
    /// Nothing waiting.
    Nothing,
    /// The peer closed, or the connection failed.
    Gone,
}

type Refusal = (Status, &'static [(&'static str, &'static str)]);

/// The `Sec-WebSocket-Key` and the line of an acceptable `GET /ws?apikey=KEY` upgrade.
fn check_request<'a>(req: &http::Request<'a>) -> Result<(&'a str, String), Refusal> {
    if req.path != "/ws" {
        return Err((Status::NOT_FOUND, &[]));
    }
    let key = match &req.upgrade {
        Upgrade::WebSocket { key } => *key,
        Upgrade::Invalid(e) => return Err((e.status(), e.extra_headers())),
        Upgrade::None => return Err((Status::UPGRADE_REQUIRED, &[("Upgrade", "websocket")])),
    };
    let line = match http::query_param(req.query, "apikey") {
        Ok(Some(line)) => line,
        Ok(None) => return Err((Status::UNAUTHORIZED, &[])),
        Err(e) => return Err((e.status(), &[])),
    };
    apikey::validate(line.as_bytes()).map_err(|_| (Status::UNAUTHORIZED, &[][..]))?;
    Ok((key, line.into_owned()))
}

/// The worker that owns a line. A fixed hash is fine here: the baseline has no adversary.
fn owner_of(line: &str, workers: usize) -> usize {
    let mut h = DefaultHasher::new();
    line.hash(&mut h);
    (h.finish() % workers as u64) as usize
}
