//! Token buckets per client address: how often one client may do something.
//!
//! A bucket per client (an IPv4 address or an IPv6 /64, see `limits::client`): `per_minute`
//! events are allowed in a burst, refilled evenly over a minute. Two users:
//!
//! - Failed apikey attempts ("moosebombing"): an address with an empty bucket is refused with
//!   429 before its key is even looked at, so the limit cannot be used to probe keys
//!   ([`AddressBuckets::knock`], then [`AddressBuckets::spend`] on a failure).
//! - VoRS handshakes (`--handshakes-per-minute`): every handshake spends a token
//!   ([`AddressBuckets::try_spend`]).
//!
//! Each is one table for the whole process behind a mutex (see `limits`), so the limit is
//! exact however the kernel spreads one address's connections over the cores. The mutex is
//! taken once per upgrade request or handshake, never per message.
//!
//! A table remembers at most [`MAX_TRACKED`] clients. Past that, the client whose bucket was
//! touched longest ago is forgotten, one for each newcomer: its bucket has refilled the most,
//! so forgetting it gives back the least. (This table once started over when full, which
//! handed every client, the attacker that filled it included, a fresh burst.)
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use crate::limits::client::client_of;

/// Most clients remembered per table; beyond it, the one touched longest ago is forgotten.
pub(crate) const MAX_TRACKED: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    /// When it was last touched, in the table's own order: its key in `by_age`.
    touched: u64,
}

/// Buckets for one kind of event, by client.
#[derive(Debug)]
pub(crate) struct AddressBuckets {
    per_minute: f64,
    capacity: usize,
    buckets: HashMap<IpAddr, Bucket>,
    /// Every bucket's client by `Bucket::touched`, oldest first.
    by_age: BTreeMap<u64, IpAddr>,
    next_touch: u64,
}

/// What [`AddressBuckets::try_spend`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spent {
    /// A token was taken (false: the bucket was empty and nothing changed).
    pub allowed: bool,
    /// Another client's bucket was forgotten to make room for this one.
    pub evicted: bool,
}

impl AddressBuckets {
    pub(crate) fn new(per_minute: u32) -> Self {
        Self::with_capacity(per_minute, MAX_TRACKED)
    }

    /// A table that remembers at most `capacity` clients.
    pub(crate) fn with_capacity(per_minute: u32, capacity: usize) -> Self {
        AddressBuckets {
            per_minute: f64::from(per_minute),
            capacity: capacity.max(1),
            buckets: HashMap::new(),
            by_age: BTreeMap::new(),
            next_touch: 0,
        }
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        (bucket.tokens + elapsed * self.per_minute / 60.0).min(self.per_minute)
    }

    /// False when `addr`'s client has used up its tokens and must be refused.
    pub(crate) fn allows(&self, addr: IpAddr, now: Instant) -> bool {
        self.buckets
            .get(&client_of(addr))
            .is_none_or(|b| self.refilled(*b, now) >= 1.0)
    }

    /// As [`allows`](Self::allows), and a refused client's bucket counts as touched: a client
    /// that keeps knocking stays among the newest and is not the one forgotten (its tokens
    /// are left as they are).
    pub(crate) fn knock(&mut self, addr: IpAddr, now: Instant) -> bool {
        let allowed = self.allows(addr, now);
        if !allowed {
            self.touch(client_of(addr));
        }
        allowed
    }

    /// Takes a token for one event from `addr`'s client if it has one; nothing is taken when
    /// its bucket is empty (see [`knock`](Self::knock)).
    pub(crate) fn try_spend(&mut self, addr: IpAddr, now: Instant) -> Spent {
        if !self.knock(addr, now) {
            return Spent {
                allowed: false,
                evicted: false,
            };
        }
        Spent {
            allowed: true,
            evicted: self.spend(addr, now),
        }
    }

    /// Records one event from `addr`'s client (a failed attempt), whether or not it had a
    /// token. True when another client was forgotten to make room.
    pub(crate) fn spend(&mut self, addr: IpAddr, now: Instant) -> bool {
        let client = client_of(addr);
        let (tokens, evicted) = match self.buckets.remove(&client) {
            Some(bucket) => {
                self.by_age.remove(&bucket.touched);
                (self.refilled(bucket, now), false)
            }
            None => (self.per_minute, self.make_room()),
        };
        let touched = self.next_touch;
        self.next_touch += 1;
        self.by_age.insert(touched, client);
        self.buckets.insert(
            client,
            Bucket {
                tokens: (tokens - 1.0).max(0.0),
                updated: now,
                touched,
            },
        );
        evicted
    }

