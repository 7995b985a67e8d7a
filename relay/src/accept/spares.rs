//! Descriptors held in reserve, so that an accept loop out of descriptors can still take a
//! waiting connection off the backlog (see [`super`]).

use std::fs::File;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::sys;

/// Most connections shed in one round, so a full backlog cannot hog the core.
const MAX_SHED_PER_ROUND: usize = 256;

/// Descriptors held in reserve (open `/dev/null`s) for every accept loop of the process.
///
/// One pool behind a mutex rather than a spare per loop: while one loop has closed a spare
/// to accept on its slot, any other thread's accept may take that slot first and keep it
/// (a real connection). A per-loop spare would then be lost, and its loop could shed nothing
/// more; with a shared pool the others' spares still serve every loop, and the pool is topped
/// up again before any new connection is served ([`SparePool::keep_after_accept`]). The lock
/// is taken only while out of descriptors, or once after each accept while the pool is short.
#[derive(Debug)]
pub(crate) struct SparePool {
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
    pub(crate) fn new(target: usize) -> Self {
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
    pub(crate) fn refill(&self) {
        let mut spares = self.lock();
        self.top_up(&mut spares);
    }

    #[cfg(test)]
    /// Spares held now.
    pub(crate) fn held(&self) -> usize {
        self.lock().len()
    }

    /// After a successful accept: true to serve the connection; false when the pool is short
    /// and cannot be topped up, so the connection must be closed (and the pool topped up
    /// with its slot) to keep shedding possible.
    pub(crate) fn keep_after_accept(&self) -> bool {
        if !self.short.load(Ordering::Acquire) {
            return true;
        }
        let mut spares = self.lock();
        self.top_up(&mut spares)
    }

    /// Accepts every connection waiting on `listener` (up to a round's worth) on a spare's
    /// slot and closes it at once; returns how many.
    pub(crate) fn shed_waiting(&self, listener: RawFd) -> usize {
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
    pub(crate) fn accept_on_spare(&self, listener: RawFd) -> Option<OwnedFd> {
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

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

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
