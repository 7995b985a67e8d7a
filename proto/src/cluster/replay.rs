//! The replay window of one origin (a relay's core) on a receiving core: which link sequence
//! numbers have been accepted.
//!
//! A sliding window of [`REPLAY_WINDOW`] numbers ending at the highest accepted one, as IPsec
//! and WireGuard keep: a number above the top is new (the window slides up); one inside the
//! window is new if its bit is clear; one below the window is too old to tell and is refused.
//! Reordering up to the window's width is tolerated, duplication never. Sequence 0 is never
//! sent and always refused.
//!
//! Check with [`ReplayWindow::is_fresh`] before the tag (cheap, changes nothing) and mark with
//! [`ReplayWindow::accept`] only after the tag verified, so a forged datagram cannot move the
//! window.

/// Sequence numbers the window remembers below the highest one accepted.
pub const REPLAY_WINDOW: u64 = 2048;

const WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// One origin's window: 2048 bits and the highest number accepted (264 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest sequence number accepted; 0 before the first.
    top: u64,
    /// Bit `seq % REPLAY_WINDOW` is set when `seq` (within the window) was accepted.
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// A window that has accepted nothing.
    pub const fn new() -> Self {
        ReplayWindow {
            top: 0,
            bits: [0; WORDS],
        }
    }

    /// The highest sequence number accepted (0: none yet).
    pub fn top(&self) -> u64 {
        self.top
    }

    fn slot(seq: u64) -> (usize, u64) {
        let bit = seq % REPLAY_WINDOW;
        ((bit / 64) as usize, 1u64 << (bit % 64))
    }

    /// Whether `seq` would be accepted: above the top, or inside the window and not seen.
    pub fn is_fresh(&self, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        if seq > self.top {
            return true;
        }
        if self.top - seq >= REPLAY_WINDOW {
            return false;
        }
        let (word, bit) = Self::slot(seq);
        self.bits[word] & bit == 0
    }

    /// Marks `seq` as accepted if it is fresh; returns whether it was.
    pub fn accept(&mut self, seq: u64) -> bool {
        if !self.is_fresh(seq) {
            return false;
        }
        if seq > self.top {
            // Clear the bits of the numbers the window slides over: (top, seq).
            let gap = seq - self.top;
            if gap >= REPLAY_WINDOW {
                self.bits = [0; WORDS];
            } else {
                for skipped in self.top + 1..seq {
                    let (word, bit) = Self::slot(skipped);
                    self.bits[word] &= !bit;
                }
            }
            self.top = seq;
        }
        let (word, bit) = Self::slot(seq);
        self.bits[word] |= bit;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_reordered_duplicated_and_old_numbers() {
        let mut w = ReplayWindow::new();
        assert!(!w.accept(0), "0 is never sent");
        assert!(w.accept(1));
        assert!(!w.accept(1), "duplicate");
        assert!(w.accept(5));
        assert!(w.accept(3), "late but inside the window");
        assert!(!w.accept(3));
        assert!(w.accept(4) && w.accept(2));
        assert_eq!(w.top(), 5);
        assert!(w.accept(5 + REPLAY_WINDOW - 1));
        assert!(!w.is_fresh(5), "now below the window");
        assert!(w.is_fresh(6) && !w.is_fresh(5 + REPLAY_WINDOW - 1));
        // A jump far ahead forgets everything below the new window.
        assert!(w.accept(10 * REPLAY_WINDOW));
        assert!(w.is_fresh(10 * REPLAY_WINDOW - 1));
        assert!(!w.is_fresh(9 * REPLAY_WINDOW));
    }

    #[test]
    fn a_slide_clears_the_bits_it_passes_over() {
        let mut w = ReplayWindow::new();
        for seq in 1..=REPLAY_WINDOW {
            assert!(w.accept(seq));
        }
        // Slide by less than the window: numbers reusing the cleared slots are fresh.
        assert!(w.accept(REPLAY_WINDOW + 10));
        for seq in REPLAY_WINDOW + 1..REPLAY_WINDOW + 10 {
            assert!(w.is_fresh(seq), "{seq} was never accepted");
        }
        assert!(!w.is_fresh(REPLAY_WINDOW), "still remembered");
        assert!(!w.is_fresh(11), "out of the window now");
    }
}
