//! A registered member's UDP side as the edge check keeps it: the address its cookie proved,
//! its packet counter and how far that counter may jump, its packet rate, and whether it is
//! still heard.
//!
//! Every rule here takes the arrival time (`now`, one clock read per received batch in the
//! relay) and costs a few integer operations per datagram.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::edge::DropReason;

/// A registered member gets no media after this long without a datagram from it that passed
/// the edge check (clients send a keepalive every second, so this is four lost in a row), and
/// gets it again with its next one. A room checks at [`Room::sweep_silent`](super::Room::sweep_silent),
/// which the relay calls every second.
pub const SILENCE_PAUSE: Duration = Duration::from_secs(4);

/// How far PKT may move past the last accepted PKT: this many per second since that packet
/// arrived (twice the 50 a client sends, so that a member whose packet was once refused
/// catches up with its next ones)...
pub const PKT_JUMP_PER_SECOND: u32 = 100;
/// ... plus this many, for the arrival jitter of that last packet (a second's worth).
pub const PKT_JUMP_SLACK: u32 = 50;

/// The burst a member may send above its packet rate: this long at that rate (a client's
/// packets held up by the network and delivered at once).
pub const RATE_BURST: Duration = Duration::from_millis(500);

/// Where a member's copies go and what the edge remembers of its packets.
#[derive(Debug, Clone)]
pub(super) struct UdpPath {
    /// The address its cookie came from.
    pub(super) addr: SocketAddr,
    last_pkt: Option<u32>,
    /// When the last accepted packet arrived (before the first: when the cookie did).
    last_pkt_at: Instant,
    /// When the last datagram that passed the edge check arrived.
    heard_at: Instant,
    /// No copies go to it: nothing came from it for [`SILENCE_PAUSE`].
    pub(super) paused: bool,
    /// The rate cap as a virtual scheduling time (GCRA): a packet that arrives at `now` may be
    /// forwarded if `next_slot` is at most [`RATE_BURST`] ahead of `now`, and moves it one
    /// packet interval on. One timestamp per member, no refill loop.
    next_slot: Instant,
}

impl UdpPath {
    /// A member whose cookie from `addr` arrived at `now`.
    pub(super) fn new(addr: SocketAddr, now: Instant) -> Self {
        UdpPath {
            addr,
            last_pkt: None,
            last_pkt_at: now,
            heard_at: now,
            paused: false,
            next_slot: now,
        }
    }

    /// Checks a verified packet's counter against the last accepted one and, if it passes,
    /// takes it as the last one: `replayed` if equal, `reordered` if below, `pkt_jump` if it
    /// is further ahead than [`PKT_JUMP_PER_SECOND`] per second since the last accepted packet
    /// plus [`PKT_JUMP_SLACK`]: one forged packet can no longer push the counter to 2^24 − 1
    /// and mute the member for the rest of its session.
    pub(super) fn take_pkt(&mut self, pkt: u32, now: Instant) -> Result<(), DropReason> {
        // A client's first PKT is 1: counting from 0 bounds the first one too.
        let last = self.last_pkt.unwrap_or(0);
        match self.last_pkt {
            Some(last) if pkt == last => return Err(DropReason::Replayed),
            Some(last) if pkt < last => return Err(DropReason::Reordered),
            _ => {}
        }
        let since = now.saturating_duration_since(self.last_pkt_at);
        let per_ms = u128::from(PKT_JUMP_PER_SECOND);
        let allowed = (since.as_millis() * per_ms / 1000).min(u128::from(u32::MAX)) as u32;
        if pkt.saturating_sub(last) > allowed.saturating_add(PKT_JUMP_SLACK) {
            return Err(DropReason::PktJump);
        }
        self.last_pkt = Some(pkt);
        self.last_pkt_at = now;
        Ok(())
    }

    /// Whether one more packet at `now` stays within `per_second` (0: no cap) and its burst;
    /// if so it is counted.
    pub(super) fn within_rate(&mut self, per_second: u32, now: Instant) -> bool {
        if per_second == 0 {
            return true;
        }
        let slot = self.next_slot.max(now);
        if slot.saturating_duration_since(now) > RATE_BURST {
            return false;
        }
        self.next_slot = slot + Duration::from_secs(1) / per_second;
        true
    }

    /// A datagram from the member passed the edge check at `now`; true if that ends a pause.
    pub(super) fn heard(&mut self, now: Instant) -> bool {
        self.heard_at = self.heard_at.max(now);
        std::mem::replace(&mut self.paused, false)
    }

    /// Pauses the member if nothing came from it for longer than [`SILENCE_PAUSE`] before
    /// `now`; true if that starts a pause.
    pub(super) fn pause_if_silent(&mut self, now: Instant) -> bool {
        if self.paused || now.saturating_duration_since(self.heard_at) <= SILENCE_PAUSE {
            return false;
        }
        self.paused = true;
        true
    }

