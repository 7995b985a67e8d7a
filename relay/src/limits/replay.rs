//! The client ephemeral keys of recent VoRS hellos, to refuse a replayed message 1 before any
//! Noise work.
//!
//! Message 1 opens with the client's ephemeral X25519 key in clear, new for every handshake
//! an honest client makes; a copy of a captured message 1 carries the same key. A copy can
//! pass the freshness check (`moose_proto::vors::freshness`) for `2 * --hello-max-skew`
//! seconds after the original was seen, so that is how long a key is remembered. One table
//! for the whole process, behind a mutex taken once per handshake: the kernel hands a replay
//! to whichever core it likes.
//!
//! The table is bounded (`--hello-replay-cache` keys). When it is full of keys still within
//! their window, the oldest is forgotten early and counted: from then on, until its window
//! ends, a copy of that hello would be let through. Each key is kept as a 64-bit SipHash
//! under a key drawn at start, so nobody can aim collisions at it and an entry costs about
//! 35 bytes (16 in the queue, 8 and a control byte in the set, with their spare room).

use std::collections::{HashSet, VecDeque};

use moose_proto::vors::freshness::UnixTime;
use moose_proto::vors::handshake::KEY_LEN;
use siphasher::sip::SipHasher13;

/// Why a VoRS hello was refused for not being fresh; one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloRefusal {
    /// Its ephemeral key was seen within the window: a copy of an earlier message 1.
    /// Refused before any Noise work.
    Replay,
    /// Its SENT_AT is more than `--hello-max-skew` seconds from the relay's clock.
    Stale,
    /// It has no SENT_AT (a client from before the extension) and `--accept-untimed-hellos`
    /// is off.
    Untimed,
}

impl HelloRefusal {
    pub const ALL: [HelloRefusal; 3] = [
        HelloRefusal::Replay,
        HelloRefusal::Stale,
        HelloRefusal::Untimed,
    ];

    /// The `reason` label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            HelloRefusal::Replay => "replay",
            HelloRefusal::Stale => "stale",
            HelloRefusal::Untimed => "untimed",
        }
    }
}

/// What the table says of a hello's ephemeral key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sighting {
    /// Not seen within the window; remembered now. `evicted` is true when the table was full
    /// and a key still within its window had to be forgotten for it.
    New { evicted: bool },
    /// Seen within the window: a replay.
    Seen,
}

/// The ephemeral keys seen within the window, oldest first.
#[derive(Debug)]
pub(crate) struct SeenHellos {
    capacity: usize,
    /// Seconds a key is remembered after it was first seen.
    remember_for: u64,
    hasher: SipHasher13,
    /// Fingerprints with the time after which they are forgotten, in the order they came.
    order: VecDeque<(u64, UnixTime)>,
    present: HashSet<u64>,
}

impl SeenHellos {
    /// A table of at most `capacity` keys (at least one), each kept `remember_for` seconds;
    /// fingerprints under `key` (random per process).
    pub(crate) fn new(capacity: usize, remember_for: u64, key: [u64; 2]) -> Self {
        SeenHellos {
            capacity: capacity.max(1),
            remember_for,
            hasher: SipHasher13::new_with_keys(key[0], key[1]),
            order: VecDeque::new(),
            present: HashSet::new(),
        }
    }

    /// Looks `ephemeral` up at `now` (the relay's wall clock) and remembers it if it is new.
    pub(crate) fn first_sight(&mut self, ephemeral: &[u8; KEY_LEN], now: UnixTime) -> Sighting {
        self.forget_expired(now);
        let fingerprint = self.hasher.hash(ephemeral);
        if self.present.contains(&fingerprint) {
            return Sighting::Seen;
        }
        let evicted = self.order.len() >= self.capacity;
        if evicted {
            self.forget_oldest();
        }
        let forget_after = UnixTime(now.0.saturating_add(self.remember_for));
        self.order.push_back((fingerprint, forget_after));
        self.present.insert(fingerprint);
        Sighting::New { evicted }
    }

