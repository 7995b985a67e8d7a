//! One peer's connection on its line's owner core: the reader that turns client frames into
//! shared server frames, and the writer that drains the peer's queue in batches.
//!
//! The hot path for an unfragmented binary message: one `recv` into a block shared by many
//! frames, an in-place unmask, the client header overwritten in place by the server header (see
//! `ws::reframe_in_place`), and one `Bytes` handed to every other peer's queue. No copy of the
//! payload in user space, no allocation per message (a block is allocated per ~64 KiB read).
//!
//! A queued message keeps its whole block alive, so it is *charged* in the receivers' queues
//! for every byte taken from the block since the last message queued (the frames between that
//! nothing forwarded: pongs, pings, a rate-capped message), not only its own: a receiver's
//! queue then bounds the memory it pins, about its bound plus one block. The alternative, to
//! copy small messages out of the block, costs an allocation and a copy per message where this
//! costs an addition; and a 1024-byte PCM message stays zero-copy either way. What this adds per
//! message: two additions when its frame is taken, and the rate cap's decision (`rate`).
//!
//! Pongs owed to a peer are capped: while it has [`MAX_QUEUED_CONTROL`] control frames queued
//! and unwritten (it does not read them), its further pings are ignored and counted, as RFC
//! 6455 allows (an endpoint may answer only some of a run of pings).
//!
//! What the frames ask for is decided without the socket (`FrameReader::dispatch` takes the
//! counters, the line and the sending member), so unit tests feed it bytes and read the queues.

use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_lite::io::{AsyncReadExt, ReadHalf};
use glommio::net::TcpStream;
use moose_proto::ws::{self, CloseCode, FrameError, FrameHeader, MessagePart, Opcode};
use tracing::debug;

use super::rate::ByteRate;
use super::{Line, Member};
use crate::outbound::writer;
use crate::shard::Shard;
use crate::stats::{CoreStats, Drop};
#[cfg(test)]
use crate::sys;

/// Size of a receive block; frames are split off it and shared until every receiver wrote them.
const BLOCK: usize = 64 * 1024;
/// A new block is taken when less than this is free at the end of the current one.
const MIN_FREE: usize = 4 * 1024;
/// The first block, until the peer sends a frame that does not fit: an idle peer holds this,
/// not a whole [`BLOCK`] (64 KiB per idle peer was most of its memory). A PCM frame does not
/// fit, so a sending peer moves to full blocks after one short read.
const FIRST_BLOCK: usize = 512;
/// The relay pings an idle peer this often; browsers answer with pong.
const PING_EVERY: Duration = Duration::from_secs(15);
/// A peer that sends nothing at all (not even a pong) for this long is gone.
const IDLE_LIMIT: Duration = Duration::from_secs(45);
/// Control frames (pongs, the relay's pings) a peer may have queued and unwritten; while it
/// has this many, its pings are not answered.
pub(crate) const MAX_QUEUED_CONTROL: usize = 8;

/// A peer admitted to a line, ready to run.
#[derive(Debug)]
pub(crate) struct Peer {
    pub key: Box<[u8]>,
    pub line: Rc<Line>,
    pub member: Rc<Member>,
}

/// Runs a peer whose `101 Switching Protocols` has been sent, until it leaves. `early` holds
/// bytes the client sent right after its upgrade request.
pub(crate) async fn run(shard: Rc<Shard>, stream: TcpStream, peer: Peer, early: Vec<u8>) {
    // `fd` names the connection only while a half of it is held: the writer task settles
    // before it lets go of `out` (see `writer::drain`).
    let fd = stream.as_raw_fd();
    let _ = stream.set_read_timeout(Some(IDLE_LIMIT));
    let (reader, mut out) = futures_lite::io::split(stream);
    let member = peer.member.clone();
    let tag = peer.line.tag;
    let writer_task = glommio::spawn_local({
        let shard = shard.clone();
        let member = member.clone();
        async move {
            let stats = &shard.stats;
            let counted = |frames: usize, bytes: usize| {
                stats.ws_frames_out.add(frames as u64);
                stats.ws_bytes_out.add(bytes as u64);
            };
            let latency = Some(&stats.ws_forward_latency);
            let stall = shard.config.write_stall;
            let ended = writer::drain(&member.out, fd, &mut out, stall, counted, latency).await;
            if let writer::Ended::Cut(reason) = &ended {
                debug!(line = tag, reason = reason.label(), "line peer cut");
            }
            // A cut or failed connection is reset, which unblocks the reader too.
            writer::settle(&ended, fd, stats);
        }
    });
    let pinger = glommio::spawn_local(ping_loop(member.clone()));
    let outcome = read_loop(&shard, &peer, reader, early).await;
    shard.lines.leave(&peer.key, &member);
    if let Some(code) = outcome.close_code() {
        // A peer too far behind for one more control frame is cut instead (see `OutQueue`).
        let _ = member.out.push_control(close_frame(code, outcome.reason()));
    }
    member.out.close();
    debug!(line = peer.line.tag, outcome = ?outcome, "line peer left");
    pinger.cancel().await;
    writer_task.await;
}

