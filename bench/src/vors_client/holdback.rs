//! Datagrams from a SID the call does not know yet, held until its ADD can arrive.
//!
//! VoRS carries control over TCP and media over UDP, with no order between them: a
//! newcomer's first media packets can reach us before the ADD that announces it (UDP
//! overtakes TCP by tens of microseconds on loopback, more through a proxy). Handing such
//! a packet to the session would drop it as `unknown_sid` and lose the newcomer's first
//! words (docs/wire-vors.md, section 10). So the call holds it here, briefly and in arrival
//! order, and lets it go as soon as its SID is known, or when its time is up (then the
//! session drops and counts it as before: a SID that never gets an ADD is not a member).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a datagram waits for its ADD. An ADD trails its member's first packet by a
/// round of the server's control path, far below this; a packet held longer would come too
/// late for playout anyway.
pub(crate) const HOLD_TIME: Duration = Duration::from_millis(200);
/// Most datagrams held at once (10 frames from each of 4 newcomers joining together):
/// a bound on memory whatever a broken or hostile server sends.
pub(crate) const HOLD_MAX: usize = 40;

/// The held datagrams, oldest first.
#[derive(Debug, Default)]
pub(crate) struct HoldBack {
    held: VecDeque<(Instant, Vec<u8>)>,
}

impl HoldBack {
    /// Holds `datagram`, received at `now`. When full, the oldest one is returned to be
    /// handed to the session at once (where it is dropped as unknown).
    pub(crate) fn hold(&mut self, now: Instant, datagram: Vec<u8>) -> Option<Vec<u8>> {
        let evicted = if self.held.len() >= HOLD_MAX {
            self.held.pop_front().map(|(_, d)| d)
        } else {
            None
        };
        self.held.push_back((now, datagram));
        evicted
    }

    /// Takes out, in arrival order, every datagram whose SID is now `known` or whose time
    /// is up at `now`. The rest stay, still in order: one SID's packets are all known or
    /// all unknown, so each member's packets keep their order.
    pub(crate) fn release(&mut self, now: Instant, known: impl Fn(u8) -> bool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut kept = VecDeque::with_capacity(self.held.len());
        for (at, datagram) in self.held.drain(..) {
            let sid = datagram.first().copied();
            if sid.is_some_and(&known) || now >= at + HOLD_TIME {
                out.push(datagram);
            } else {
                kept.push_back((at, datagram));
            }
        }
        self.held = kept;
        out
    }

    /// When the oldest held datagram's time is up, if any is held.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.held.front().map(|(at, _)| *at + HOLD_TIME)
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_goes_once_its_sid_is_known() {
        let t0 = Instant::now();
        let mut hold = HoldBack::default();
        assert!(hold.hold(t0, vec![7, 1]).is_none());
        assert!(hold.release(t0, |_| false).is_empty());
        assert_eq!(hold.release(t0, |sid| sid == 7), [vec![7, 1]]);
        assert!(hold.is_empty());
    }

    #[test]
    fn unknown_sids_stay_in_order_until_their_time_is_up() {
        let t0 = Instant::now();
        let mut hold = HoldBack::default();
        hold.hold(t0, vec![3, 1]);
        hold.hold(t0 + Duration::from_millis(50), vec![5, 1]);
        hold.hold(t0 + Duration::from_millis(60), vec![3, 2]);
        assert_eq!(hold.next_expiry(), Some(t0 + HOLD_TIME));

        // SID 5 becomes known: only its packet goes; SID 3's two stay, in order.
        assert_eq!(hold.release(t0, |sid| sid == 5), [vec![5, 1]]);
        // The first of SID 3's is due; the second is not yet.
        assert_eq!(hold.release(t0 + HOLD_TIME, |_| false), [vec![3, 1]]);
        assert_eq!(
            hold.next_expiry(),
            Some(t0 + Duration::from_millis(60) + HOLD_TIME)
        );
        assert_eq!(hold.release(t0 + 2 * HOLD_TIME, |_| false), [vec![3, 2]]);
        assert_eq!(hold.next_expiry(), None);
    }

    #[test]
    fn a_full_hold_gives_up_its_oldest() {
        let t0 = Instant::now();
        let mut hold = HoldBack::default();
        for i in 0..HOLD_MAX {
            assert!(hold.hold(t0, vec![9, i as u8]).is_none());
        }
        assert_eq!(hold.hold(t0, vec![9, 0xff]), Some(vec![9, 0]));
        let out = hold.release(t0, |_| true);
        assert_eq!(out.len(), HOLD_MAX);
        assert_eq!(out.first(), Some(&vec![9, 1]));
        assert_eq!(out.last(), Some(&vec![9, 0xff]));
    }
}
