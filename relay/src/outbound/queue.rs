//! One connection's outgoing queue: whole messages waiting to be written, a line peer's
//! WebSocket frames or a VoRS member's control netstrings.
//!
//! Messages are `Bytes` shared with every other receiver of the same message, so queueing costs
//! a reference count, never a copy. The queue is bounded in bytes, which for PCM is audio time
//! (`--queue-ms`): when a slow receiver overflows it, its *oldest audio* goes first, so what it
//! finally hears is recent, and the sender and the other receivers never wait for it. Control
//! messages (pong, close, every VoRS control message) are never dropped.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::Bytes;

/// What a queued message is, for the drop policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Audio,
    Control,
}

#[derive(Debug)]
struct Entry {
    message: Bytes,
    kind: Kind,
    /// When the relay read the message, for the forward-latency histogram (forwarded audio
    /// only; messages the relay makes itself have none).
    received: Option<Instant>,
}

/// Messages for one connection, and the wake-up of its writer task.
pub(crate) struct OutQueue {
    entries: RefCell<VecDeque<Entry>>,
    queued_bytes: Cell<usize>,
    limit_bytes: usize,
    /// Bytes of the front message already written; a message partly on the wire is never
    /// dropped.
    front_written: Cell<usize>,
    /// Set once no more messages will be accepted; the writer drains what is left and stops.
    closed: Cell<bool>,
    writer: Cell<Option<Waker>>,
}

impl std::fmt::Debug for OutQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutQueue")
            .field("messages", &self.entries.borrow().len())
            .field("queued_bytes", &self.queued_bytes.get())
            .field("closed", &self.closed.get())
            .finish()
    }
}

impl OutQueue {
    pub(crate) fn new(limit_bytes: usize) -> Self {
        OutQueue {
            entries: RefCell::new(VecDeque::new()),
            queued_bytes: Cell::new(0),
            limit_bytes,
            front_written: Cell::new(0),
            closed: Cell::new(false),
            writer: Cell::new(None),
        }
    }

    /// Queues a message; returns how many audio messages were dropped to make room.
    pub(crate) fn push(&self, message: Bytes, kind: Kind) -> usize {
        self.push_received(message, kind, None)
    }

    /// Queues a message read from a peer at `received`; returns how many audio messages were
    /// dropped to make room.
    pub(crate) fn push_received(
        &self,
        message: Bytes,
        kind: Kind,
        received: Option<Instant>,
    ) -> usize {
        if self.closed.get() {
            return 0;
        }
        let mut entries = self.entries.borrow_mut();
        let mut queued = self.queued_bytes.get() + message.len();
        let mut dropped = 0;
        while queued > self.limit_bytes {
            // Oldest audio first; control messages and one partly written keep their place.
            let skip = usize::from(self.front_written.get() > 0);
            let Some(pos) = entries
                .iter()
                .skip(skip)
                .position(|e| e.kind == Kind::Audio)
                .map(|p| p + skip)
            else {
                break;
            };
            if let Some(old) = entries.remove(pos) {
                queued -= old.message.len();
                dropped += 1;
            }
        }
        entries.push_back(Entry {
            message,
            kind,
            received,
        });
        self.queued_bytes.set(queued);
        drop(entries);
        self.wake();
        dropped
    }