/// How a peer's reading ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The peer closed the TCP connection.
    Eof,
    /// The peer sent a close frame (answered with the same code).
    Closed(CloseCode),
    /// The peer broke the protocol.
    Violation(FrameError),
    /// A text message: the line carries binary audio only.
    Text,
    /// Nothing at all for IDLE_LIMIT.
    Idle,
    /// The socket failed.
    Error,
}

impl Outcome {
    fn close_code(self) -> Option<CloseCode> {
        match self {
            Outcome::Eof | Outcome::Error => None,
            Outcome::Closed(code) => Some(code),
            Outcome::Violation(e) => Some(e.close_code()),
            Outcome::Text => Some(CloseCode::UNSUPPORTED_DATA),
            Outcome::Idle => Some(CloseCode::GOING_AWAY),
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Outcome::Violation(e) => e.reason(),
            Outcome::Text => "binary messages only",
            Outcome::Idle => "idle",
            _ => "",
        }
    }
}

fn close_frame(code: CloseCode, reason: &str) -> Bytes {
    let mut frame = Vec::with_capacity(4 + reason.len());
    ws::encode_server_close(code, reason, &mut frame);
    Bytes::from(frame)
}

/// A receive buffer: `block[..filled]` holds bytes not yet parsed into frames.
struct RecvBuf {
    block: BytesMut,
    filled: usize,
    /// Still the small first block: full blocks are taken once it runs out.
    first: bool,
    /// The size of the current block's allocation: the most a frame taken from it keeps alive.
    size: usize,
}

impl RecvBuf {
    fn new(early: &[u8]) -> Self {
        let size = FIRST_BLOCK.max(early.len());
        let mut block = BytesMut::zeroed(size);
        block[..early.len()].copy_from_slice(early);
        RecvBuf {
            block,
            filled: early.len(),
            first: true,
            size,
        }
    }

    /// Makes room for at least `want` more bytes, moving the unparsed tail to a fresh block
    /// when the current one is nearly used up (earlier frames in it may still be queued).
    fn make_room(&mut self, want: usize) {
        let free = self.block.len() - self.filled;
        let enough = if self.first { want } else { want.max(MIN_FREE) };
        if free >= enough {
            return;
        }
        self.first = false;
        self.size = BLOCK.max(self.filled + want);
        let mut fresh = BytesMut::zeroed(self.size);
        fresh[..self.filled].copy_from_slice(&self.block[..self.filled]);
        self.block = fresh;
    }

    fn take(&mut self, len: usize) -> BytesMut {
        self.filled -= len;
        self.block.split_to(len)
    }
}

