//! Accept loops that survive running out of file descriptors.
//!
//! When the process hits RLIMIT_NOFILE (EMFILE) or the system its file table limit (ENFILE),
//! `accept` fails and the connection stays in the listen backlog: the client hangs until it
//! gives up, and the loop would spin or sleep blindly. The process therefore keeps a few
//! spare descriptors (open `/dev/null`s, a [`SparePool`]), reserved while descriptors are
//! plentiful. When accept fails for want of descriptors, the loop closes a spare, accepts a
//! waiting connection on the freed slot, and either closes it at once (the client sees a
//! clean close instead of hanging; counted as
//! `moose_connections_refused_total{reason="no_descriptors"}`) or, for the admin endpoint,
//! answers it ([`WhenExhausted::Serve`]) so `/readyz` and `/metrics` stay answerable. Then it
//! reopens the spare. While exhausted the loop looks again
//! every [`SHED_EVERY`]; the warning is logged at most once a second per core, with the count,
//! and the first accept that works again is logged at info with what was closed since.

use std::cell::Cell;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use glommio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::limits::ConnectionRefusal;
use crate::limits::address::AddressSlot;
use crate::shard::Shard;
use crate::sys;

/// How often an exhausted accept loop sheds what waits and tries again.
pub const SHED_EVERY: Duration = Duration::from_millis(10);
/// Most connections shed in one round, so a full backlog cannot hog the core.
const MAX_SHED_PER_ROUND: usize = 256;
/// Least time between two warnings of one core.
const WARN_EVERY: Duration = Duration::from_secs(1);
/// Back-off after an accept error other than running out of descriptors.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// What an accept loop does with a connection waiting while descriptors are exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenExhausted {
    /// Accept it on a spare descriptor's slot and close it at once.
    Shed,
    /// Accept it on a spare descriptor's slot and serve it; the pool is refilled after
    /// ([`SparePool::refill`]). For the admin endpoint: few, trusted requests.
    Serve,
}

/// A connection from [`Acceptor::next`].
#[derive(Debug)]
pub enum Accepted {
    Stream(TcpStream),
    /// Accepted on a spare's slot while exhausted, or while the pool is short
    /// ([`WhenExhausted::Serve`] only): serve it before accepting again, then call
    /// [`SparePool::refill`].
    OnSpare(TcpStream),
}

/// Descriptors held in reserve (open `/dev/null`s) for every accept loop of the process.
///
/// One pool behind a mutex rather than a spare per loop: while one loop has closed a spare
/// to accept on its slot, any other thread's accept may take that slot first and keep it
/// (a real connection). A per-loop spare would then be lost, and its loop could shed nothing
/// more; with a shared pool the others' spares still serve every loop, and the pool is topped
/// up again before any new connection is served ([`SparePool::keep_after_accept`]). The lock
/// is taken only while out of descriptors, or once after each accept while the pool is short.
#[derive(Debug)]
pub struct SparePool {
    target: usize,
    spares: Mutex<Vec<OwnedFd>>,
    /// The pool holds fewer than `target`: accepts must try to top it up.
    short: AtomicBool,
}

fn open_spare() -> Option<OwnedFd> {
    File::open("/dev/null").ok().map(OwnedFd::from)
}

impl SparePool {
    /// A pool of `target` spares (one per accept loop is plenty), opened now.
    pub fn new(target: usize) -> Self {
        let pool = SparePool {
            target,
            spares: Mutex::new(Vec::with_capacity(target)),
            short: AtomicBool::new(true),
        };
        pool.refill();
        pool
    }

    fn lock(&self) -> MutexGuard<'_, Vec<OwnedFd>> {
        self.spares.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens spares up to the target; false when descriptors ran out first.
    fn top_up(&self, spares: &mut Vec<OwnedFd>) -> bool {
        while spares.len() < self.target {
            match open_spare() {
                Some(fd) => spares.push(fd),
                None => break,
            }
        }
        let full = spares.len() >= self.target;
        self.short.store(!full, Ordering::Release);
        full
    }

    /// Tops the pool up as far as descriptors allow.
    pub fn refill(&self) {
        let mut spares = self.lock();
        self.top_up(&mut spares);
    }

    /// Spares held now.
    pub fn held(&self) -> usize {
        self.lock().len()
    }

    /// After a successful accept: true to serve the connection; false when the pool is short
    /// and cannot be topped up, so the connection must be closed (and the pool topped up
    /// with its slot) to keep shedding possible.
    pub fn keep_after_accept(&self) -> bool {
        if !self.short.load(Ordering::Acquire) {
            return true;
        }
        let mut spares = self.lock();
        self.top_up(&mut spares)
    }

