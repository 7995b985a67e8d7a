//! One core's accept warnings while out of descriptors: rate-limited, each with what happened
//! since the last.

use std::cell::Cell;
use std::io;
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// Least time between two warnings of one core.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// One core's accept warnings, at most one per [`WARN_EVERY`], each with what happened since
/// the last.
#[derive(Debug, Default)]
pub(crate) struct AcceptWarnings {
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
    pub(crate) fn accepted(&self, core: usize) {
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
    pub(crate) fn exhausted(&self, core: usize, shed: usize, error: &io::Error) {
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
    pub(crate) fn error(&self, core: usize, error: &io::Error) {
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
}