    /// Makes `client`'s bucket the newest without changing its tokens.
    fn touch(&mut self, client: IpAddr) {
        if let Some(bucket) = self.buckets.get_mut(&client) {
            self.by_age.remove(&bucket.touched);
            bucket.touched = self.next_touch;
            self.by_age.insert(self.next_touch, client);
            self.next_touch += 1;
        }
    }

    /// Forgets the client touched longest ago if the table is full; true if one was.
    fn make_room(&mut self) -> bool {
        if self.buckets.len() < self.capacity {
            return false;
        }
        match self.by_age.pop_first() {
            Some((_, oldest)) => self.buckets.remove(&oldest).is_some(),
            None => false,
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        debug_assert_eq!(self.buckets.len(), self.by_age.len());
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

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
        let allowed = |buckets: &mut AddressBuckets, t| buckets.try_spend(addr, t).allowed;
        assert!(allowed(&mut buckets, t0));
        assert!(allowed(&mut buckets, t0));
        assert!(!allowed(&mut buckets, t0), "the burst is spent");
        assert!(!allowed(&mut buckets, t0 + Duration::from_secs(29)));
        // One token every 30 s at 2 per minute; a refusal took nothing.
        assert!(allowed(&mut buckets, t0 + Duration::from_secs(31)));
        assert!(!allowed(&mut buckets, t0 + Duration::from_secs(31)));
    }

    fn v4(i: u32) -> IpAddr {
        IpAddr::V4((0xc000_0200 + i).into())
    }

    #[test]
    fn a_full_table_forgets_the_oldest_not_everyone() {
        let mut buckets = AddressBuckets::with_capacity(2, 3);
        let t0 = Instant::now();
        // Client 0 spends its burst first, then clients 1 and 2 fill the table.
        assert!(!buckets.spend(v4(0), t0));
        assert!(!buckets.spend(v4(0), t0));
        assert!(!buckets.spend(v4(1), t0));
        assert!(!buckets.spend(v4(2), t0));
        assert!(!buckets.allows(v4(0), t0));
        // Client 1 is touched again: client 0 is now the oldest.
        assert!(!buckets.spend(v4(1), t0));
        assert!(buckets.spend(v4(3), t0), "a newcomer makes room");
        assert_eq!(buckets.tracked(), 3);
        assert!(buckets.allows(v4(0), t0), "the oldest is forgotten");
        assert!(
            !buckets.allows(v4(1), t0),
            "the others keep their empty buckets"
        );
        // The next newcomer forgets the next oldest, client 2, and so on.
        assert!(buckets.spend(v4(4), t0));
        assert!(buckets.allows(v4(2), t0));
        assert!(!buckets.allows(v4(1), t0));
        assert_eq!(buckets.tracked(), 3);
    }

    #[test]
    fn a_flood_of_newcomers_cannot_refill_an_attacker() {
        // The attack the old clear-when-full allowed: spend the budget, then fill the table
        // with fresh addresses until it starts over.
        let mut buckets = AddressBuckets::with_capacity(1, 100);
        let t0 = Instant::now();
        let attacker = v4(10_000);
        assert!(buckets.try_spend(attacker, t0).allowed);
        let mut evicted = 0;
        for i in 0..99 {
            evicted += usize::from(buckets.spend(v4(i), t0));
            // The attacker keeps trying, which keeps its bucket young.
            assert!(!buckets.try_spend(attacker, t0).allowed);
        }
        assert_eq!(evicted, 0);
        assert!(!buckets.allows(attacker, t0));
        assert!(buckets.spend(v4(500), t0), "full: the oldest newcomer goes");
        assert!(!buckets.allows(attacker, t0));
    }

    #[test]
    fn an_ipv6_client_has_one_bucket_for_its_64() {
        let mut buckets = AddressBuckets::new(2);
        let t0 = Instant::now();
        let ip = |s: &str| -> IpAddr { s.parse().expect("an address") };
        assert!(buckets.try_spend(ip("2001:db8::1"), t0).allowed);
        assert!(buckets.try_spend(ip("2001:db8::2"), t0).allowed);
        assert!(
            !buckets.try_spend(ip("2001:db8::3"), t0).allowed,
            "a new address in the same /64 has no new tokens"
        );
        assert!(buckets.try_spend(ip("2001:db8:0:1::3"), t0).allowed);
        assert_eq!(buckets.tracked(), 2);
    }
}
