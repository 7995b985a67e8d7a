//! The VoRS side of the baseline: static UDP fan-out, no handshake, no crypto, no tag check.
//!
//! Each worker reads what its SO_REUSEPORT socket got with `recvmmsg`, looks each source up in
//! the [`VorsTable`], and sends all copies of all datagrams of the batch in one `sendmmsg`
//! whose messages point into the receive buffers. Unlisted sources are dropped.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use super::sys::{self, RecvBatch};
use super::table::VorsTable;

/// Batches one readiness event may forward before the loop looks at its other sockets again.
const BATCHES_PER_WAKEUP: usize = 16;

/// One worker's UDP forwarder.
#[derive(Debug)]
pub(crate) struct UdpForwarder {
    socket: UdpSocket,
    table: Arc<VorsTable>,
    batch: RecvBatch,
}

impl UdpForwarder {
    /// Forwards through `socket` (bound, non-blocking) by `table`.
    pub(crate) fn new(socket: UdpSocket, table: Arc<VorsTable>) -> UdpForwarder {
        UdpForwarder {
            socket,
            table,
            batch: RecvBatch::default(),
        }
    }

    /// The socket, for epoll registration.
    pub(crate) fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Forwards what is waiting, up to a bound (epoll is level-triggered: the rest brings us
    /// back). Receive errors other than "nothing waiting" (an ICMP error reported on the
    /// socket) end this round only.
    pub(crate) fn on_readable(&mut self) {
        let fd = self.socket.as_raw_fd();
        for _ in 0..BATCHES_PER_WAKEUP {
            match self.batch.recv(fd) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let table = &self.table;
            let copies = self.batch.datagrams().flat_map(|(payload, from)| {
                from.and_then(|from| table.recipients(&from))
                    .into_iter()
                    .flatten()
                    .map(move |to| (payload, to))
            });
            sys::send_many(fd, copies);
        }
    }
}
