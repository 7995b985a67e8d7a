//! UDP media on one core: every datagram is judged at arrival (tag, counter, source) and a
//! verified packet goes unchanged to the other members of its room.
//!
//! Batched below glommio's one-call-per-datagram API: the datagrams waiting on the socket are
//! taken with one `recvmmsg`, judged one by one, and every copy of the whole batch leaves with
//! one `sendmmsg` pointing into the receive buffers (no copy, no allocation per packet). The
//! task awaits glommio (a one-byte peek) only once the socket is empty, so an idle relay wakes
//! for the first datagram exactly as before.
//!
//! With `--media-steering handoff` (no steering program), a batch also holds datagrams of
//! rooms owned by other cores: those travel to their owner as one [`MediaBatch`] per owner
//! (one allocation per batch and owner), where a [`Forwarder`] judges and sends them.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use moose_proto::vors::room::{DropReason, EdgeVerdict};
use socket2::SockAddr;
use tracing::debug;

use crate::cli::MediaSteering;
use crate::handoff::Handoff;
use crate::shard::Shard;
use crate::sys::{self, RECV_BATCH, RecvBatch};

/// Largest datagram read; VoRS media is far smaller (Opus at 24 kbit/s is ~60 bytes a frame).
const MAX_DATAGRAM: usize = 2048;

/// Datagrams one core received for a room another core owns (`--media-steering handoff`),
/// on their way there over the core mesh.
#[derive(Debug)]
pub struct MediaBatch {
    /// When the receiving core read them: where their forward latency starts.
    received: Instant,
    bytes: Vec<u8>,
    /// Each datagram's end in `bytes`, and its source.
    datagrams: Vec<(usize, SocketAddr)>,
}

impl MediaBatch {
    fn new(received: Instant) -> Self {
        MediaBatch {
            received,
            bytes: Vec::new(),
            datagrams: Vec::new(),
        }
    }

    fn push(&mut self, datagram: &[u8], from: SocketAddr) {
        self.bytes.extend_from_slice(datagram);
        self.datagrams.push((self.bytes.len(), from));
    }

    fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        let mut start = 0;
        self.datagrams.iter().map(move |&(end, from)| {
            let datagram = &self.bytes[start..end];
            start = end;
            (datagram, from)
        })
    }
}

/// A batch of datagrams and what forwarding it needs, reused for every batch (no allocation
/// per packet once `copies` has grown to a batch's fan-out).
#[derive(Debug)]
pub struct Forwarder {
    batch: RecvBatch,
    /// Every copy of the batch: (datagram index, destination).
    copies: Vec<(usize, SockAddr)>,
    /// Per forwarded packet, the index of its first copy in `copies`.
    firsts: Vec<usize>,
}

impl Default for Forwarder {
    fn default() -> Self {
        Self::new()
    }
}

impl Forwarder {
    pub fn new() -> Self {
        Forwarder {
            batch: RecvBatch::new(MAX_DATAGRAM),
            copies: Vec::with_capacity(RECV_BATCH * 4),
            firsts: Vec::with_capacity(RECV_BATCH),
        }
    }

    /// Judges every datagram of the batch that `mine` accepts, then sends all the copies of
    /// those verified from this core's socket `fd` with one `sendmmsg`.
    fn forward(
        &mut self,
        shard: &Shard,
        fd: RawFd,
        received: Instant,
        mut mine: impl FnMut(&[u8], Option<SocketAddr>) -> bool,
    ) {
        let stats = &shard.stats;
        self.copies.clear();
        self.firsts.clear();
        for index in 0..self.batch.len() {
            let (datagram, from) = self.batch.get(index);
            if mine(datagram, from) {
                judge(
                    shard,
                    index,
                    datagram,
                    from,
                    &mut self.copies,
                    &mut self.firsts,
                );
            }
        }
        if self.copies.is_empty() {
            return;
        }
        let sent = sys::send_batch(fd, &self.batch, &self.copies);
        let latency = received.elapsed();
        for &first in &self.firsts {
            if first < sent {
                stats.vors_forward_latency.record(latency);
            }
        }
        let bytes: usize = self.copies[..sent]
            .iter()
            .map(|(index, _)| self.batch.get(*index).0.len())
            .sum();
        stats.vors_datagrams_out.add(sent as u64);
        stats.vors_bytes_out.add(bytes as u64);
        stats
            .vors_send_dropped
            .add((self.copies.len() - sent) as u64);
    }