    /// No more messages after this; the writer finishes what is queued.
    pub(crate) fn close(&self) {
        self.closed.set(true);
        self.wake();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    fn wake(&self) {
        if let Some(waker) = self.writer.take() {
            waker.wake();
        }
    }

    /// Waits until there is something to write (true) or the queue is closed and empty (false).
    pub(crate) async fn ready(&self) -> bool {
        poll_fn(|cx| {
            if !self.entries.borrow().is_empty() {
                Poll::Ready(true)
            } else if self.closed.get() {
                Poll::Ready(false)
            } else {
                self.writer.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// Calls `f` with up to `max` queued messages, the first without its bytes already
    /// written, and returns what `f` returns. Used to build one vectored write.
    pub(crate) fn with_front<R>(&self, max: usize, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        let entries = self.entries.borrow();
        let offset = self.front_written.get();
        let mut slices: [&[u8]; crate::sys::MAX_IOVECS] = [&[]; crate::sys::MAX_IOVECS];
        let mut n = 0;
        for (i, entry) in entries.iter().take(max.min(slices.len())).enumerate() {
            slices[i] = if i == 0 {
                &entry.message[offset..]
            } else {
                &entry.message
            };
            n += 1;
        }
        f(&slices[..n])
    }

    /// The unwritten rest of the front message (for a write that must wait for the socket).
    pub(crate) fn front(&self) -> Option<Bytes> {
        let offset = self.front_written.get();
        self.entries
            .borrow()
            .front()
            .map(|e| e.message.slice(offset..))
    }

    /// Marks `written` more bytes as sent; returns the number of whole messages completed.
    pub(crate) fn consume(&self, written: usize) -> usize {
        self.consume_with(written, |_| {})
    }

    /// As [`consume`](Self::consume), and calls `on_sent` with the receive time of every
    /// completed message that has one.
    pub(crate) fn consume_with(&self, written: usize, mut on_sent: impl FnMut(Instant)) -> usize {
        let mut entries = self.entries.borrow_mut();
        let mut left = self.front_written.get() + written;
        let mut messages = 0;
        while let Some(front) = entries.front() {
            let len = front.message.len();
            if left < len {
                break;
            }
            left -= len;
            self.queued_bytes.set(self.queued_bytes.get() - len);
            if let Some(received) = entries.pop_front().and_then(|e| e.received) {
                on_sent(received);
            }
            messages += 1;
        }
        self.front_written.set(left);
        messages
    }

    #[cfg(test)]
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued_bytes.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize, tag: u8) -> Bytes {
        Bytes::from(vec![tag; len])
    }

    #[test]
    fn overflow_drops_oldest_audio_but_keeps_control() {
        let q = OutQueue::new(300);
        assert_eq!(q.push(frame(100, 1), Kind::Audio), 0);
        assert_eq!(q.push(frame(50, 9), Kind::Control), 0);
        assert_eq!(q.push(frame(100, 2), Kind::Audio), 0);
        // 250 queued; 100 more overflows by 50: the oldest audio (tag 1) goes.
        assert_eq!(q.push(frame(100, 3), Kind::Audio), 1);
        assert_eq!(q.queued_bytes(), 250);
        let tags = q.with_front(8, |s| s.iter().map(|f| f[0]).collect::<Vec<_>>());
        assert_eq!(tags, vec![9, 2, 3]);
    }

    #[test]
    fn consume_tracks_partial_writes() {
        let q = OutQueue::new(1000);
        q.push(frame(10, 1), Kind::Audio);
        q.push(frame(10, 2), Kind::Audio);
        assert_eq!(q.consume(4), 0);
        assert_eq!(q.with_front(8, |s| s[0].len()), 6);
        assert_eq!(q.consume(10), 1);
        assert_eq!(q.front().expect("one left").len(), 6);
        assert_eq!(q.consume(6), 1);
        assert_eq!(q.queued_bytes(), 0);
        assert!(q.front().is_none());
    }

    #[test]
    fn a_frame_partly_written_is_never_dropped() {
        let q = OutQueue::new(200);
        q.push(frame(100, 1), Kind::Audio);
        q.consume(30);
        q.push(frame(100, 2), Kind::Audio);
        // Overflow: frame 1 is on the wire, so frame 2 (the oldest not yet started) goes.
        assert_eq!(q.push(frame(100, 3), Kind::Audio), 1);
        let tags = q.with_front(8, |s| s.iter().map(|f| f[0]).collect::<Vec<_>>());
        assert_eq!(tags, vec![1, 3]);
        assert_eq!(q.with_front(8, |s| s[0].len()), 70);
    }

    #[test]
    fn completed_frames_report_their_receive_time() {
        let q = OutQueue::new(1000);
        let t0 = Instant::now();
        q.push_received(frame(10, 1), Kind::Audio, Some(t0));
        q.push(frame(10, 2), Kind::Control);
        let mut seen = Vec::new();
        assert_eq!(q.consume_with(5, |t| seen.push(t)), 0);
        assert!(seen.is_empty(), "a partly written frame is not sent yet");
        assert_eq!(q.consume_with(15, |t| seen.push(t)), 2);
        assert_eq!(
            seen,
            vec![t0],
            "only the forwarded frame has a receive time"
        );
    }

    #[test]
    fn closed_queue_accepts_nothing() {
        let q = OutQueue::new(1000);
        q.close();
        q.push(frame(10, 1), Kind::Control);
        assert_eq!(q.queued_bytes(), 0);
        assert!(q.is_closed());
    }
}
