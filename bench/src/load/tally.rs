//! What one worker thread counts: messages sent and received, corruption, latency and send
//! lag histograms, the same split by whether the delivery crossed between relays (with
//! several targets); and the per-receiver check that a delivery belongs to its room and
//! comes in order.

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
    /// Deliveries between members on one relay (counted only with several targets).
    pub same_relay: Split,
    /// Deliveries between members on different relays (counted only with several targets).
    pub cross_relay: Split,
}

/// One side of the same-relay / cross-relay split.
#[derive(Debug, Clone)]
pub struct Split {
    /// Deliveries the messages sent should make on this side.
    pub expected: u64,
    /// Good deliveries on this side.
    pub received: u64,
    /// Their one-way latency, ns.
    pub latency: Histogram<u64>,
}

impl Default for Split {
    fn default() -> Self {
        Split {
            expected: 0,
            received: 0,
            latency: new_histogram(),
        }
    }
}

impl Split {
    /// Deliveries expected and not received.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    fn merge(&mut self, other: &Split) {
        self.expected += other.expected;
        self.received += other.received;
        let _ = self.latency.add(&other.latency);
    }
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
            same_relay: Split::default(),
            cross_relay: Split::default(),
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

    /// A good delivery, as [`Tally::delivered`], that also counts on its side of the split.
    pub fn delivered_via(&mut self, sent_ns: u64, now_ns: u64, cross_relay: bool) {
        self.delivered(sent_ns, now_ns);
        let side = if cross_relay {
            &mut self.cross_relay
        } else {
            &mut self.same_relay
        };
        side.received += 1;
        side.latency
            .saturating_record(now_ns.saturating_sub(sent_ns).max(1));
    }

    /// A message sent that should reach `same` members on its sender's relay and `cross` on
    /// others.
    pub fn expect_via(&mut self, same: u64, cross: u64) {
        self.same_relay.expected += same;
        self.cross_relay.expected += cross;
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
        self.same_relay.merge(&other.same_relay);
        self.cross_relay.merge(&other.cross_relay);
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

    #[test]
    fn deliveries_split_by_relay_and_merge() {
        let mut a = Tally::default();
        a.expect_via(1, 2); // a room of 4 over 3 relays, from a member that shares one
        a.delivered_via(0, 10_000, false);
        a.delivered_via(0, 80_000, true);
        let mut b = Tally::default();
        b.expect_via(0, 3);
        b.delivered_via(0, 90_000, true);
        b.delivered_via(0, 70_000, true);
        a.merge(&b);
        assert_eq!(a.received, 4, "the totals count both sides");
        let (same, cross) = (&a.same_relay, &a.cross_relay);
        assert_eq!((same.expected, same.received, same.lost()), (1, 1, 0));
        assert_eq!((cross.expected, cross.received, cross.lost()), (5, 3, 2));
        assert!(same.latency.max() < 11_000 && cross.latency.min() >= 69_000);
        assert_eq!(a.latency.len(), 4);
    }
}
