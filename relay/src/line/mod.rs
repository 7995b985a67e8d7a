//! Moose lines: the peers that share one apikey, all on the line's owner core.
//!
//! A line exists while it has peers. Every binary message of a peer goes, as one shared buffer,
//! into the queue of every *other* peer (see [`OutQueue`]); each peer's writer task drains its own
//! queue. No locks: a line and its peers live and die on one core.

pub(crate) mod peer;
pub(crate) mod rate;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::limits::quota::Quota;
use crate::outbound::queue::OutQueue;
use crate::stats::{CoreStats, Drop};

/// One connection on a line.
#[derive(Debug)]
pub(crate) struct Member {
    pub id: u64,
    pub out: OutQueue,
}

/// The peers of one apikey.
#[derive(Debug)]
pub(crate) struct Line {
    /// Non-reversible tag for logs.
    pub tag: u32,
    members: RefCell<Vec<Rc<Member>>>,
}

impl Line {
    /// Queues `frame`, read at `received` and charged `charge` bytes (what it keeps alive),
    /// for every member but `from`; returns how many frames slow receivers dropped to take it.
    pub(crate) fn broadcast(
        &self,
        from: u64,
        frame: &Bytes,
        charge: usize,
        received: Instant,
    ) -> usize {
        self.members
            .borrow()
            .iter()
            .filter(|m| m.id != from)
            .map(|m| m.out.push_audio(frame.clone(), charge, received))
            .sum()
    }

    pub(crate) fn len(&self) -> usize {
        self.members.borrow().len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.borrow().is_empty()
    }
}

/// Why a peer could not join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinError {
    /// The line already holds `--max-peers` peers.
    Full,
    /// The line does not exist and the process already holds `--max-lines` lines.
    ServerFull,
}

/// All lines owned by this core.
#[derive(Debug)]
pub(crate) struct Lines {
    by_key: RefCell<HashMap<Box<[u8]>, Rc<Line>>>,
    max_peers: usize,
    queue_bytes: usize,
    next_member: Cell<u64>,
    stats: Arc<CoreStats>,
    /// Lines of the whole process (`--max-lines`), shared by every core.
    quota: Arc<Quota>,
}

impl Lines {
    pub(crate) fn new(
        max_peers: usize,
        queue_bytes: usize,
        stats: Arc<CoreStats>,
        quota: Arc<Quota>,
    ) -> Self {
        Lines {
            by_key: RefCell::new(HashMap::new()),
            max_peers,
            queue_bytes,
            next_member: Cell::new(1),
            stats,
            quota,
        }
    }

    /// Adds a member to the line of `key`, creating the line if needed.
    pub(crate) fn join(&self, key: &[u8], tag: u32) -> Result<(Rc<Line>, Rc<Member>), JoinError> {
        let mut by_key = self.by_key.borrow_mut();
        let line = match by_key.get(key) {
            Some(line) => line.clone(),
            None => {
                if !self.quota.try_take() {
                    self.stats.dropped(Drop::ServerFull);
                    return Err(JoinError::ServerFull);
                }
                let line = Rc::new(Line {
                    tag,
                    members: RefCell::new(Vec::new()),
                });
                by_key.insert(key.into(), line.clone());
                line
            }
        };
        if line.len() >= self.max_peers {
            self.stats.dropped(Drop::LineFull);
            return Err(JoinError::Full);
        }
        let id = self.next_member.get();
        self.next_member.set(id + 1);
        let member = Rc::new(Member {
            id,
            out: OutQueue::new(self.queue_bytes),
        });
        line.members.borrow_mut().push(member.clone());
        self.publish(&by_key);
        Ok((line, member))
    }

    /// Removes a member; the line goes when its last member leaves.
    pub(crate) fn leave(&self, key: &[u8], member: &Member) {
        let mut by_key = self.by_key.borrow_mut();
        if let Some(line) = by_key.get(key) {
            line.members.borrow_mut().retain(|m| m.id != member.id);
            if line.is_empty() {
                by_key.remove(key);
                self.quota.give_back();
            }
        }
        self.publish(&by_key);
    }

    fn publish(&self, by_key: &HashMap<Box<[u8]>, Rc<Line>>) {
        self.stats.lines.set(by_key.len() as u64);
        let peers: usize = by_key.values().map(|l| l.len()).sum();
        self.stats.line_peers.set(peers as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(max_peers: usize) -> Lines {
        Lines::new(
            max_peers,
            10_000,
            Arc::new(CoreStats::default()),
            Arc::new(Quota::new(0)),
        )
    }

    #[test]
    fn messages_go_to_every_other_member_never_back() {
        let lines = lines(3);
        let (line, a) = lines.join(b"key-one-0123456789", 1).expect("room");
        let (_, b) = lines.join(b"key-one-0123456789", 1).expect("room");
        let (_, c) = lines.join(b"key-one-0123456789", 1).expect("room");
        line.broadcast(a.id, &Bytes::from_static(b"hello"), 5, Instant::now());
        assert_eq!(a.out.queued_bytes(), 0);
        assert_eq!(b.out.queued_bytes(), 5);
        assert_eq!(c.out.queued_bytes(), 5);
    }

    #[test]
    fn full_line_refuses_and_empty_line_goes() {
        let lines = lines(2);
        let (_, a) = lines.join(b"key-two-0123456789", 1).expect("room");
        let (_, b) = lines.join(b"key-two-0123456789", 1).expect("room");
        assert_eq!(
            lines.join(b"key-two-0123456789", 1).err(),
            Some(JoinError::Full)
        );
        assert_eq!(lines.stats.drops(Drop::LineFull), 1);
        // Other lines are unaffected.
        assert!(lines.join(b"key-three-012345678", 2).is_ok());
        lines.leave(b"key-two-0123456789", &a);
        assert_eq!(lines.stats.line_peers.get(), 2);
        lines.leave(b"key-two-0123456789", &b);
        assert_eq!(lines.stats.lines.get(), 1);
    }

    #[test]
    fn lines_past_the_quota_are_refused_until_one_goes() {
        let quota = Arc::new(Quota::new(2));
        let stats = Arc::new(CoreStats::default());
        // Two cores' tables sharing one process-wide quota.
        let here = Lines::new(2, 10_000, stats.clone(), quota.clone());
        let there = Lines::new(2, 10_000, stats.clone(), quota.clone());
        let (_, a) = here.join(b"key-one-0123456789", 1).expect("first line");
        there.join(b"key-two-0123456789", 2).expect("second line");
        assert_eq!(
            there.join(b"key-three-012345678", 3).err(),
            Some(JoinError::ServerFull)
        );
        assert_eq!(stats.drops(Drop::ServerFull), 1);
        // Joining an existing line takes no quota.
        let (_, b) = here.join(b"key-one-0123456789", 1).expect("second peer");
        here.leave(b"key-one-0123456789", &a);
        assert_eq!(quota.used(), 2, "the line stays while a peer is on it");
        here.leave(b"key-one-0123456789", &b);
        assert_eq!(quota.used(), 1);
        assert!(there.join(b"key-three-012345678", 3).is_ok());
    }
}
