//! A line peer's rate cap (`--line-rate-cap`): how many bytes a second it may have forwarded.
//!
//! Anyone with a line's apikey could otherwise send the largest messages as fast as its link
//! allows, each copied by the kernel to every other peer. The cap is a multiple of a Moose PCM
//! stream (400 000 bytes a second: 390.625 messages of 1024 bytes), 4 by default, after a burst
//! of a quarter second at the cap (at least one largest message). A message over the cap is
//! dropped and counted (`moose_ws_dropped_total{reason="rate_capped"}`); the peer stays.
//!
//! Every byte the peer sends counts, control frames between messages included: the cost of a
//! message is what was read since the last message judged. The bucket is kept as GCRA's virtual
//! time in integer nanoseconds, so a decision is a multiply, a shift, an add and a compare,
//! and the clock is read once per read call, not per message.

use std::time::Instant;

/// Bytes a second of one Moose PCM stream: 200 000 samples of 16 bits.
pub(crate) const PCM_BYTES_PER_SECOND: u64 = 400_000;

/// Fixed-point shift of the per-byte cost (nanoseconds in 1/65536ths).
const COST_SHIFT: u32 = 16;

/// The cap of one peer.
#[derive(Debug, Clone)]
pub(crate) struct ByteRate {
    /// What one byte costs, in 1/65536 ns.
    cost_per_byte: u64,
    /// How far the virtual time may run ahead of the clock: the burst, in ns.
    burst_nanos: u64,
    /// GCRA's theoretical arrival time: when the bytes allowed so far would have been sent at
    /// the cap, in ns since `epoch`.
    caught_up: u64,
    epoch: Instant,
}

impl ByteRate {
    /// `multiple` PCM streams a second with a burst of a quarter second at that rate, but at
    /// least `largest` bytes (one largest message with its frame header); `None` for 0.
    pub(crate) fn pcm_multiple(multiple: u32, largest: usize, now: Instant) -> Option<ByteRate> {
        let bytes_per_second = u64::from(multiple) * PCM_BYTES_PER_SECOND;
        (bytes_per_second > 0).then(|| {
            let burst = (bytes_per_second / 4).max(largest as u64);
            ByteRate::new(bytes_per_second, burst, now)
        })
    }

    fn new(bytes_per_second: u64, burst_bytes: u64, now: Instant) -> Self {
        let cost_per_byte = (1_000_000_000u64 << COST_SHIFT) / bytes_per_second.max(1);
        ByteRate {
            cost_per_byte,
            burst_nanos: burst_bytes.saturating_mul(cost_per_byte) >> COST_SHIFT,
            caught_up: 0,
            epoch: now,
        }
    }

    /// `now` as this cap's clock (ns since it started): read once per read call.
    pub(crate) fn clock(&self, now: Instant) -> u64 {
        // In u64 (good for 584 years), without `as_nanos`' 128-bit arithmetic.
        let since = now.saturating_duration_since(self.epoch);
        since
            .as_secs()
            .wrapping_mul(1_000_000_000)
            .wrapping_add(u64::from(since.subsec_nanos()))
    }

    /// Whether `bytes` more may be forwarded at `now` (from [`clock`](Self::clock)); if so
    /// they are counted.
    #[inline]
    pub(crate) fn allows(&mut self, now: u64, bytes: usize) -> bool {
        let cost = (bytes as u64).saturating_mul(self.cost_per_byte) >> COST_SHIFT;
        let next = self.caught_up.max(now).saturating_add(cost);
        if next - now > self.burst_nanos {
            return false;
        }
        self.caught_up = next;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// How many `size`-byte messages pass at `at`.
    fn passing(rate: &mut ByteRate, at: Instant, size: usize, tries: usize) -> usize {
        let now = rate.clock(at);
        (0..tries).filter(|_| rate.allows(now, size)).count()
    }

    #[test]
    fn the_default_cap_passes_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut rate = ByteRate::pcm_multiple(4, 65_550, t0).expect("a cap");
        // The burst: a quarter second at 1 600 000 bytes/s, 400 000 bytes.
        assert_eq!(passing(&mut rate, t0, 1000, 1000), 400);
        // Then 1 600 bytes a millisecond.
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(passing(&mut rate, t1, 1000, 1000), 16);
        // An idle second refills the burst, no more.
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(passing(&mut rate, t2, 1000, 1000), 400);
    }

    #[test]
    fn a_pcm_stream_never_meets_the_cap() {
        let t0 = Instant::now();
        let mut rate = ByteRate::pcm_multiple(1, 65_550, t0).expect("a cap");
        // Ten seconds of 1024-byte messages read four at a time every 10.24 ms: exactly one
        // PCM stream, at a cap of one stream (the default is four).
        for step in 0..977u64 {
            let at = t0 + Duration::from_micros(step * 10_240);
            assert_eq!(passing(&mut rate, at, 1024, 4), 4, "step {step}");
        }
    }

    #[test]
    fn the_burst_holds_one_largest_message_even_at_a_low_cap() {
        let t0 = Instant::now();
        let mut rate = ByteRate::pcm_multiple(1, 200_000, t0).expect("a cap");
        assert_eq!(passing(&mut rate, t0, 200_000, 2), 1);
        assert!(
            ByteRate::pcm_multiple(0, 65_550, t0).is_none(),
            "0 is no cap"
        );
    }

    #[test]
    fn huge_costs_saturate_instead_of_wrapping() {
        let t0 = Instant::now();
        let mut rate = ByteRate::pcm_multiple(4, 65_550, t0).expect("a cap");
        let now = rate.clock(t0 + Duration::from_secs(3600));
        assert!(!rate.allows(now, usize::MAX));
        assert!(rate.allows(now, 1000), "a refused message costs nothing");
    }
}
