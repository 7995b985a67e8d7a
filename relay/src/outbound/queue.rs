//! One connection's outgoing queue: whole messages waiting to be written, a line peer's
//! WebSocket frames or a VoRS member's control netstrings.
//!
//! Messages are `Bytes` shared with every other receiver of the same message, so queueing costs
//! a reference count, never a copy. The queue is bounded in bytes, which for PCM is audio time
//! (`--queue-ms`). Each message is *charged* what it keeps alive: a forwarded line message is a
//! slice of its sender's receive block and keeps the block's bytes read before it (frames nobody
//! forwarded) alive too, so its charge counts those (see `line::peer`); anything else is charged
//! its length.
//!
//! Two kinds of message, two policies:
//! - **Audio** can always be dropped: when a slow receiver overflows its bound, its *oldest
//!   audio* goes first (the newest, if nothing older is left), so what it finally hears is
//!   recent, and the sender and the other receivers never wait for it.
//! - **Control** (a pong, a ping, a close; every VoRS control message, which is a Noise
//!   transport message that cannot be left out of the stream) is never dropped. When control
//!   messages alone would pass the bound, the push fails with [`Overflow`] and the queue is
//!   *cut*: everything in it is freed at once, and its writer resets the connection (see
//!   `writer`). The owner ends the connection's member as it ends one whose peer went away.
//!
//! The writer stops on a cut wherever it is waiting, so a connection can be ended from outside
//! its tasks (the room that overflowed a member's queue, the member's own leaving).

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

/// A control message would have passed the queue's bound: the queue has been cut
/// ([`Cut::Backlog`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflow;

/// Why a queue was cut: its connection is reset, whatever it still held is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Control messages that may not be dropped passed the bound: the peer reads too little.
    Backlog,
    /// The socket took no byte for `--write-stall-timeout`.
    WriteStall,
    /// The connection's owner ended it (a VoRS member left); nothing queued matters any more.
    Discarded,
}

impl Cut {
    /// The cuts counted in `moose_connections_cut_total` (a member's own leaving is not one).
    pub(crate) const COUNTED: [Cut; 2] = [Cut::Backlog, Cut::WriteStall];

    /// The `reason` label in metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Cut::Backlog => "backlog",
            Cut::WriteStall => "write_stall",
            Cut::Discarded => "discarded",
        }
    }
}

#[derive(Debug)]
struct Entry {
    message: Bytes,
    /// What the message counts against the bound: its length, or more for a slice that keeps
    /// more of its block alive.
    charge: usize,
    kind: Kind,
    /// When the relay read the message, for the forward-latency histogram (forwarded audio
    /// only; messages the relay makes itself have none).
    received: Option<Instant>,
}

/// Messages for one connection, and the wake-up of its writer task.
pub(crate) struct OutQueue {
    entries: RefCell<VecDeque<Entry>>,
    /// The sum of the queued messages' charges.
    queued_bytes: Cell<usize>,
    /// Control messages queued (pongs a peer asked for and has not read yet, among others).
    control_messages: Cell<usize>,
    limit_bytes: usize,
    /// Bytes of the front message already written; a message partly on the wire is never
    /// dropped.
    front_written: Cell<usize>,
    /// Set once no more messages will be accepted; the writer drains what is left and stops.
    closed: Cell<bool>,
    /// Set when the queue was cut; the writer stops at once.
    cut: Cell<Option<Cut>>,
    writer: Cell<Option<Waker>>,
    /// The writer while it waits on a full socket: woken only by a cut.
    stalled_writer: Cell<Option<Waker>>,
}

impl std::fmt::Debug for OutQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutQueue")
            .field("messages", &self.entries.borrow().len())
            .field("queued_bytes", &self.queued_bytes.get())
            .field("closed", &self.closed.get())
            .field("cut", &self.cut.get())
            .finish()
    }
}

impl OutQueue {
    pub(crate) fn new(limit_bytes: usize) -> Self {
        OutQueue {
            entries: RefCell::new(VecDeque::new()),
            queued_bytes: Cell::new(0),
            control_messages: Cell::new(0),
            limit_bytes,
            front_written: Cell::new(0),
            closed: Cell::new(false),
            cut: Cell::new(None),
            writer: Cell::new(None),
            stalled_writer: Cell::new(None),
        }
    }

