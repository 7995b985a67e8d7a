//! Time and pacing: one monotonic clock for the whole process, and a send schedule that
//! spreads streams of one period evenly over it.
//!
//! Every stream sends at `start + phase + k * period`. All streams of a run share the period,
//! so sorted by phase they come due in a fixed cycle: the schedule is a cursor over that
//! cycle, and finding the next due stream is O(1) with no heap or timer wheel to maintain.

use std::time::{Duration, Instant};

/// Nanoseconds since the run's origin, from `Instant` (CLOCK_MONOTONIC). Every thread reads
/// the same clock, so a send time written by one thread and a receive time read by another
/// are directly comparable.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn new() -> Self {
        Clock {
            origin: Instant::now(),
        }
    }

    /// Nanoseconds since the origin.
    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// The `Instant` of a time on this clock (for the session machines, which take
    /// `Instant`s).
    pub fn instant(&self, ns: u64) -> Instant {
        self.origin + Duration::from_nanos(ns)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// The phase of stream `index` of `total`: streams are spread evenly over one period, so a
/// run's sends are as smooth as its streams allow, not bunched on the period's edges.
pub fn phase_ns(index: usize, total: usize, period_ns: u64) -> u64 {
    if total == 0 {
        return 0;
    }
    (u128::from(period_ns) * index as u128 / total as u128) as u64
}

/// When the streams of one thread send.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// (phase, stream slot), sorted by phase.
    slots: Vec<(u64, usize)>,
    period_ns: u64,
    start_ns: u64,
    end_ns: u64,
    cursor: usize,
    round: u64,
}

/// A send that came due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The slot given to [`Schedule::new`] for the stream.
    pub slot: usize,
    /// When it was meant to go, on the run's clock.
    pub at_ns: u64,
}

impl Schedule {
    /// A schedule for `slots` (phase in ns, the caller's stream slot), sending from
    /// `start_ns` until before `end_ns`, every `period_ns`.
    pub fn new(mut slots: Vec<(u64, usize)>, period_ns: u64, start_ns: u64, end_ns: u64) -> Self {
        slots.sort_unstable();
        Schedule {
            slots,
            period_ns: period_ns.max(1),
            start_ns,
            end_ns,
            cursor: 0,
            round: 0,
        }
    }

    fn next_at(&self) -> Option<u64> {
        let (phase, _) = *self.slots.get(self.cursor)?;
        let at = self.start_ns + self.round * self.period_ns + phase;
        (at < self.end_ns).then_some(at)
    }

    /// When the next send is due; `None` once the run's sending time is over.
    pub fn next_due(&self) -> Option<u64> {
        self.next_at()
    }

    /// The next send due at or before `now_ns`, if any. Call until `None`.
    pub fn pop_due(&mut self, now_ns: u64) -> Option<Due> {
        let at = self.next_at()?;
        if at > now_ns {
            return None;
        }
        let slot = self.slots[self.cursor].1;
        self.cursor += 1;
        if self.cursor == self.slots.len() {
            self.cursor = 0;
            self.round += 1;
        }
        Some(Due { slot, at_ns: at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_spread_evenly_over_one_period() {
        let period = 2_560_000;
        let phases: Vec<u64> = (0..4).map(|i| phase_ns(i, 4, period)).collect();
        assert_eq!(phases, vec![0, 640_000, 1_280_000, 1_920_000]);
        assert_eq!(phase_ns(0, 0, period), 0);
    }

    #[test]
    fn sends_come_due_in_phase_order_every_period_until_the_end() {
        let period = 1_000;
        let slots = vec![(500, 2), (0, 0), (250, 1)];
        let mut s = Schedule::new(slots, period, 10_000, 12_100);
        assert_eq!(s.next_due(), Some(10_000));
        assert_eq!(s.pop_due(9_999), None);
        let mut all = Vec::new();
        while let Some(due) = s.pop_due(u64::MAX) {
            all.push((due.at_ns, due.slot));
        }
        assert_eq!(
            all,
            vec![
                (10_000, 0),
                (10_250, 1),
                (10_500, 2),
                (11_000, 0),
                (11_250, 1),
                (11_500, 2),
                (12_000, 0),
            ]
        );
        assert_eq!(s.next_due(), None, "12_250 is past the end");
    }

    #[test]
    fn a_late_caller_gets_every_missed_send_in_order() {
        let mut s = Schedule::new(vec![(0, 0), (400, 1)], 1_000, 0, 10_000);
        let due: Vec<Due> = std::iter::from_fn(|| s.pop_due(2_500)).collect();
        let slots: Vec<usize> = due.iter().map(|d| d.slot).collect();
        assert_eq!(slots, vec![0, 1, 0, 1, 0, 1]);
        assert_eq!(due.last().map(|d| d.at_ns), Some(2_400));
        assert_eq!(s.next_due(), Some(3_000));
    }

    #[test]
    fn pcm_rate_is_390_625_messages_per_second() {
        // 2.56 ms period: 10 s hold exactly 3906.25 periods; a stream at phase 0 sends 3907.
        let mut s = Schedule::new(vec![(0, 0)], 2_560_000, 0, 10_000_000_000);
        let n = std::iter::from_fn(|| s.pop_due(u64::MAX)).count();
        assert_eq!(n, 3907);
    }

    #[test]
    fn clock_is_monotonic_and_maps_back_to_instants() {
        let clock = Clock::new();
        let a = clock.now_ns();
        let b = clock.now_ns();
        assert!(b >= a);
        let at = clock.instant(1_000_000);
        assert!(at > clock.instant(0));
    }
}