async fn read_loop(
    shard: &Shard,
    peer: &Peer,
    mut reader: ReadHalf<TcpStream>,
    early: Vec<u8>,
) -> Outcome {
    let stats: &CoreStats = &shard.stats;
    let largest = shard.config.max_message + ws::MAX_HEADER;
    let rate = ByteRate::pcm_multiple(shard.config.line_rate_cap, largest, Instant::now());
    let mut frames = FrameReader::new(&early, shard.config.max_message, rate);
    // When the bytes being parsed were read: the start of each message's forward latency. One
    // clock read per read call, shared by every frame it brought.
    let mut received = Instant::now();
    loop {
        let want = match frames.dispatch(stats, &peer.line, &peer.member, received) {
            Ok(want) => want,
            Err(outcome) => return outcome,
        };
        // glommio's read returns at once while bytes are waiting, so without this a busy sender
        // would keep its core until its socket ran dry and the writers (the receivers of what
        // it just sent) would starve and overflow their queues. Let them run first.
        futures_lite::future::yield_now().await;
        match reader.read(frames.space(want)).await {
            Ok(0) => return Outcome::Eof,
            Ok(n) => {
                frames.filled(n);
                received = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Outcome::Idle,
            Err(e) => {
                debug!(error = %e, "line peer read failed");
                return Outcome::Error;
            }
        }
    }
}

/// A peer's incoming frames without the socket: the receive buffer, a fragmented message
/// being reassembled, and what each complete frame asks for.
struct FrameReader {
    buf: RecvBuf,
    /// Largest message (`--max-message`).
    max: usize,
    fragments: ws::Fragments,
    /// A fragmented message being reassembled, with room for the server header in front.
    assembling: BytesMut,
    /// Bytes taken from the receive buffer since the last message was queued: what the next
    /// one queued keeps alive besides itself, and is charged for (up to its whole block: the
    /// blocks before it are kept alive by earlier messages, or by nothing).
    unqueued: usize,
    /// Bytes taken since the rate cap last judged a message: what the next message costs.
    unrated: usize,
    /// `--line-rate-cap` (`None`: no cap).
    rate: Option<ByteRate>,
}

impl FrameReader {
    /// A reader that starts with the bytes the client sent after its upgrade request.
    fn new(early: &[u8], max: usize, rate: Option<ByteRate>) -> Self {
        FrameReader {
            buf: RecvBuf::new(early),
            max,
            fragments: ws::Fragments::new(max),
            assembling: BytesMut::new(),
            unqueued: 0,
            unrated: 0,
            rate,
        }
    }

    /// Whether the message completed now is within the peer's rate cap; its cost is every
    /// byte read since the last message judged.
    fn within_rate(&mut self, now: u64) -> bool {
        let cost = std::mem::take(&mut self.unrated);
        self.rate.as_mut().is_none_or(|rate| rate.allows(now, cost))
    }

    /// Where the next read goes: the free end of the buffer, with room for `want` bytes.
    fn space(&mut self, want: usize) -> &mut [u8] {
        self.buf.make_room(want);
        &mut self.buf.block[self.buf.filled..]
    }

    /// `n` bytes were read into [`space`](Self::space).
    fn filled(&mut self, n: usize) {
        self.buf.filled += n;
    }

    /// Acts on every complete frame in the buffer, read at `received`: a message goes to every
    /// other peer of `line`, a ping is answered on `member`'s queue. Returns how many more bytes
    /// the next frame needs at least, or how reading ended.
    fn dispatch(
        &mut self,
        stats: &CoreStats,
        line: &Line,
        member: &Member,
        received: Instant,
    ) -> Result<usize, Outcome> {
        let max = self.max;
        // The rate cap's clock, read once for every frame this read brought.
        let now = self.rate.as_ref().map_or(0, |rate| rate.clock(received));
        loop {
            let buf = &mut self.buf;
            let header = match ws::decode_client_header(&buf.block[..buf.filled], max) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(2),
                Err(e) => return Err(violation(stats, e)),
            };
            if buf.filled < header.frame_len() {
                return Ok(header.frame_len() - buf.filled);
            }
            let frame = buf.take(header.frame_len());
            self.unqueued += header.frame_len();
            self.unrated += header.frame_len();
            match header.opcode {
                Opcode::Ping if member.out.control_messages() >= MAX_QUEUED_CONTROL => {
                    stats.dropped(Drop::UnansweredPing);
                }
                Opcode::Ping => {
                    let mut pong = Vec::with_capacity(header.frame_len());
                    let mut payload = frame;
                    unmask_payload(&mut payload, &header);
                    ws::encode_server_frame(
                        true,
                        Opcode::Pong,
                        &payload[header.header_len..],
                        &mut pong,
                    );
                    // Within MAX_QUEUED_CONTROL frames of at most 127 bytes: far under any
                    // bound, so this never cuts.
                    let _ = member.out.push_control(Bytes::from(pong));
                }
                Opcode::Pong => {}
                Opcode::Close => {
                    let mut payload = frame;
                    unmask_payload(&mut payload, &header);
                    return Err(match ws::parse_close(&payload[header.header_len..]) {
                        Ok(Some((code, _))) => Outcome::Closed(code),
                        Ok(None) => Outcome::Closed(CloseCode::NORMAL),
                        Err(e) => violation(stats, e),
                    });
                }
                _ => match self.fragments.on_data_frame(&header) {
                    Err(e) => return Err(violation(stats, e)),
                    Ok(MessagePart::Whole(Opcode::Binary)) => {
                        if !self.within_rate(now) {
                            stats.dropped(Drop::RateCapped);
                            continue;
                        }
                        let mut frame = frame;
                        let range = ws::reframe_in_place(&mut frame, &header);
                        frame.advance(range.start);
                        frame.truncate(range.len());
                        let message = frame.freeze();
                        let charge = std::mem::take(&mut self.unqueued).min(self.buf.size);
                        let sent = (header.payload_len, charge, received);
                        forward(stats, line, member, message, sent);
                    }
                    Ok(MessagePart::Whole(_) | MessagePart::First(Opcode::Text)) => {
                        stats.dropped(Drop::Protocol);
                        return Err(Outcome::Text);
                    }
                    Ok(MessagePart::First(_)) => {
                        let assembling = &mut self.assembling;
                        *assembling = BytesMut::with_capacity(ws::MAX_SERVER_HEADER + max);
                        assembling.resize(ws::MAX_SERVER_HEADER, 0);
                        append_payload(assembling, frame, &header);
                    }
                    Ok(MessagePart::Middle) => {
                        append_payload(&mut self.assembling, frame, &header);
                    }
                    Ok(MessagePart::Last(_)) => {
                        append_payload(&mut self.assembling, frame, &header);
                        if !self.within_rate(now) {
                            self.assembling = BytesMut::new();
                            stats.dropped(Drop::RateCapped);
                            continue;
                        }
                        let mut message = std::mem::take(&mut self.assembling);
                        let len = message.len() - ws::MAX_SERVER_HEADER;
                        let written = ws::write_server_header_before(
                            true,
                            Opcode::Binary,
                            len,
                            &mut message[..ws::MAX_SERVER_HEADER],
                        );
                        message.advance(ws::MAX_SERVER_HEADER - written);
                        let pinned = std::mem::take(&mut self.unqueued);
                        let charge = pinned.min(self.buf.size.max(message.len()));
                        forward(
                            stats,
                            line,
                            member,
                            message.freeze(),
                            (len, charge, received),
                        );
                    }
                },
            }
        }
    }
}

