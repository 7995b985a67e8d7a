//! One peer's connection on its line's owner core: the reader that turns client frames into
//! shared server frames, and the writer that drains the peer's queue in batches.
//!
//! The hot path for an unfragmented binary message: one `recv` into a block shared by many
//! frames, an in-place unmask, the client header overwritten in place by the server header (see
//! `ws::reframe_in_place`), and one `Bytes` handed to every other peer's queue. No copy of the
//! payload in user space, no allocation per message (a block is allocated per ~64 KiB read).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_lite::io::{AsyncReadExt, ReadHalf};
use glommio::net::TcpStream;
use moose_proto::ws::{self, CloseCode, FrameError, FrameHeader, MessagePart, Opcode};
use tracing::debug;

use super::{Line, Member};
use crate::outbound::queue::Kind;
use crate::shard::Shard;
use crate::stats::Drop;
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
/// A receiver that accepts no byte for this long is disconnected.
const WRITE_STALL_LIMIT: Duration = Duration::from_secs(30);

/// A peer admitted to a line, ready to run.
#[derive(Debug)]
pub struct Peer {
    pub key: Box<[u8]>,
    pub addr: SocketAddr,
    pub line: Rc<Line>,
    pub member: Rc<Member>,
}

/// Runs a peer whose `101 Switching Protocols` has been sent, until it leaves. `early` holds
/// bytes the client sent right after its upgrade request.
pub async fn run(shard: Rc<Shard>, stream: TcpStream, peer: Peer, early: Vec<u8>) {
    let fd = stream.as_raw_fd();
    let _ = stream.set_read_timeout(Some(IDLE_LIMIT));
    let _ = stream.set_write_timeout(Some(WRITE_STALL_LIMIT));
    let (reader, writer) = futures_lite::io::split(stream);
    let member = peer.member.clone();
    let writer_task = glommio::spawn_local({
        let shard = shard.clone();
        let member = member.clone();
        async move {
            let stats = &shard.stats;
            let counted = |frames: usize, bytes: usize| {
                stats.ws_messages_out.add(frames as u64);
                stats.ws_bytes_out.add(bytes as u64);
            };
            let latency = Some(&stats.ws_forward_latency);
            if let Err(e) =
                crate::outbound::writer::drain(&member.out, fd, writer, counted, latency).await
            {
                debug!(error = %e, "line peer write ended");
                // Unblock the reader too: the peer is gone or stalled beyond the limit.
                sys::shutdown(fd);
            }
        }
    });
    let pinger = glommio::spawn_local(ping_loop(member.clone()));
    let outcome = read_loop(&shard, &peer, reader, early).await;
    shard.lines.leave(&peer.key, &member);
    if let Some(code) = outcome.close_code() {
        member
            .out
            .push(close_frame(code, outcome.reason()), Kind::Control);
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
}

impl RecvBuf {
    fn new(early: &[u8]) -> Self {
        let mut block = BytesMut::zeroed(FIRST_BLOCK.max(early.len()));
        block[..early.len()].copy_from_slice(early);
        RecvBuf {
            block,
            filled: early.len(),
            first: true,
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
        let mut fresh = BytesMut::zeroed(BLOCK.max(self.filled + want));
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
    let max = shard.config.max_message;
    let stats = &shard.stats;
    let mut buf = RecvBuf::new(&early);
    // When the bytes being parsed were read: the start of each message's forward latency. One
    // clock read per read call, shared by every frame it brought.
    let mut received = Instant::now();
    let mut fragments = ws::Fragments::new(max);
    // A fragmented message being reassembled, with room for the server header in front.
    let mut assembling = BytesMut::new();
    loop {
        let want;
        // Parse every complete frame in the buffer.
        loop {
            let header = match ws::decode_client_header(&buf.block[..buf.filled], max) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    want = 2;
                    break;
                }
                Err(e) => return violation(shard, e),
            };
            if buf.filled < header.frame_len() {
                want = header.frame_len() - buf.filled;
                break;
            }
            let frame = buf.take(header.frame_len());
            match header.opcode {
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
                    peer.member.out.push(Bytes::from(pong), Kind::Control);
                }
                Opcode::Pong => {}
                Opcode::Close => {
                    let mut payload = frame;
                    unmask_payload(&mut payload, &header);
                    return match ws::parse_close(&payload[header.header_len..]) {
                        Ok(Some((code, _))) => Outcome::Closed(code),
                        Ok(None) => Outcome::Closed(CloseCode::NORMAL),
                        Err(e) => violation(shard, e),
                    };
                }
                _ => match fragments.on_data_frame(&header) {
                    Err(e) => return violation(shard, e),
                    Ok(MessagePart::Whole(Opcode::Binary)) => {
                        let mut frame = frame;
                        let range = ws::reframe_in_place(&mut frame, &header);
                        frame.advance(range.start);
                        frame.truncate(range.len());
                        forward(shard, peer, frame.freeze(), header.payload_len, received);
                    }
                    Ok(MessagePart::Whole(_) | MessagePart::First(Opcode::Text)) => {
                        stats.dropped(Drop::Protocol);
                        return Outcome::Text;
                    }
                    Ok(MessagePart::First(_)) => {
                        assembling = BytesMut::with_capacity(ws::MAX_SERVER_HEADER + max);
                        assembling.resize(ws::MAX_SERVER_HEADER, 0);
                        append_payload(&mut assembling, frame, &header);
                    }
                    Ok(MessagePart::Middle) => append_payload(&mut assembling, frame, &header),
                    Ok(MessagePart::Last(_)) => {
                        append_payload(&mut assembling, frame, &header);
                        let mut message = std::mem::take(&mut assembling);
                        let len = message.len() - ws::MAX_SERVER_HEADER;
                        let written = ws::write_server_header_before(
                            true,
                            Opcode::Binary,
                            len,
                            &mut message[..ws::MAX_SERVER_HEADER],
                        );
                        message.advance(ws::MAX_SERVER_HEADER - written);
                        forward(shard, peer, message.freeze(), len, received);
                    }
                },
            }
        }
        // glommio's read returns at once while bytes are waiting, so without this a busy sender
        // would keep its core until its socket ran dry and the writers (the receivers of what
        // it just sent) would starve and overflow their queues. Let them run first.
        futures_lite::future::yield_now().await;
        buf.make_room(want);
        let filled = buf.filled;
        match reader.read(&mut buf.block[filled..]).await {
            Ok(0) => return Outcome::Eof,
            Ok(n) => {
                buf.filled += n;
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

fn violation(shard: &Shard, e: FrameError) -> Outcome {
    let reason = if e == FrameError::TooLarge {
        Drop::OverLimit
    } else {
        Drop::Protocol
    };
    shard.stats.dropped(reason);
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

fn forward(shard: &Shard, peer: &Peer, frame: Bytes, payload_len: usize, received: Instant) {
    let stats = &shard.stats;
    stats.ws_messages_in.inc();
    stats.ws_bytes_in.add(payload_len as u64);
    let dropped = peer.line.broadcast(peer.member.id, &frame, received);
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
        member.out.push(ping.clone(), Kind::Control);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