    /// Accepts every connection waiting on `listener` (up to a round's worth) on a spare's
    /// slot and closes it at once; returns how many.
    pub fn shed_waiting(&self, listener: RawFd) -> usize {
        let mut spares = self.lock();
        self.top_up(&mut spares);
        let mut shed = 0;
        // A spare is closed only when a connection waits: while it is closed, any thread of
        // the process may take its slot.
        while shed < MAX_SHED_PER_ROUND && sys::connection_waiting(listener) {
            let Some(spare) = spares.pop() else { break };
            drop(spare);
            // Dropped at once: the client reads EOF (or a reset if it had sent bytes).
            let closed = matches!(sys::accept_waiting(listener), Ok(Some(_)));
            self.top_up(&mut spares);
            if !closed {
                break;
            }
            shed += 1;
        }
        shed
    }

    /// Accepts one waiting connection on a spare's slot, to be served; the caller refills
    /// the pool once it is done with it.
    pub fn accept_on_spare(&self, listener: RawFd) -> Option<OwnedFd> {
        let mut spares = self.lock();
        if !sys::connection_waiting(listener) {
            return None;
        }
        drop(spares.pop()?);
        self.short.store(true, Ordering::Release);
        match sys::accept_waiting(listener) {
            Ok(Some(fd)) => Some(fd),
            _ => {
                self.top_up(&mut spares);
                None
            }
        }
    }
}

/// A listening socket and what its loop does when descriptors run out.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    /// The listener's descriptor, owned by `listener` (valid as long as it is).
    fd: RawFd,
    when_exhausted: WhenExhausted,
}

/// True for the errors that mean "no descriptor for the new connection".
pub fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

impl Acceptor {
    pub fn new(listener: OwnedFd, when_exhausted: WhenExhausted) -> Self {
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
    pub async fn next_admitted(
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
    pub async fn next(&mut self, shard: &Shard) -> Accepted {
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
            if self.when_exhausted == WhenExhausted::Serve
                && let Some(fd) = spares.accept_on_spare(self.fd)
            {
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

/// One core's accept warnings, at most one per [`WARN_EVERY`], each with what happened since
/// the last.
#[derive(Debug, Default)]
pub struct AcceptWarnings {
    last: Cell<Option<Instant>>,
    shed: Cell<u64>,
    rounds: Cell<u64>,
    /// Out of descriptors since the last accept that worked.
    exhausted: Cell<bool>,
}

impl AcceptWarnings {
    /// Whether a warning may be logged now (and, if so, starts a new period).
    fn due(&self, now: Instant) -> bool {
        let due = self
            .last
            .get()
            .is_none_or(|last| now.saturating_duration_since(last) >= WARN_EVERY);
        if due {
            self.last.set(Some(now));
        }
        due
    }

    /// Notes an accept that worked: the end of an exhaustion, if there was one.
    pub fn accepted(&self, core: usize) {
        if self.exhausted.replace(false) {
            info!(
                core,
                closed = self.shed.replace(0),
                failed_accepts = self.rounds.replace(0),
                "file descriptors available again: accepting connections"
            );
        }
    }

    /// Notes an out-of-descriptors round that shed `shed` connections.
    pub fn exhausted(&self, core: usize, shed: usize, error: &io::Error) {
        self.exhausted.set(true);
        self.shed.set(self.shed.get() + shed as u64);
        self.rounds.set(self.rounds.get() + 1);
        if self.due(Instant::now()) {
            warn!(
                core,
                error = %error,
                closed = self.shed.replace(0),
                failed_accepts = self.rounds.replace(0),
                "out of file descriptors: closing new connections at once"
            );
        }
    }

    /// Notes another accept error.
    pub fn error(&self, core: usize, error: &io::Error) {
        if self.due(Instant::now()) {
            warn!(core, error = %error, "accept failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_come_at_most_once_a_second() {
        let warnings = AcceptWarnings::default();
        let t0 = Instant::now();
        assert!(warnings.due(t0));
        assert!(!warnings.due(t0 + Duration::from_millis(500)));
        assert!(!warnings.due(t0 + Duration::from_millis(999)));
        assert!(warnings.due(t0 + Duration::from_millis(1000)));
        assert!(!warnings.due(t0 + Duration::from_millis(1001)));
    }

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

    #[test]
    fn the_pool_sheds_what_waits_and_keeps_its_spares() {
        let pool = SparePool::new(3);
        assert_eq!(pool.held(), 3);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut clients: Vec<std::net::TcpStream> = (0..5)
            .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
            .collect();
        assert_eq!(pool.shed_waiting(listener.as_raw_fd()), 5);
        assert_eq!(pool.held(), 3, "every spare is back");
        for client in &mut clients {
            use std::io::Read;
            let mut byte = [0u8; 1];
            assert_eq!(client.read(&mut byte).expect("a clean close"), 0);
        }
        assert_eq!(pool.shed_waiting(listener.as_raw_fd()), 0, "nothing waits");
        assert!(pool.keep_after_accept());
    }
}