    #[cfg(test)]
    /// Keys remembered now.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Forgets the keys whose window has passed. Keys come in time order, so they leave from
    /// the front; if the clock stepped back, some stay longer, which only errs on the side
    /// of refusing.
    fn forget_expired(&mut self, now: UnixTime) {
        while self
            .order
            .front()
            .is_some_and(|&(_, forget_after)| forget_after < now)
        {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((fingerprint, _)) = self.order.pop_front() {
            self.present.remove(&fingerprint);
        }
        if self.order.is_empty() {
            // A burst of handshakes grew the table; an idle relay gives the memory back.
            self.order = VecDeque::new();
            self.present = HashSet::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: UnixTime = UnixTime(1_800_000_000);

    fn key(n: u32) -> [u8; KEY_LEN] {
        let mut key = [0u8; KEY_LEN];
        key[..4].copy_from_slice(&n.to_le_bytes());
        key
    }

    fn at(seconds: u64) -> UnixTime {
        UnixTime(T0.0 + seconds)
    }

    #[test]
    fn a_key_is_new_once_then_seen_until_its_window_ends() {
        let mut seen = SeenHellos::new(100, 60, [1, 2]);
        assert_eq!(
            seen.first_sight(&key(1), T0),
            Sighting::New { evicted: false }
        );
        assert_eq!(seen.first_sight(&key(1), T0), Sighting::Seen);
        assert_eq!(
            seen.first_sight(&key(2), at(1)),
            Sighting::New { evicted: false }
        );
        // Remembered through the last second a copy could pass the freshness check...
        assert_eq!(seen.first_sight(&key(1), at(60)), Sighting::Seen);
        // ...and forgotten after it, with everything older.
        assert_eq!(
            seen.first_sight(&key(3), at(62)),
            Sighting::New { evicted: false }
        );
        assert_eq!(seen.len(), 1, "keys 1 and 2 were forgotten");
        assert_eq!(
            seen.first_sight(&key(1), at(62)),
            Sighting::New { evicted: false }
        );
    }

    #[test]
    fn a_full_table_forgets_its_oldest_key_and_says_so() {
        let mut seen = SeenHellos::new(3, 60, [3, 4]);
        for n in 0..3 {
            assert_eq!(
                seen.first_sight(&key(n), T0),
                Sighting::New { evicted: false }
            );
        }
        assert_eq!(
            seen.first_sight(&key(3), at(1)),
            Sighting::New { evicted: true }
        );
        assert_eq!(seen.len(), 3, "bounded");
        // Key 0 went first: a copy of it is now let through, the others are not.
        assert_eq!(
            seen.first_sight(&key(0), at(1)),
            Sighting::New { evicted: true }
        );
        assert_eq!(seen.first_sight(&key(2), at(1)), Sighting::Seen);
        assert_eq!(seen.first_sight(&key(3), at(1)), Sighting::Seen);
        assert_eq!(
            seen.first_sight(&key(1), at(1)),
            Sighting::New { evicted: true }
        );
    }

    #[test]
    fn expired_keys_make_room_without_an_eviction() {
        let mut seen = SeenHellos::new(2, 10, [5, 6]);
        seen.first_sight(&key(1), T0);
        seen.first_sight(&key(2), T0);
        assert_eq!(
            seen.first_sight(&key(3), at(11)),
            Sighting::New { evicted: false }
        );
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn a_clock_stepping_back_keeps_keys_longer_never_shorter() {
        let mut seen = SeenHellos::new(10, 60, [7, 8]);
        seen.first_sight(&key(1), at(100));
        assert_eq!(seen.first_sight(&key(1), at(50)), Sighting::Seen);
        assert_eq!(seen.first_sight(&key(1), at(160)), Sighting::Seen);
    }

    #[test]
    fn an_idle_table_gives_its_memory_back() {
        let mut seen = SeenHellos::new(10_000, 10, [9, 10]);
        for n in 0..5_000 {
            seen.first_sight(&key(n), T0);
        }
        assert!(seen.present.capacity() >= 5_000);
        seen.first_sight(&key(9_999), at(20));
        assert_eq!(seen.len(), 1);
        assert!(seen.present.capacity() < 100, "{}", seen.present.capacity());
    }

    #[test]
    fn labels_are_distinct_and_indexed_in_order() {
        for (i, reason) in HelloRefusal::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i);
        }
        let mut labels: Vec<_> = HelloRefusal::ALL.iter().map(|r| r.label()).collect();
        labels.dedup();
        assert_eq!(labels.len(), HelloRefusal::ALL.len());
    }
}