    /// Queues a forwarded audio message read at `received`, charged `charge` bytes (at least
    /// its length); returns how many audio messages were dropped to make room, this one
    /// included when nothing older could go.
    pub(crate) fn push_audio(&self, message: Bytes, charge: usize, received: Instant) -> usize {
        if self.closed.get() {
            return 0;
        }
        let charge = charge.max(message.len());
        // The usual case, a queue with room, takes no scan and one borrow.
        let room = if self.queued_bytes.get() + charge > self.limit_bytes {
            self.make_room(charge)
        } else {
            0
        };
        if self.queued_bytes.get() + charge > self.limit_bytes {
            // Nothing older is left to drop: the newest goes instead.
            return room + 1;
        }
        self.enqueue(Entry {
            message,
            charge,
            kind: Kind::Audio,
            received: Some(received),
        });
        room
    }

    /// Queues a control message, after dropping as much old audio as it needs. When control
    /// messages alone would pass the bound, the queue is cut instead ([`Cut::Backlog`]).
    pub(crate) fn push_control(&self, message: Bytes) -> Result<(), Overflow> {
        if self.closed.get() {
            return Ok(());
        }
        let charge = message.len();
        self.make_room(charge);
        if self.queued_bytes.get() + charge > self.limit_bytes {
            self.cut(Cut::Backlog);
            return Err(Overflow);
        }
        self.control_messages.set(self.control_messages.get() + 1);
        self.enqueue(Entry {
            message,
            charge,
            kind: Kind::Control,
            received: None,
        });
        Ok(())
    }