fn violation(stats: &CoreStats, e: FrameError) -> Outcome {
    let reason = if e == FrameError::TooLarge {
        Drop::OverLimit
    } else {
        Drop::Protocol
    };
    stats.dropped(reason);
    Outcome::Violation(e)
}

fn unmask_payload(frame: &mut [u8], header: &FrameHeader) {
    if let Some(mask) = header.mask {
        ws::apply_mask(&mut frame[header.header_len..], mask, 0);
    }
}

fn append_payload(message: &mut BytesMut, mut frame: BytesMut, header: &FrameHeader) {
    unmask_payload(&mut frame, header);
    message.extend_from_slice(&frame[header.header_len..]);
}

/// Counts a message from `member` and queues it for every other peer of `line`; a slow
/// receiver's queue drops its oldest audio to take it (counted). `sent` is the message's
/// payload length, its charge in the queues, and when it was read.
fn forward(
    stats: &CoreStats,
    line: &Line,
    member: &Member,
    message: Bytes,
    sent: (usize, usize, Instant),
) {
    let (payload_len, charge, received) = sent;
    stats.ws_messages_in.inc();
    stats.ws_bytes_in.add(payload_len as u64);
    let dropped = line.broadcast(member.id, &message, charge, received);
    for _ in 0..dropped {
        stats.dropped(Drop::SlowReceiver);
    }
}

