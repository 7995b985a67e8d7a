//! A process-wide count with a ceiling: lines (`--max-lines`) and rooms (`--max-rooms`).
//!
//! One atomic shared by every core, touched only when a line or room is made or goes (never
//! per message), so the limit is exact rather than split per core.

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub(crate) struct Quota {
    /// Most at once; 0: no limit.
    max: usize,
    used: AtomicUsize,
}

impl Quota {
    pub(crate) fn new(max: usize) -> Self {
        Quota {
            max,
            used: AtomicUsize::new(0),
        }
    }

    /// Takes one unit; false when `max` are in use.
    pub(crate) fn try_take(&self) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (self.max == 0 || used < self.max).then_some(used + 1)
            })
            .is_ok()
    }

    /// Gives back one unit taken with [`Quota::try_take`].
    pub(crate) fn give_back(&self) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_sub(1)
            });
    }

    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_until_one_goes() {
        let quota = Quota::new(2);
        assert!(quota.try_take());
        assert!(quota.try_take());
        assert!(!quota.try_take());
        assert_eq!(quota.used(), 2);
        quota.give_back();
        assert!(quota.try_take());
    }

    #[test]
    fn zero_is_no_limit_and_never_underflows() {
        let quota = Quota::new(0);
        for _ in 0..10_000 {
            assert!(quota.try_take());
        }
        let empty = Quota::new(1);
        empty.give_back();
        assert_eq!(empty.used(), 0);
    }
}
