//! Token buckets per client address: how often one address may do something.
//!
//! A bucket per address: `per_minute` events are allowed in a burst, refilled evenly over a
//! minute. Two users:
//!
//! - Failed apikey attempts ("moosebombing"): an address with an empty bucket is refused with
//!   429 before its key is even looked at, so the limit cannot be used to probe keys
//!   ([`AddressBuckets::allows`], then [`AddressBuckets::spend`] on a failure).
//! - VoRS handshakes (`--handshakes-per-minute`): every handshake spends a token
//!   ([`AddressBuckets::try_spend`]).
//!
//! Each is one table for the whole process behind a mutex (see `limits`), so the limit is
//! exact however the kernel spreads one address's connections over the cores. The mutex is
//! taken once per upgrade request or handshake, never per message.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most addresses remembered per table; beyond it, the fullest buckets are forgotten first.
const MAX_TRACKED: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Buckets for one kind of event, by address.
#[derive(Debug)]
pub(crate) struct AddressBuckets {
    per_minute: f64,
    buckets: HashMap<IpAddr, Bucket>,
}

impl AddressBuckets {
    pub(crate) fn new(per_minute: u32) -> Self {
        AddressBuckets {
            per_minute: f64::from(per_minute),
            buckets: HashMap::new(),
        }
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        (bucket.tokens + elapsed * self.per_minute / 60.0).min(self.per_minute)
    }

    /// False when `addr` has used up its tokens and must be refused.
    pub(crate) fn allows(&self, addr: IpAddr, now: Instant) -> bool {
        self.buckets
            .get(&addr)
            .is_none_or(|b| self.refilled(*b, now) >= 1.0)
    }

    /// Takes a token for one event from `addr` if it has one; false (and nothing taken) when
    /// its bucket is empty.
    pub(crate) fn try_spend(&mut self, addr: IpAddr, now: Instant) -> bool {
        if !self.allows(addr, now) {
            return false;
        }
        self.spend(addr, now);
        true
    }

    /// Records one event from `addr` (a failed attempt), whether or not it had a token.
    pub(crate) fn spend(&mut self, addr: IpAddr, now: Instant) {
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(&addr) {
            self.forget_full(now);
        }
        let tokens = match self.buckets.get(&addr) {
            Some(b) => self.refilled(*b, now),
            None => self.per_minute,
        };
        self.buckets.insert(
            addr,
            Bucket {
                tokens: (tokens - 1.0).max(0.0),
                updated: now,
            },
        );
    }

    /// Drops buckets that have refilled completely: they hold no information any more.
    fn forget_full(&mut self, now: Instant) {
        let per_minute = self.per_minute;
        let full_after = Duration::from_secs(60);
        self.buckets.retain(|_, b| {
            b.tokens < per_minute && now.saturating_duration_since(b.updated) < full_after
        });
        if self.buckets.len() >= MAX_TRACKED {
            // Still full of active attackers: start over rather than grow without bound.
            self.buckets.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused_then_refilled() {
        let mut limiter = AddressBuckets::new(3);
        let addr: IpAddr = [192, 0, 2, 1].into();
        let other: IpAddr = [192, 0, 2, 2].into();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.allows(addr, t0));
            limiter.spend(addr, t0);
        }
        assert!(
            !limiter.allows(addr, t0),
            "fourth attempt in a burst is refused"
        );
        assert!(
            limiter.allows(other, t0),
            "other addresses are not affected"
        );
        // One failure is refilled every 20 s at 3 per minute.
        assert!(!limiter.allows(addr, t0 + Duration::from_secs(19)));
        assert!(limiter.allows(addr, t0 + Duration::from_secs(21)));
    }

    #[test]
    fn try_spend_takes_only_what_there_is() {
        let mut buckets = AddressBuckets::new(2);
        let addr: IpAddr = [192, 0, 2, 3].into();
        let t0 = Instant::now();
        assert!(buckets.try_spend(addr, t0));
        assert!(buckets.try_spend(addr, t0));
        assert!(!buckets.try_spend(addr, t0), "the burst is spent");
        assert!(!buckets.try_spend(addr, t0 + Duration::from_secs(29)));
        // One token every 30 s at 2 per minute; a refusal took nothing.
        assert!(buckets.try_spend(addr, t0 + Duration::from_secs(31)));
        assert!(!buckets.try_spend(addr, t0 + Duration::from_secs(31)));
    }
}
