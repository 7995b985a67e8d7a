//! UDP media on one core: every datagram is judged at arrival (tag, counter, source) and a
//! verified packet goes unchanged to the other members of its room.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Instant;

use moose_proto::vors::room::{DropReason, EdgeVerdict};
use tracing::debug;

use crate::shard::Shard;

/// Largest datagram read; VoRS media is far smaller (Opus at 24 kbit/s is ~60 bytes a frame).
const MAX_DATAGRAM: usize = 2048;

/// Receives this core's datagrams until the socket fails.
pub async fn receive(shard: Rc<Shard>) {
    let Some(udp) = shard.vors.udp.get().cloned() else {
        return;
    };
    let fd = udp.as_raw_fd();
    let stats = &shard.stats;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = match udp.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                // ICMP errors from earlier sends surface here; they say nothing about this socket.
                debug!(error = %e, "vors recv failed");
                continue;
            }
        };
        // The start of the forward latency: one clock read (vDSO) per datagram.
        let received = Instant::now();
        let datagram = &buf[..n];
        stats.vors_datagrams_in.inc();
        stats.vors_bytes_in.add(n as u64);
        let Some(cell) = shard.vors.room_of(from, datagram) else {
            stats.vors_dropped(DropReason::UnknownSource);
            continue;
        };
        match cell.verify(from, datagram) {
            EdgeVerdict::Forward { sender, .. } => {
                stats.vors_packets_forwarded.inc();
                let (sent, refused) = cell.forward(fd, datagram, sender);
                if sent > 0 {
                    stats.vors_forward_latency.record(received.elapsed());
                }
                stats.vors_datagrams_out.add(sent as u64);
                stats.vors_bytes_out.add((sent * n) as u64);
                stats.vors_send_dropped.add(refused as u64);
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
}