    /// The last accepted PKT.
    #[cfg(test)]
    fn last_pkt(&self) -> Option<u32> {
        self.last_pkt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> (UdpPath, Instant) {
        let now = Instant::now();
        (
            UdpPath::new(SocketAddr::from(([192, 0, 2, 1], 9)), now),
            now,
        )
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn pkt_rises_strictly() {
        let (mut p, t) = path();
        assert_eq!(p.take_pkt(1, t), Ok(()));
        assert_eq!(p.take_pkt(1, t + ms(1)), Err(DropReason::Replayed));
        assert_eq!(p.take_pkt(3, t + ms(40)), Ok(()));
        assert_eq!(p.take_pkt(2, t + ms(41)), Err(DropReason::Reordered));
        assert_eq!(p.last_pkt(), Some(3));
    }

    #[test]
    fn pkt_may_jump_the_slack_at_once_and_100_a_second_more() {
        let (mut p, t) = path();
        // The first packet counts from 0 and from the cookie's arrival.
        assert_eq!(p.take_pkt(51, t), Err(DropReason::PktJump));
        assert_eq!(p.take_pkt(50, t), Ok(()));
        // 2 s later: 200 + 50 further, not one more.
        let later = t + ms(2_000);
        assert_eq!(p.take_pkt(50 + 251, later), Err(DropReason::PktJump));
        assert_eq!(p.last_pkt(), Some(50), "a refused jump moves nothing");
        assert_eq!(p.take_pkt(50 + 250, later), Ok(()));
    }

    #[test]
    fn a_forged_jump_to_the_last_pkt_is_refused_and_the_member_goes_on() {
        let (mut p, t) = path();
        let mut now = t;
        for pkt in 1..=100 {
            now = t + ms(20 * u64::from(pkt));
            assert_eq!(p.take_pkt(pkt, now), Ok(()));
        }
        assert_eq!(p.take_pkt(0xff_ffff, now + ms(5)), Err(DropReason::PktJump));
        assert_eq!(p.take_pkt(101, now + ms(20)), Ok(()));
    }

    #[test]
    fn real_loss_gaps_pass_even_with_a_late_last_packet() {
        let (mut p, t) = path();
        // 50 a second; packet 10 arrived a whole second late, then 10 s of loss.
        for pkt in 1..=9u32 {
            assert_eq!(p.take_pkt(pkt, t + ms(20 * u64::from(pkt))), Ok(()));
        }
        let late = t + ms(200 + 1_000);
        assert_eq!(p.take_pkt(10, late), Ok(()));
        // Sent 10 s after packet 10 was: 500 further, arriving 9 s after it did.
        assert_eq!(p.take_pkt(510, late + ms(9_000)), Ok(()));
    }

    #[test]
    fn a_refused_gap_is_caught_up_by_the_following_packets() {
        let (mut p, t) = path();
        assert_eq!(p.take_pkt(1, t), Ok(()));
        // Jitter beyond the slack: 2 s of packets (100) after 0.4 s (a bound of 90).
        let (mut pkt, mut now) = (101, t + ms(400));
        let mut refused = 0;
        while p.take_pkt(pkt, now).is_err() {
            refused += 1;
            pkt += 1;
            now += ms(20);
        }
        // 10 short at first; every 20 ms the member adds 1 and the bound 2.
        assert_eq!(refused, 10);
    }

    #[test]
    fn the_rate_cap_allows_its_burst_then_its_rate() {
        let (mut p, t) = path();
        // 200 a second, a burst of 0.5 s: 101 back to back (the first takes no credit).
        let at_once = (0..1_000).filter(|_| p.within_rate(200, t)).count();
        assert_eq!(at_once, 101);
        // Then one every 5 ms.
        assert!(!p.within_rate(200, t + ms(4)));
        assert!(p.within_rate(200, t + ms(5)));
        assert!(!p.within_rate(200, t + ms(6)));
        // A member at 50 a second is never refused, whatever came before.
        let (mut q, t) = path();
        assert!((0..10_000u64).all(|i| q.within_rate(200, t + ms(20 * i))));
        assert!((0..100).all(|_| p.within_rate(0, t)), "0: no cap");
    }

    #[test]
    fn silence_pauses_after_the_window_and_a_datagram_resumes() {
        let (mut p, t) = path();
        assert!(!p.pause_if_silent(t + SILENCE_PAUSE));
        assert!(!p.heard(t + ms(1_000)));
        assert!(!p.pause_if_silent(t + ms(1_000) + SILENCE_PAUSE));
        assert!(p.pause_if_silent(t + ms(1_001) + SILENCE_PAUSE));
        assert!(p.paused);
        assert!(!p.pause_if_silent(t + ms(9_000)), "paused once");
        assert!(p.heard(t + ms(9_500)));
        assert!(!p.paused);
        assert!(!p.heard(t + ms(9_600)), "resumed once");
        // An older arrival time (the previous batch's) never moves the clock back.
        assert!(!p.heard(t));
        assert!(!p.pause_if_silent(t + ms(9_600) + SILENCE_PAUSE));
    }
}
