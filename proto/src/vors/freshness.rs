//! How fresh a hello must be: message 1 carries the client's wall-clock time (SENT_AT), and the
//! server takes it only within a window around its own clock.
//!
//! A captured message 1 can be sent again by anyone, from anywhere: nothing in it is bound to
//! the sender's address, and the server cannot tell the copy from the original by decrypting
//! it. SENT_AT bounds how long a copy is worth anything ([`Freshness::judge`]); within that
//! window, the server remembers the client ephemeral keys it has seen (the relay's replay
//! cache) and refuses a key it saw before. The window is what the cache must cover, so it is
//! what keeps the cache small. Sans-IO: both clocks are arguments.

use std::fmt;

/// A wall-clock time: seconds since 1970-01-01 00:00 UTC, as the caller's clock reads them.
/// On the wire (SENT_AT) it is 8 bytes, big-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub u64);

/// Bytes of SENT_AT in message 1.
pub const SENT_AT_LEN: usize = 8;

/// The default [`Freshness::max_skew`], in seconds: clocks kept by NTP agree within a second,
/// unsynchronised ones drift a few seconds a day; a minute's width still leaves a copy little
/// time to be used.
pub const DEFAULT_MAX_SKEW: u64 = 30;

impl UnixTime {
    /// SENT_AT as message 1 carries it.
    pub fn to_wire(self) -> [u8; SENT_AT_LEN] {
        self.0.to_be_bytes()
    }

    /// SENT_AT from message 1.
    pub fn from_wire(bytes: &[u8; SENT_AT_LEN]) -> Self {
        UnixTime(u64::from_be_bytes(*bytes))
    }
}

/// Why a hello is not fresh.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    /// Message 1 has no SENT_AT (a client from before the extension), and the server does not
    /// take untimed hellos.
    Untimed,
    /// SENT_AT is more than `max_skew` seconds before or after the server's clock: an old
    /// copy, or a client whose clock is wrong.
    OutsideWindow,
}

impl fmt::Display for Staleness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Staleness::Untimed => f.write_str("hello carries no time"),
            Staleness::OutsideWindow => f.write_str("hello's time is outside the window"),
        }
    }
}

/// The server's rule for SENT_AT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// How far SENT_AT may be from the server's clock, either way, in seconds. A hello is
    /// acceptable for `2 * max_skew` seconds at most, so a replay cache must remember a key
    /// that long ([`Freshness::remember_for`]).
    pub max_skew: u64,
    /// Whether a hello without SENT_AT is taken. It can be replayed as soon as the replay
    /// cache forgets its key (after [`Freshness::remember_for`], or sooner when the cache is
    /// full), for ever after: off unless clients from before the extension must still join.
    pub accept_untimed: bool,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness {
            max_skew: DEFAULT_MAX_SKEW,
            accept_untimed: false,
        }
    }
}

impl Freshness {
    /// Whether a hello sent at `sent_at` (`None`: untimed) is fresh at `now`, by the server's
    /// clock: `|now - sent_at| <= max_skew`.
    pub fn judge(&self, sent_at: Option<UnixTime>, now: UnixTime) -> Result<(), Staleness> {
        match sent_at {
            None if self.accept_untimed => Ok(()),
            None => Err(Staleness::Untimed),
            Some(sent) if sent.0.abs_diff(now.0) <= self.max_skew => Ok(()),
            Some(_) => Err(Staleness::OutsideWindow),
        }
    }

    /// How long after a hello is first seen a copy of it can still pass [`Freshness::judge`],
    /// in seconds: seen at `r` means `sent_at >= r - max_skew`, and a copy passes only until
    /// `sent_at + max_skew`, so until `r + 2 * max_skew`.
    pub fn remember_for(&self) -> u64 {
        self.max_skew.saturating_mul(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixTime = UnixTime(1_800_000_000);

    #[test]
    fn the_window_is_max_skew_either_way_inclusive() {
        let rules = Freshness::default();
        let at = |offset: i64| Some(UnixTime(NOW.0.checked_add_signed(offset).expect("time")));
        for offset in [-30, -1, 0, 1, 30] {
            assert_eq!(rules.judge(at(offset), NOW), Ok(()), "{offset} s");
        }
        for offset in [-31, 31, -3600, 86_400] {
            assert_eq!(
                rules.judge(at(offset), NOW),
                Err(Staleness::OutsideWindow),
                "{offset} s"
            );
        }
        assert_eq!(
            rules.judge(Some(UnixTime(0)), NOW),
            Err(Staleness::OutsideWindow)
        );
        assert_eq!(
            rules.judge(Some(UnixTime(u64::MAX)), NOW),
            Err(Staleness::OutsideWindow)
        );
        assert_eq!(rules.remember_for(), 60);
    }

    #[test]
    fn untimed_hellos_are_refused_unless_allowed() {
        assert_eq!(
            Freshness::default().judge(None, NOW),
            Err(Staleness::Untimed)
        );
        let lenient = Freshness {
            accept_untimed: true,
            ..Freshness::default()
        };
        assert_eq!(lenient.judge(None, NOW), Ok(()));
        // Allowing untimed hellos does not widen the window for timed ones.
        assert_eq!(
            lenient.judge(Some(UnixTime(NOW.0 - 31)), NOW),
            Err(Staleness::OutsideWindow)
        );
    }

    #[test]
    fn sent_at_is_eight_bytes_big_endian() {
        let t = UnixTime(0x0102_0304_0506_0708);
        assert_eq!(t.to_wire(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(UnixTime::from_wire(&t.to_wire()), t);
    }
}
