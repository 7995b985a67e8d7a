//! Accept loops that survive running out of file descriptors.
//!
//! When the process hits RLIMIT_NOFILE (EMFILE) or the system its file table limit (ENFILE),
//! `accept` fails and the connection stays in the listen backlog: the client hangs until it
//! gives up, and the loop would spin or sleep blindly. The process therefore keeps a few
//! spare descriptors (open `/dev/null`s, a [`spares::SparePool`]), reserved while descriptors
//! are plentiful. When accept fails for want of descriptors, the loop closes a spare, accepts a
//! waiting connection on the freed slot, and either closes it at once (the client sees a
//! clean close instead of hanging; counted as
//! `moose_connections_refused_total{reason="no_descriptors"}`) or, for the admin endpoint,
//! answers it ([`WhenExhausted::Serve`]) so `/readyz` and `/metrics` stay answerable. Then it
//! reopens the spare. While exhausted the loop looks again every [`SHED_EVERY`]; the warning
//! is logged at most once a second per core ([`warnings::AcceptWarnings`]), with the count,
//! and the first accept that works again is logged at info with what was closed since.

pub(crate) mod spares;
pub(crate) mod warnings;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};
use tracing::debug;

use crate::limits::ConnectionRefusal;
use crate::limits::address::AddressSlot;
use crate::shard::Shard;
use crate::sys;

/// How often an exhausted accept loop sheds what waits and tries again.
pub(crate) const SHED_EVERY: Duration = Duration::from_millis(10);
/// Back-off after an accept error other than running out of descriptors.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// What an accept loop does with a connection waiting while descriptors are exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhenExhausted {
    /// Accept it on a spare descriptor's slot and close it at once.
    Shed,
    /// Accept it on a spare descriptor's slot and serve it; the pool is refilled after
    /// ([`spares::SparePool::refill`]). For the admin endpoint: few, trusted requests.
    Serve,
}

/// A connection from [`Acceptor::next`].
#[derive(Debug)]
pub(crate) enum Accepted {
    Stream(TcpStream),
    /// Accepted on a spare's slot while exhausted, or while the pool is short
    /// ([`WhenExhausted::Serve`] only): serve it before accepting again, then call
    /// [`spares::SparePool::refill`].
    OnSpare(TcpStream),
}

/// A listening socket and what its loop does when descriptors run out.
#[derive(Debug)]
pub(crate) struct Acceptor {
    listener: TcpListener,
    /// The listener's descriptor, owned by `listener` (valid as long as it is).
    fd: RawFd,
    when_exhausted: WhenExhausted,
}

/// True for the errors that mean "no descriptor for the new connection".
pub(crate) fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

impl Acceptor {
    pub(crate) fn new(listener: OwnedFd, when_exhausted: WhenExhausted) -> Self {
        let fd = listener.as_raw_fd();
        Acceptor {
            listener: sys::glommio_listener(listener),
            fd,
            when_exhausted,
        }
    }

    /// The next connection to serve whose address has room under
    /// `--max-connections-per-address`, with its address and its slot. A connection over the
    /// limit is counted and closed, after `refusal` (if not empty) in one non-blocking send:
    /// nothing waits on a client that is refused.
    pub(crate) async fn next_admitted(
        &mut self,
        shard: &Shard,
        refusal: &[u8],
    ) -> (TcpStream, SocketAddr, AddressSlot) {
        loop {
            let stream = match self.next(shard).await {
                Accepted::Stream(stream) | Accepted::OnSpare(stream) => stream,
            };
            let Ok(addr) = stream.peer_addr() else {
                continue;
            };
            if let Some(slot) = shard.limits.connections.try_take(addr.ip()) {
                return (stream, addr, slot);
            }
            shard
                .stats
                .connection_refused(ConnectionRefusal::PerAddress);
            debug!(peer = %addr, "too many connections from one address");
            if !refusal.is_empty() {
                let _ = sys::send_vectored_now(stream.as_raw_fd(), &[refusal]);
            }
        }
    }

    /// The next connection to serve. Runs out-of-descriptor rounds (shedding, counting,
    /// logging) until one comes.
    pub(crate) async fn next(&mut self, shard: &Shard) -> Accepted {
        let spares = &shard.spares;
        loop {
            let error = match self.listener.accept().await {
                Ok(stream) if spares.keep_after_accept() => {
                    shard.accept_warnings.accepted(shard.core);
                    return Accepted::Stream(stream);
                }
                // The admin endpoint answers even then: its few, trusted requests (is the
                // relay ready, what do the counters say) matter most while descriptors are
                // out. The pool is refilled once the request is served, as for `OnSpare`.
                Ok(stream) if self.when_exhausted == WhenExhausted::Serve => {
                    return Accepted::OnSpare(stream);
                }
                Ok(stream) => {
                    // The pool is short and descriptors are out: this slot goes to the pool.
                    drop(stream);
                    spares.refill();
                    shard
                        .stats
                        .connection_refused(ConnectionRefusal::NoDescriptors);
                    io::Error::from_raw_os_error(libc::EMFILE)
                }
                Err(e) => io::Error::from(e),
            };
            if !out_of_descriptors(&error) {
                shard.accept_warnings.error(shard.core, &error);
                glommio::timer::sleep(ERROR_BACKOFF).await;
                continue;
            }
            let spare = match self.when_exhausted {
                WhenExhausted::Serve => spares.accept_on_spare(self.fd),
                WhenExhausted::Shed => None,
            };
            if let Some(fd) = spare {
                shard.accept_warnings.exhausted(shard.core, 0, &error);
                return Accepted::OnSpare(sys::glommio_stream(fd));
            }
            let shed = spares.shed_waiting(self.fd);
            for _ in 0..shed {
                shard
                    .stats
                    .connection_refused(ConnectionRefusal::NoDescriptors);
            }
            shard.accept_warnings.exhausted(shard.core, shed, &error);
            glommio::timer::sleep(SHED_EVERY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_descriptor_errors_count_as_exhaustion() {
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(
            libc::ENFILE
        )));
        assert!(!out_of_descriptors(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }
}