async fn ping_loop(member: Rc<Member>) {
    let ping = {
        let mut frame = Vec::with_capacity(2);
        ws::encode_server_frame(true, Opcode::Ping, &[], &mut frame);
        Bytes::from(frame)
    };
    while !member.out.is_closed() {
        glommio::timer::sleep(PING_EVERY).await;
        let _ = member.out.push_control(ping.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::limits::quota::Quota;
    use crate::line::Lines;

    const KEY: &[u8] = b"key-for-the-tests-0123";

    /// A line of `peers` peers whose queues hold `queue_bytes` each, and its counters.
    fn line(
        peers: usize,
        queue_bytes: usize,
    ) -> (Arc<CoreStats>, Lines, Vec<Rc<Member>>, Rc<Line>) {
        let stats = Arc::new(CoreStats::default());
        let lines = Lines::new(peers, queue_bytes, stats.clone(), Arc::new(Quota::new(0)));
        let joined: Vec<(Rc<Line>, Rc<Member>)> = (0..peers)
            .map(|_| lines.join(KEY, 7).expect("a place"))
            .collect();
        let line = joined[0].0.clone();
        let members = joined.into_iter().map(|(_, member)| member).collect();
        (stats, lines, members, line)
    }

    /// A masked frame as a browser sends it.
    fn client_frame(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        ws::encode_client_frame(fin, opcode, [0x37, 0xfa, 0x21, 0x3d], payload, &mut frame);
        frame
    }

    /// The frame the relay sends for a whole message.
    fn server_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        ws::encode_server_frame(true, opcode, payload, &mut frame);
        frame
    }

    /// What `member`'s queue holds, message by message.
    fn queued(member: &Member) -> Vec<Vec<u8>> {
        member
            .out
            .with_front(sys::MAX_IOVECS, |m| m.iter().map(|m| m.to_vec()).collect())
    }

    /// Everything `member`'s queue holds, taken off it (as its writer would).
    fn written(member: &Member) -> Vec<Vec<u8>> {
        let messages = queued(member);
        member.out.consume(messages.iter().map(Vec::len).sum());
        messages
    }

    /// Reads `bytes` from `from` in one go and dispatches every frame they complete.
    fn receive(
        stats: &CoreStats,
        line: &Line,
        from: &Member,
        bytes: &[u8],
    ) -> Result<usize, Outcome> {
        let mut frames = FrameReader::new(bytes, 64 * 1024, None);
        frames.dispatch(stats, line, from, Instant::now())
    }

    #[test]
    fn a_message_goes_whole_to_every_other_peer_never_back() {
        let (stats, _lines, peers, line) = line(3, 10_000);
        let payload = [0xa5; 1024];
        let more = receive(
            &stats,
            &line,
            &peers[0],
            &client_frame(true, Opcode::Binary, &payload),
        );
        assert_eq!(more, Ok(2), "then a header is wanted");
        assert!(queued(&peers[0]).is_empty(), "no echo");
        for receiver in &peers[1..] {
            assert_eq!(queued(receiver), [server_frame(Opcode::Binary, &payload)]);
        }
        assert_eq!(stats.ws_messages_in.get(), 1);
        assert_eq!(stats.ws_bytes_in.get(), 1024);
    }

    #[test]
    fn a_frame_read_in_parts_goes_once_it_is_whole() {
        let (stats, _lines, peers, line) = line(2, 10_000);
        let frame = client_frame(true, Opcode::Binary, &[9; 300]);
        let mut frames = FrameReader::new(&frame[..100], 64 * 1024, None);
        let now = Instant::now();
        let want = frames
            .dispatch(&stats, &line, &peers[0], now)
            .expect("reading");
        assert_eq!(want, frame.len() - 100, "the rest of the frame");
        assert!(queued(&peers[1]).is_empty());
        frames.space(want)[..want].copy_from_slice(&frame[100..]);
        frames.filled(want);
        assert_eq!(frames.dispatch(&stats, &line, &peers[0], now), Ok(2));
        assert_eq!(queued(&peers[1]), [server_frame(Opcode::Binary, &[9; 300])]);
    }

    #[test]
    fn fragments_go_as_one_message_and_a_ping_between_them_is_answered_to_its_sender() {
        let (stats, _lines, peers, line) = line(2, 10_000);
        let mut bytes = client_frame(false, Opcode::Binary, b"one ");
        bytes.extend(client_frame(false, Opcode::Continuation, b"two "));
        bytes.extend(client_frame(true, Opcode::Ping, b"are you there"));
        bytes.extend(client_frame(true, Opcode::Continuation, b"three"));
        assert_eq!(receive(&stats, &line, &peers[0], &bytes), Ok(2));
        assert_eq!(
            queued(&peers[0]),
            [server_frame(Opcode::Pong, b"are you there")]
        );
        assert_eq!(
            queued(&peers[1]),
            [server_frame(Opcode::Binary, b"one two three")]
        );
        assert_eq!(stats.ws_messages_in.get(), 1);
    }

    #[test]
    fn close_text_and_broken_frames_end_reading_with_their_reason() {
        let (stats, _lines, peers, line) = line(2, 10_000);
        let mut close = Vec::new();
        ws::write_close_payload(CloseCode::GOING_AWAY, "bye", &mut close);
        let close = client_frame(true, Opcode::Close, &close);
        let text = client_frame(true, Opcode::Text, b"hello");
        let mut unmasked = Vec::new();
        ws::encode_server_frame(true, Opcode::Binary, b"plain", &mut unmasked);
        let mut too_large = client_frame(true, Opcode::Binary, &[0; 64 * 1024 + 1]);
        too_large.truncate(16);
        let outcome = |bytes: &[u8]| receive(&stats, &line, &peers[0], bytes).expect_err("ends");
        assert_eq!(outcome(&close), Outcome::Closed(CloseCode::GOING_AWAY));
        assert_eq!(outcome(&text), Outcome::Text);
        assert_eq!(outcome(&unmasked), Outcome::Violation(FrameError::Unmasked));
        assert_eq!(
            outcome(&too_large),
            Outcome::Violation(FrameError::TooLarge)
        );
        assert_eq!(stats.drops(Drop::Protocol), 2, "text and unmasked");
        assert_eq!(stats.drops(Drop::OverLimit), 1);
        assert!(queued(&peers[1]).is_empty(), "nothing was forwarded");
    }

    #[test]
    fn a_slow_receiver_loses_its_oldest_audio_never_control_and_it_is_counted() {
        // Room for a pong and three messages of 100 bytes, each charged its client frame: 106
        // bytes with its header and mask.
        let (stats, _lines, peers, line) = line(3, 2 + 3 * 106);
        let (sender, slow, keeping_up) = (&peers[0], &peers[1], &peers[2]);
        let ping = client_frame(true, Opcode::Ping, b"");
        assert_eq!(receive(&stats, &line, slow, &ping), Ok(2));
        for tag in 1..=5u8 {
            let frame = client_frame(true, Opcode::Binary, &[tag; 100]);
            assert_eq!(receive(&stats, &line, sender, &frame), Ok(2));
            assert_eq!(
                written(keeping_up),
                [server_frame(Opcode::Binary, &[tag; 100])]
            );
        }
        let mut expected = vec![server_frame(Opcode::Pong, b"")];
        expected.extend((3..=5u8).map(|tag| server_frame(Opcode::Binary, &[tag; 100])));
        assert_eq!(queued(slow), expected, "the two oldest messages went");
        assert_eq!(stats.drops(Drop::SlowReceiver), 2);
        assert_eq!(stats.ws_messages_in.get(), 5, "the sender never waited");
    }

    #[test]
    fn a_message_is_charged_the_ignored_frames_read_before_it() {
        let (stats, _lines, peers, line) = line(2, 100_000);
        let pong = client_frame(true, Opcode::Pong, &[0x5a; 125]);
        let tiny = client_frame(true, Opcode::Binary, b"");
        let mut bytes = pong.repeat(100);
        bytes.extend(&tiny);
        bytes.extend(&tiny);
        assert_eq!(receive(&stats, &line, &peers[0], &bytes), Ok(2));
        assert_eq!(queued(&peers[1]).len(), 2);
        // The first keeps the 100 pongs' bytes alive as well as its own; the second only its
        // own frame.
        assert_eq!(peers[1].out.queued_bytes(), bytes.len());
        assert_eq!(written(&peers[1]).len(), 2);
        assert_eq!(
            peers[1].out.queued_bytes(),
            0,
            "written, the charge is given back"
        );
        // Pongs over more than a block: a message keeps only its own block alive, and is
        // charged at most that.
        let mut frames = FrameReader::new(&[], 64 * 1024, None);
        let mut bytes = pong.repeat(3 * BLOCK / pong.len());
        bytes.extend(&tiny);
        for chunk in bytes.chunks(BLOCK / 2) {
            frames.space(chunk.len())[..chunk.len()].copy_from_slice(chunk);
            frames.filled(chunk.len());
            let read = frames.dispatch(&stats, &line, &peers[0], Instant::now());
            assert!(read.is_ok());
        }
        assert_eq!(queued(&peers[1]).len(), 1);
        assert_eq!(peers[1].out.queued_bytes(), BLOCK);
    }

    #[test]
    fn pings_past_the_queued_control_cap_are_not_answered_and_are_counted() {
        let (stats, _lines, peers, line) = line(2, 100_000);
        let ping = client_frame(true, Opcode::Ping, b"hello");
        let bytes = ping.repeat(MAX_QUEUED_CONTROL + 12);
        assert_eq!(receive(&stats, &line, &peers[0], &bytes), Ok(2));
        assert_eq!(queued(&peers[0]).len(), MAX_QUEUED_CONTROL);
        assert_eq!(stats.drops(Drop::UnansweredPing), 12);
        // Once it reads its pongs, its pings are answered again.
        written(&peers[0]);
        assert_eq!(receive(&stats, &line, &peers[0], &ping), Ok(2));
        assert_eq!(queued(&peers[0]), [server_frame(Opcode::Pong, b"hello")]);
    }

    #[test]
    fn messages_over_the_rate_cap_are_dropped_and_counted() {
        let (stats, _lines, peers, line) = line(2, 1 << 20);
        let big = client_frame(true, Opcode::Binary, &[7; 60_000]);
        let now = Instant::now();
        // One PCM stream a second, with a burst of 100 000 bytes: one of these, not two.
        let rate = ByteRate::pcm_multiple(1, 64 * 1024, now);
        let mut frames = FrameReader::new(&big.repeat(3), 64 * 1024, rate);
        assert_eq!(frames.dispatch(&stats, &line, &peers[0], now), Ok(2));
        assert_eq!(written(&peers[1]).len(), 1);
        assert_eq!(stats.drops(Drop::RateCapped), 2);
        // A second later the cap has room for another.
        frames.space(big.len())[..big.len()].copy_from_slice(&big);
        frames.filled(big.len());
        let later = now + Duration::from_secs(1);
        assert_eq!(frames.dispatch(&stats, &line, &peers[0], later), Ok(2));
        assert_eq!(written(&peers[1]).len(), 1);
        assert_eq!(stats.ws_messages_in.get(), 2);
    }

    #[test]
    fn an_idle_peer_holds_a_small_block_until_it_sends() {
        let mut buf = RecvBuf::new(&[]);
        buf.make_room(2);
        assert_eq!(
            buf.block.len(),
            FIRST_BLOCK,
            "waiting for a header costs no full block"
        );
        // A frame that fits is read into it; one longer than what is left takes a full
        // block, keeping the bytes read.
        buf.block[..3].copy_from_slice(b"abc");
        buf.filled = 3;
        buf.make_room(FIRST_BLOCK / 2);
        assert_eq!(buf.block.len(), FIRST_BLOCK);
        buf.make_room(FIRST_BLOCK);
        assert_eq!(buf.block.len(), BLOCK);
        assert_eq!(&buf.block[..3], b"abc");
        // From then on a block nearly used up is replaced by a full one, as before.
        buf.filled = BLOCK - 100;
        let _frames = buf.take(BLOCK - 200);
        buf.make_room(2);
        assert_eq!(buf.block.len(), BLOCK);
        assert_eq!(buf.filled, 100);
    }

    #[test]
    fn early_bytes_larger_than_the_first_block_are_kept_whole() {
        let early = vec![7u8; FIRST_BLOCK + 10];
        let buf = RecvBuf::new(&early);
        assert_eq!(buf.filled, early.len());
        assert_eq!(&buf.block[..buf.filled], &early[..]);
    }
}
