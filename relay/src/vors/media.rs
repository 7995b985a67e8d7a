//! UDP media on one core: every datagram is judged at arrival (tag, counter, source) and a
//! verified packet goes unchanged to the other members of its room.
//!
//! Batched below glommio's one-call-per-datagram API: the datagrams waiting on the socket are
//! taken with one `recvmmsg`, judged one by one, and every copy of the whole batch leaves with
//! one `sendmmsg` pointing into the receive buffers (no copy, no allocation per packet). The
//! task awaits glommio (a one-byte peek) only once the socket is empty, so an idle relay wakes
//! for the first datagram exactly as before.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use moose_proto::vors::room::{DropReason, EdgeVerdict};
use socket2::SockAddr;
use tracing::debug;

use crate::shard::Shard;
use crate::sys::{self, RECV_BATCH, RecvBatch};

/// Largest datagram read; VoRS media is far smaller (Opus at 24 kbit/s is ~60 bytes a frame).
const MAX_DATAGRAM: usize = 2048;

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

    /// Judges every datagram of the batch, then sends all the copies of those verified from
    /// this core's socket `fd` with one `sendmmsg`.
    fn forward(&mut self, shard: &Shard, fd: RawFd, received: Instant) {
        let stats = &shard.stats;
        self.copies.clear();
        self.firsts.clear();
        for index in 0..self.batch.len() {
            let (datagram, from) = self.batch.get(index);
            judge(
                shard,
                index,
                datagram,
                from,
                &mut self.copies,
                &mut self.firsts,
            );
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
}

/// Receives this core's datagrams until the socket fails.
pub async fn receive(shard: Rc<Shard>) {
    let Some(udp) = shard.vors.udp.get().cloned() else {
        return;
    };
    let fd = udp.as_raw_fd();
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
        forwarder.forward(&shard, fd, received);
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