    /// Drops the oldest audio until `charge` more bytes fit or no audio is left (but one partly
    /// written); returns how many went.
    fn make_room(&self, charge: usize) -> usize {
        let mut entries = self.entries.borrow_mut();
        let mut queued = self.queued_bytes.get();
        let mut dropped = 0;
        // The scan is skipped when only control messages (capped in number) are queued.
        while queued + charge > self.limit_bytes && entries.len() > self.control_messages.get() {
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
                queued -= old.charge;
                dropped += 1;
            }
        }
        self.queued_bytes.set(queued);
        dropped
    }

    fn enqueue(&self, entry: Entry) {
        self.queued_bytes
            .set(self.queued_bytes.get() + entry.charge);
        self.entries.borrow_mut().push_back(entry);
        self.wake();
    }

    /// No more messages after this; the writer finishes what is queued.
    pub(crate) fn close(&self) {
        self.closed.set(true);
        self.wake();
    }

    /// Ends the connection now: no more messages, everything queued is freed, and the writer
    /// stops wherever it waits (it then resets the connection). The first cut's reason stays.
    pub(crate) fn cut(&self, reason: Cut) {
        if self.cut.get().is_none() {
            self.cut.set(Some(reason));
        }
        self.closed.set(true);
        let freed = std::mem::take(&mut *self.entries.borrow_mut());
        drop(freed);
        self.queued_bytes.set(0);
        self.control_messages.set(0);
        self.front_written.set(0);
        self.wake();
        if let Some(waker) = self.stalled_writer.take() {
            waker.wake();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Why the queue was cut, if it was.
    pub(crate) fn cut_reason(&self) -> Option<Cut> {
        self.cut.get()
    }

    /// Control messages queued and not yet written whole.
    pub(crate) fn control_messages(&self) -> usize {
        self.control_messages.get()
    }

    fn wake(&self) {
        if let Some(waker) = self.writer.take() {
            waker.wake();
        }
    }

    /// Waits until there is something to write (true) or the queue is closed and empty, or
    /// cut (false).
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

    /// Resolves once the queue is cut: raced against a write waiting on a full socket.
    pub(crate) async fn cut_off(&self) -> Cut {
        poll_fn(|cx| match self.cut.get() {
            Some(reason) => Poll::Ready(reason),
            None => {
                self.stalled_writer.set(Some(cx.waker().clone()));
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
            let Some(sent) = entries.pop_front() else {
                break;
            };
            self.queued_bytes.set(self.queued_bytes.get() - sent.charge);
            match (sent.kind, sent.received) {
                (Kind::Audio, Some(received)) => on_sent(received),
                (Kind::Audio, None) => {}
                (Kind::Control, _) => self.control_messages.set(self.control_messages.get() - 1),
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

    fn audio(q: &OutQueue, len: usize, tag: u8) -> usize {
        q.push_audio(frame(len, tag), len, Instant::now())
    }

    fn tags(q: &OutQueue) -> Vec<u8> {
        q.with_front(8, |s| s.iter().map(|f| f[0]).collect::<Vec<_>>())
    }

    #[test]
    fn overflow_drops_oldest_audio_but_keeps_control() {
        let q = OutQueue::new(300);
        assert_eq!(audio(&q, 100, 1), 0);
        assert_eq!(q.push_control(frame(50, 9)), Ok(()));
        assert_eq!(audio(&q, 100, 2), 0);
        // 250 queued; 100 more overflows by 50: the oldest audio (tag 1) goes.
        assert_eq!(audio(&q, 100, 3), 1);
        assert_eq!(q.queued_bytes(), 250);
        assert_eq!(tags(&q), vec![9, 2, 3]);
        assert_eq!(q.control_messages(), 1);
    }

    #[test]
    fn consume_tracks_partial_writes() {
        let q = OutQueue::new(1000);
        audio(&q, 10, 1);
        audio(&q, 10, 2);
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
        audio(&q, 100, 1);
        q.consume(30);
        audio(&q, 100, 2);
        // Overflow: frame 1 is on the wire, so frame 2 (the oldest not yet started) goes.
        assert_eq!(audio(&q, 100, 3), 1);
        assert_eq!(tags(&q), vec![1, 3]);
        assert_eq!(q.with_front(8, |s| s[0].len()), 70);
    }

    #[test]
    fn completed_frames_report_their_receive_time() {
        let q = OutQueue::new(1000);
        let t0 = Instant::now();
        q.push_audio(frame(10, 1), 10, t0);
        q.push_control(frame(10, 2)).expect("room");
        let mut seen = Vec::new();
        assert_eq!(q.consume_with(5, |t| seen.push(t)), 0);
        assert!(seen.is_empty(), "a partly written frame is not sent yet");
        assert_eq!(q.consume_with(15, |t| seen.push(t)), 2);
        assert_eq!(
            seen,
            vec![t0],
            "only the forwarded frame has a receive time"
        );
        assert_eq!(q.control_messages(), 0);
    }

    #[test]
    fn closed_queue_accepts_nothing() {
        let q = OutQueue::new(1000);
        q.close();
        q.push_control(frame(10, 1)).expect("ignored, not refused");
        assert_eq!(audio(&q, 10, 2), 0);
        assert_eq!(q.queued_bytes(), 0);
        assert!(q.is_closed());
        assert_eq!(q.cut_reason(), None);
    }

    #[test]
    fn a_message_is_charged_what_it_pins_and_the_bound_counts_charges() {
        let q = OutQueue::new(1000);
        // Two bytes on the wire, but 600 of its block kept alive.
        assert_eq!(q.push_audio(frame(2, 1), 600, Instant::now()), 0);
        assert_eq!(q.queued_bytes(), 600);
        // A second such message does not fit beside it: the older goes.
        assert_eq!(q.push_audio(frame(2, 2), 600, Instant::now()), 1);
        assert_eq!(tags(&q), vec![2]);
        // Written, its whole charge is given back.
        assert_eq!(q.consume(2), 1);
        assert_eq!(q.queued_bytes(), 0);
    }

    #[test]
    fn audio_that_cannot_fit_beside_control_is_dropped_itself() {
        let q = OutQueue::new(300);
        q.push_control(frame(250, 9)).expect("room");
        assert_eq!(
            audio(&q, 100, 1),
            1,
            "the new audio goes: nothing older to drop"
        );
        assert_eq!(tags(&q), vec![9]);
        assert_eq!(q.queued_bytes(), 250);
        assert_eq!(q.cut_reason(), None, "audio never cuts");
    }

    #[test]
    fn control_past_the_bound_cuts_the_queue_and_frees_it() {
        let q = OutQueue::new(300);
        audio(&q, 100, 1);
        q.push_control(frame(150, 8)).expect("room");
        // Audio goes first; then control alone passes the bound.
        assert_eq!(q.push_control(frame(100, 9)), Ok(()));
        assert_eq!(tags(&q), vec![8, 9]);
        assert_eq!(q.push_control(frame(100, 10)), Err(Overflow));
        assert_eq!(q.cut_reason(), Some(Cut::Backlog));
        assert_eq!(q.queued_bytes(), 0);
        assert!(q.front().is_none(), "everything is freed at once");
        assert!(q.is_closed());
        // From then on nothing is queued, and the first reason stays.
        assert_eq!(q.push_control(frame(1, 11)), Ok(()));
        q.cut(Cut::Discarded);
        assert_eq!(q.cut_reason(), Some(Cut::Backlog));
        assert!(q.front().is_none());
    }

    #[test]
    fn a_cut_wakes_the_writer_wherever_it_waits() {
        use std::future::Future;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::{Context, Wake};

        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let q = OutQueue::new(100);
        let mut ready = std::pin::pin!(q.ready());
        assert!(ready.as_mut().poll(&mut cx).is_pending());
        let mut cut = std::pin::pin!(q.cut_off());
        assert!(cut.as_mut().poll(&mut cx).is_pending());
        q.cut(Cut::WriteStall);
        assert_eq!(count.0.load(Ordering::Relaxed), 2, "both waits are woken");
        assert_eq!(ready.poll(&mut cx), Poll::Ready(false));
        assert_eq!(cut.poll(&mut cx), Poll::Ready(Cut::WriteStall));
    }
}
