//! Media in over the relay link on one core (docs/cluster.md, section 7): [`receive`] reads
//! this core's link socket in batches (`recvmmsg`), checks each datagram (`LinkEdge::judge`:
//! form, core, origin, replay window, tag), finds its room by cluster id, and sends the packet
//! inside to the room's local recipients from the core's VoRS socket (one `sendmmsg`): never
//! back over the link, so nothing loops between relays.

use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use moose_proto::cluster::link::{LINK_HEADER_LEN, LINK_TAG_LEN, MAX_LINK_LEN};
use moose_proto::vors::Sid;
use socket2::SockAddr;
use tracing::debug;

use super::link::CoreLink;
use crate::cluster::stats::LinkDrop;
use crate::shard::Shard;
use crate::stats::CoreStats;
use crate::sys::{self, Gathered, RECV_BATCH, RecvBatch};

/// The media packet inside an accepted link datagram.
fn payload_of(datagram: &[u8]) -> &[u8] {
    let end = datagram.len().saturating_sub(LINK_TAG_LEN);
    datagram.get(LINK_HEADER_LEN..end).unwrap_or_default()
}

/// Receives this core's link datagrams until the socket fails: each accepted one goes to its
/// room's local recipients.
pub(crate) async fn receive(shard: Rc<Shard>) {
    let (Some(link), Some(vors_udp)) = (shard.link.as_ref(), shard.vors.udp.get()) else {
        return;
    };
    let (fd, vors_fd) = (link.socket.as_raw_fd(), vors_udp.as_raw_fd());
    let mut batch = RecvBatch::new(MAX_LINK_LEN);
    let mut copies: Vec<(usize, SockAddr)> = Vec::with_capacity(RECV_BATCH * 4);
    let mut peek = [0u8; 1];
    let mut drained = true;
    loop {
        if drained {
            if let Err(e) = link.socket.peek_from(&mut peek).await {
                debug!(error = %e, "link recv failed");
            }
        }
        batch.clear();
        let count = match batch.recv_now(fd) {
            Ok(count) => count,
            Err(e) => {
                debug!(error = %e, "link recv failed");
                drained = false;
                glommio::yield_if_needed().await;
                continue;
            }
        };
        drained = count < RECV_BATCH;
        copies.clear();
        for index in 0..batch.len() {
            judge(&shard, link, &batch, index, &mut copies);
        }
        send_in(vors_fd, &batch, &copies, &shard.stats);
        glommio::yield_if_needed().await;
    }
}

/// Checks link datagram `index` of `batch`; an accepted one adds a copy for every local
/// recipient of its room to `copies`.
fn judge(
    shard: &Shard,
    link: &CoreLink,
    batch: &RecvBatch,
    index: usize,
    copies: &mut Vec<(usize, SockAddr)>,
) {
    let stats = &shard.stats;
    let (datagram, _) = batch.get(index);
    let Ok(accepted) = link.edge.borrow_mut().judge(datagram, stats) else {
        return;
    };
    let Some(cell) = shard.vors.room_by_id(&accepted.room) else {
        stats.link_dropped(LinkDrop::UnknownRoom);
        return;
    };
    stats.link_accepted.inc();
    // The sender is a remote member, never a local recipient; its SID is the first byte.
    let sender = Sid(accepted.payload.first().copied().unwrap_or(u8::MAX));
    cell.fan_out(index, sender, copies);
}

/// Sends the packets inside the accepted link datagrams to their local recipients.
fn send_in(vors_fd: RawFd, batch: &RecvBatch, copies: &[(usize, SockAddr)], stats: &CoreStats) {
    if copies.is_empty() {
        return;
    }
    let copy = |i: usize| -> Gathered<'_> {
        let (index, addr) = &copies[i];
        ([payload_of(batch.get(*index).0), &[], &[]], addr)
    };
    let sent = sys::send_gathered(vors_fd, copies.len(), copy);
    let bytes: usize = (0..sent).map(|i| copy(i).0[0].len()).sum();
    stats.vors_datagrams_out.add(sent as u64);
    stats.vors_bytes_out.add(bytes as u64);
    stats.vors_send_dropped.add((copies.len() - sent) as u64);
}
