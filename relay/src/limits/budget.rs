//! The share of each core that VoRS handshakes may take (`--handshake-cpu-percent`).
//!
//! A handshake costs the relay two expensive steps: decrypting message 1 (an X25519 operation
//! and the Kyber public key's hashing, about 300 µs) on the core that accepted it, and
//! writing message 2 (a Kyber1024 encapsulation and two X25519 operations, about 325 µs) on
//! the room's owner core. Per-address limits cannot bound their sum: an attacker with many
//! addresses (or one IPv6 /48) stays under every one of them. So each core also keeps a
//! budget of CPU time for handshakes, a token bucket in nanoseconds:
//!
//! - it earns `share` of the wall time that passes (25 % by default: 250 ms of handshake work
//!   per second), up to [`BURST`];
//! - each expensive step runs only while the balance is positive, is timed, and its time is
//!   taken from the balance (which may go below zero by one step: the next ones wait for the
//!   core to earn it back);
//! - a step that finds the balance spent waits its turn until the core has earned it back
//!   ([`HandshakeBudget::wait`]; the queue is `vors::listener`'s); one that would wait too long
//!   is refused: the connection is closed and counted
//!   (`moose_vors_handshakes_refused_total{reason="cpu_budget"}`).
//!
//! The burst is small on purpose: handshake tasks share the core's task queue with the media
//! path, so the handshake work that can run back to back, while a media packet waits its turn,
//! is at most [`BURST`] plus one step.
//!
//! Per core, in a `Cell`: no lock, two clock reads per expensive step.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The most handshake work a core may do back to back after an idle spell.
pub(crate) const BURST: Duration = Duration::from_millis(5);

/// One core's handshake budget.
#[derive(Debug)]
pub(crate) struct HandshakeBudget {
    /// Handshake work earned per unit of wall time, 0 < share ≤ 1; 1 means no budget.
    share: f64,
    /// Nanoseconds of handshake work the core may still do (negative: owed), and when that
    /// was last brought up to date.
    balance: Cell<(f64, Instant)>,
}

impl HandshakeBudget {
    /// A budget of `percent` % of the core (1 to 100; 100: handshakes are never refused for
    /// CPU), full at `now`.
    pub(crate) fn new(percent: u8, now: Instant) -> Self {
        HandshakeBudget {
            share: f64::from(percent.clamp(1, 100)) / 100.0,
            balance: Cell::new((BURST.as_nanos() as f64, now)),
        }
    }

    fn unlimited(&self) -> bool {
        self.share >= 1.0
    }

    /// The balance at `now`, with what was earned since the last look.
    fn balance(&self, now: Instant) -> f64 {
        let (balance, updated) = self.balance.get();
        let earned = now.saturating_duration_since(updated).as_nanos() as f64 * self.share;
        let balance = (balance + earned).min(BURST.as_nanos() as f64);
        self.balance.set((balance, now.max(updated)));
        balance
    }

    /// Whether an expensive step may start at `now`.
    pub(crate) fn allows(&self, now: Instant) -> bool {
        self.unlimited() || self.balance(now) > 0.0
    }

    /// How long after `now` the next expensive step may start: zero when it may now.
    pub(crate) fn wait(&self, now: Instant) -> Duration {
        if self.allows(now) {
            return Duration::ZERO;
        }
        let owed = -self.balance(now);
        // One nanosecond more than what is owed: the balance must be above zero, not at it.
        Duration::from_nanos((owed / self.share) as u64 + 1)
    }

    /// Takes `work`, the measured time of one expensive step that ended at `now`, from the
    /// balance.
    pub(crate) fn spend(&self, work: Duration, now: Instant) {
        if self.unlimited() {
            return;
        }
        let balance = self.balance(now) - work.as_nanos() as f64;
        let (_, updated) = self.balance.get();
        self.balance.set((balance, updated));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: Duration = Duration::from_micros(300);

    /// Steps of `STEP` run at `now` until the budget refuses one; how many ran.
    fn run_until_refused(budget: &HandshakeBudget, now: Instant) -> u32 {
        let mut ran = 0;
        while budget.allows(now) {
            budget.spend(STEP, now);
            ran += 1;
            assert!(ran < 1_000_000, "never refused");
        }
        ran
    }

    #[test]
    fn a_burst_then_a_refusal() {
        let t0 = Instant::now();
        let budget = HandshakeBudget::new(25, t0);
        // 5 ms of burst: 16 steps of 300 µs use 4.8 ms, the 17th runs on the last 200 µs.
        assert_eq!(run_until_refused(&budget, t0), 17);
    }

    #[test]
    fn the_core_earns_its_share_of_the_time() {
        let t0 = Instant::now();
        let budget = HandshakeBudget::new(25, t0);
        run_until_refused(&budget, t0);
        // Over 10 s at 25 %: 2.5 s of work, about 8 333 steps of 300 µs, whatever the
        // rhythm in which they come.
        let mut ran = 0;
        for ms in 1..=10_000 {
            ran += run_until_refused(&budget, t0 + Duration::from_millis(ms));
        }
        let expected = 2.5 / STEP.as_secs_f64();
        assert!(
            (f64::from(ran) - expected).abs() < 2.0,
            "{ran} steps, {expected} expected"
        );
    }

    #[test]
    fn an_idle_core_saves_no_more_than_the_burst() {
        let t0 = Instant::now();
        let budget = HandshakeBudget::new(50, t0);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(run_until_refused(&budget, later), 17);
    }

    #[test]
    fn a_long_step_is_owed_back() {
        let t0 = Instant::now();
        let budget = HandshakeBudget::new(10, t0);
        assert!(budget.allows(t0));
        // One 100 ms step: the 5 ms balance goes 95 ms below zero, which 10 % earns back in
        // 950 ms.
        budget.spend(Duration::from_millis(100), t0);
        assert!(!budget.allows(t0 + Duration::from_millis(949)));
        assert!(budget.allows(t0 + Duration::from_millis(951)));
    }

    #[test]
    fn the_wait_is_what_the_core_needs_to_earn_the_debt_back() {
        let t0 = Instant::now();
        let budget = HandshakeBudget::new(25, t0);
        assert_eq!(budget.wait(t0), Duration::ZERO);
        budget.spend(Duration::from_millis(6), t0);
        // 1 ms owed at 25 %: 4 ms.
        let wait = budget.wait(t0);
        assert!(wait > Duration::from_millis(4), "{wait:?}");
        assert!(wait < Duration::from_micros(4_001), "{wait:?}");
        assert!(!budget.allows(t0 + wait - Duration::from_micros(1)));
        assert!(budget.allows(t0 + wait));
    }

    #[test]
    fn a_hundred_percent_never_refuses() {
        let t0 = Instant::now();
        let budget = HandshakeBudget::new(100, t0);
        for _ in 0..100_000 {
            assert!(budget.allows(t0));
            budget.spend(Duration::from_millis(1), t0);
        }
    }
}