    /// Forwards datagrams another core received for a room of this one, as if they had
    /// arrived here.
    pub fn forward_handed_off(&mut self, shard: &Shard, media: &MediaBatch) {
        let Some(udp) = shard.vors.udp.get() else {
            return;
        };
        self.batch.clear();
        for (datagram, from) in media.iter() {
            // A hand-off holds at most one receive batch, so it always fits.
            let fits = self.batch.push(datagram, from);
            debug_assert!(fits, "a media hand-off larger than a receive batch");
        }
        self.forward(shard, udp.as_raw_fd(), media.received, |_, _| true);
    }
}

/// Receives this core's datagrams until the socket fails.
pub async fn receive(shard: Rc<Shard>) {
    let Some(udp) = shard.vors.udp.get().cloned() else {
        return;
    };
    let fd = udp.as_raw_fd();
    let cores = shard.config.cores();
    // Without kernel steering, datagrams of other cores' rooms arrive here too: they are
    // handed to their owner, one batch per owner.
    let handoff = shard
        .mesh
        .as_ref()
        .filter(|_| shard.config.media_steering == MediaSteering::Handoff);
    let mut away: Vec<Option<MediaBatch>> = (0..cores).map(|_| None).collect();
    let mut forwarder = Forwarder::new();
    let mut peek = [0u8; 1];
    let mut drained = true;
    loop {
        if drained {
            // Wait (io_uring) until a datagram is there; MSG_PEEK leaves it for the batch.
            if let Err(e) = udp.peek_from(&mut peek).await {
                // ICMP errors from earlier sends surface here; they say nothing about this socket.
                debug!(error = %e, "vors recv failed");
            }
        }
        forwarder.batch.clear();
        let count = match forwarder.batch.recv_now(fd) {
            Ok(count) => count,
            Err(e) => {
                debug!(error = %e, "vors recv failed");
                drained = false;
                glommio::yield_if_needed().await;
                continue;
            }
        };
        drained = count < RECV_BATCH;
        // The start of the forward latency: one clock read (vDSO) per batch.
        let received = Instant::now();
        forwarder.forward(&shard, fd, received, |datagram, from| {
            // Kernel steering: everything here is this core's. (A sourceless datagram is
            // judged, and dropped, here.)
            let (Some(_), Some(from)) = (handoff, from) else {
                return true;
            };
            let owner = shard.vors.owner_of(datagram);
            if owner == shard.core {
                return true;
            }
            away[owner]
                .get_or_insert_with(|| MediaBatch::new(received))
                .push(datagram, from);
            false
        });
        if let Some(mesh) = handoff {
            for (owner, batch) in away.iter_mut().enumerate() {
                let Some(batch) = batch.take().filter(|b| !b.is_empty()) else {
                    continue;
                };
                // Waits while the owner's mesh queue is full: the owner sets the pace.
                if mesh.send_to(owner, Handoff::Media(batch)).await.is_err() {
                    debug!(owner, "owner core is gone; vors datagrams dropped");
                }
            }
        }
        // A busy socket must not keep the core from the members' TCP tasks and timers.
        glommio::yield_if_needed().await;
    }
}

/// Judges `datagram`, number `index` of its batch, from `from` and, for a verified packet,
/// adds its copies to `copies` (and the index of the first to `firsts`).
fn judge(
    shard: &Shard,
    index: usize,
    datagram: &[u8],
    from: Option<SocketAddr>,
    copies: &mut Vec<(usize, SockAddr)>,
    firsts: &mut Vec<usize>,
) {
    let stats = &shard.stats;
    stats.vors_datagrams_in.inc();
    stats.vors_bytes_in.add(datagram.len() as u64);
    let Some(from) = from else {
        stats.vors_dropped(DropReason::UnknownSource);
        return;
    };
    let Some(cell) = shard.vors.room_of(from, datagram) else {
        stats.vors_dropped(DropReason::UnknownSource);
        return;
    };
    match cell.verify(from, datagram) {
        EdgeVerdict::Forward { sender, .. } => {
            stats.vors_packets_forwarded.inc();
            let first = copies.len();
            if cell.fan_out(index, sender, copies) > 0 {
                firsts.push(first);
            }
        }
        EdgeVerdict::Keepalive(_) => {}
        EdgeVerdict::Registered(sid) => {
            if let Ok(cookie) = <[u8; 16]>::try_from(datagram) {
                shard.vors.cookies.borrow_mut().remove(&cookie);
            }
            shard.vors.sources.borrow_mut().insert(from, cell.clone());
            cell.refresh_targets();
            cell.pump(Instant::now());
            debug!(sid = sid.0, "vors member registered its address");
        }
        EdgeVerdict::Drop(reason) => stats.vors_dropped(reason),
    }
}
