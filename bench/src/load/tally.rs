//! What one worker thread counts: messages sent and received, corruption, latency and send
//! lag histograms; and the per-receiver check that a delivery belongs to its room and comes
//! in order.

use hdrhistogram::Histogram;

use super::stamp::Stamp;

/// Highest latency the histograms hold, in ns (a minute: anything slower is a failure).
const MAX_TRACKABLE_NS: u64 = 60_000_000_000;

/// A latency histogram in ns, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // 1 ns .. 60 s at 3 significant figures: always valid bounds.
    Histogram::new_with_bounds(1, MAX_TRACKABLE_NS, 3).unwrap_or_else(|_| unreachable!())
}

/// One worker's counters.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Messages sent (each should reach room size - 1 receivers).
    pub sent: u64,
    /// Deliveries that passed every check.
    pub received: u64,
    /// Deliveries that failed a check (length, stamp, body, wrong room, out of order, tag).
    pub corrupted: u64,
    /// Sends skipped because the connection's outgoing backlog was full: the bench or the
    /// relay could not keep up. Not counted in `sent`.
    pub send_skipped: u64,
    /// One-way latency of every good delivery, ns.
    pub latency: Histogram<u64>,
    /// The same since the last progress report.
    pub interval: Histogram<u64>,
    /// How late each send left against its schedule, ns: a bench that cannot keep up shows
    /// here first.
    pub send_lag: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            sent: 0,
            received: 0,
            corrupted: 0,
            send_skipped: 0,
            latency: new_histogram(),
            interval: new_histogram(),
            send_lag: new_histogram(),
        }
    }
}

impl Tally {
    /// A good delivery sent at `sent_ns` and read at `now_ns`.
    pub fn delivered(&mut self, sent_ns: u64, now_ns: u64) {
        let ns = now_ns.saturating_sub(sent_ns).max(1);
        self.received += 1;
        self.latency.saturating_record(ns);
        self.interval.saturating_record(ns);
    }

    /// A send that left at `now_ns`, due at `due_ns`.
    pub fn sent(&mut self, due_ns: u64, now_ns: u64) {
        self.sent += 1;
        self.send_lag
            .saturating_record(now_ns.saturating_sub(due_ns).max(1));
    }

    /// Adds another worker's counters.
    pub fn merge(&mut self, other: &Tally) {
        self.sent += other.sent;
        self.received += other.received;
        self.corrupted += other.corrupted;
        self.send_skipped += other.send_skipped;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.interval.add(&other.interval);
        let _ = self.send_lag.add(&other.send_lag);
    }
}

/// What a receiving stream has accepted from each member of its room: attribution and order.
#[derive(Debug, Clone)]
pub struct Inbox {
    me: u32,
    first: u32,
    /// Per room member: last accepted seq + 1 (0: none yet).
    next_min: Vec<u32>,
}

impl Inbox {
    /// The inbox of stream `me`, in the room of streams `first .. first + size`.
    pub fn new(me: u32, first: u32, size: u32) -> Self {
        Inbox {
            me,
            first,
            next_min: vec![0; size as usize],
        }
    }

    /// Whether a delivery with `stamp` belongs here: from another member of this room, with a
    /// seq above the last one accepted from that member (the relay keeps order; losses may
    /// leave gaps, duplicates and reordering may not happen).
    pub fn accept(&mut self, stamp: &Stamp) -> bool {
        if stamp.stream == self.me {
            return false;
        }
        let Some(slot) = stamp
            .stream
            .checked_sub(self.first)
            .and_then(|i| self.next_min.get_mut(i as usize))
        else {
            return false;
        };
        if stamp.seq < *slot {
            return false;
        }
        *slot = stamp.seq.saturating_add(1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(stream: u32, seq: u32) -> Stamp {
        Stamp {
            stream,
            seq,
            sent_ns: 0,
        }
    }

    #[test]
    fn inbox_takes_room_members_in_order_with_gaps() {
        let mut inbox = Inbox::new(5, 4, 4); // room of streams 4..8, we are 5
        assert!(inbox.accept(&stamp(4, 0)));
        assert!(inbox.accept(&stamp(4, 3)), "a gap is loss, not corruption");
        assert!(!inbox.accept(&stamp(4, 3)), "duplicate");
        assert!(!inbox.accept(&stamp(4, 2)), "reordered");
        assert!(inbox.accept(&stamp(7, 0)));
        assert!(!inbox.accept(&stamp(5, 0)), "our own message");
        assert!(!inbox.accept(&stamp(8, 0)), "another room");
        assert!(!inbox.accept(&stamp(3, 0)), "another room");
    }

    #[test]
    fn tallies_merge_counts_and_histograms() {
        let mut a = Tally::default();
        a.sent(100, 150);
        a.delivered(1_000, 51_000);
        let mut b = Tally::default();
        b.delivered(0, 2_000_000);
        b.corrupted = 2;
        a.merge(&b);
        assert_eq!((a.sent, a.received, a.corrupted), (1, 2, 2));
        assert_eq!(a.latency.len(), 2);
        assert!(a.latency.max() >= 1_999_000);
        assert!(a.send_lag.max() >= 50);
    }
}
