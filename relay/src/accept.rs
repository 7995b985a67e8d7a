//! Accept loops that survive running out of file descriptors.
//!
//! When the process hits RLIMIT_NOFILE (EMFILE) or the system its file table limit (ENFILE),
//! `accept` fails and the connection stays in the listen backlog: the client hangs until it
//! gives up, and the loop would spin or sleep blindly. Each accept loop therefore keeps one
//! spare descriptor (an open `/dev/null`), reserved while descriptors are plentiful. When
//! accept fails for want of descriptors, the loop closes the spare, accepts a waiting
//! connection on the freed slot, and either closes it at once (the client sees a clean close
//! instead of hanging; counted as `moose_connections_refused_total{reason="no_descriptors"}`)
//! or, for the admin endpoint, answers it ([`WhenExhausted::Serve`]) so `/readyz` and
//! `/metrics` stay answerable. Then it reopens the spare. While exhausted the loop looks again
//! every [`SHED_EVERY`]; the warning is logged at most once a second per core, with the count.

use std::cell::Cell;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use glommio::net::{TcpListener, TcpStream};
use tracing::warn;

use crate::limits::ConnectionRefusal;
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
    /// Accept it on the spare descriptor and close it at once.
    Shed,
    /// Accept it on the spare descriptor and serve it; the spare is reopened after
    /// ([`Acceptor::restore_spare`]). For the admin endpoint: few, trusted requests.
    Serve,
}

/// A connection from [`Acceptor::next`].
#[derive(Debug)]
pub enum Accepted {
    Stream(TcpStream),
    /// Accepted on the spare descriptor while exhausted ([`WhenExhausted::Serve`] only): serve
    /// it before accepting again, then call [`Acceptor::restore_spare`].
    OnSpare(TcpStream),
}

/// A listening socket, its accept loop's spare descriptor and what to do when exhausted.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    /// The listener's descriptor, owned by `listener` (valid as long as it is).
    fd: RawFd,
    spare: Option<OwnedFd>,
    when_exhausted: WhenExhausted,
}

fn open_spare() -> Option<OwnedFd> {
    File::open("/dev/null").ok().map(OwnedFd::from)
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
            spare: open_spare(),
            when_exhausted,
        }
    }

    /// Reopens the spare descriptor if it is not held (after serving on it, or when an
    /// earlier reopen failed).
    pub fn restore_spare(&mut self) {
        if self.spare.is_none() {
            self.spare = open_spare();
        }
    }

    /// The next connection to serve. Runs out-of-descriptor rounds (shedding, counting,
    /// logging) until one comes.
    pub async fn next(&mut self, shard: &Shard) -> Accepted {
        loop {
            let error = match self.listener.accept().await {
                Ok(stream) => return Accepted::Stream(stream),
                Err(e) => io::Error::from(e),
            };
            if !out_of_descriptors(&error) {
                shard.accept_warnings.error(shard.core, &error);
                glommio::timer::sleep(ERROR_BACKOFF).await;
                continue;
            }
            if self.when_exhausted == WhenExhausted::Serve
                && let Some(stream) = self.accept_on_spare()
            {
                shard.accept_warnings.exhausted(shard.core, 0, &error);
                return Accepted::OnSpare(stream);
            }
            let shed = self.shed_waiting();
            for _ in 0..shed {
                shard
                    .stats
                    .connection_refused(ConnectionRefusal::NoDescriptors);
            }
            shard.accept_warnings.exhausted(shard.core, shed, &error);
            glommio::timer::sleep(SHED_EVERY).await;
        }
    }

    /// With the spare closed, accepts one waiting connection to serve on its slot.
    fn accept_on_spare(&mut self) -> Option<TcpStream> {
        self.spare = None;
        match sys::accept_waiting(self.fd) {
            Ok(Some(fd)) => Some(sys::glommio_stream(fd)),
            _ => {
                self.restore_spare();
                None
            }
        }
    }

    /// Accepts every waiting connection (up to a round's worth) on the spare's slot and
    /// closes it at once; returns how many.
    fn shed_waiting(&mut self) -> usize {
        let mut shed = 0;
        while shed < MAX_SHED_PER_ROUND {
            self.spare = None;
            // Dropped at once: the client reads EOF (or a reset if it had sent bytes).
            let closed = matches!(sys::accept_waiting(self.fd), Ok(Some(_)));
            self.restore_spare();
            if !closed {
                // Nothing waits, or the slot went to another thread first.
                break;
            }
            shed += 1;
        }
        self.restore_spare();
        shed
    }
}

/// One core's accept warnings, at most one per [`WARN_EVERY`], each with what happened since
/// the last.
#[derive(Debug, Default)]
pub struct AcceptWarnings {
    last: Cell<Option<Instant>>,
    shed: Cell<u64>,
    rounds: Cell<u64>,
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

    /// Notes an out-of-descriptors round that shed `shed` connections.
    pub fn exhausted(&self, core: usize, shed: usize, error: &io::Error) {
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
}
