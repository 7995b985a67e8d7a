//! A bounded queue of PCM samples between a thread that runs on the sound's clock (a pipe
//! reader or writer, a device callback) and the call's 20 ms frame clock.
//!
//! Two ways in: [`SampleQueue::push_wait`] blocks while the queue is full, so a producer
//! faster than real time (`cat file.raw`, `sox ... synth`) is paced by the call; and
//! [`SampleQueue::push_overwrite`] never blocks and drops the oldest samples instead, for a
//! producer that must not wait (a device callback, or the call's own loop feeding playback).
//! Either way the queue never holds more than its capacity: the delay it adds is bounded.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::CaptureFrame;
use crate::audio::FRAME_SAMPLES;

/// Samples between two clocks, at most `capacity` of them.
#[derive(Debug)]
pub(crate) struct SampleQueue {
    state: Mutex<State>,
    changed: Condvar,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    samples: VecDeque<i16>,
    closed: bool,
    /// Samples thrown away by [`SampleQueue::push_overwrite`] for lack of room.
    dropped: u64,
}

impl SampleQueue {
    /// An empty queue for at most `capacity` samples.
    pub(crate) fn new(capacity: usize) -> Self {
        SampleQueue {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A thread that panicked holding the lock left whole samples behind; carry on.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends `samples`, waiting for room as needed. False once the queue is closed.
    pub(crate) fn push_wait(&self, mut samples: &[i16]) -> bool {
        let mut state = self.lock();
        while !samples.is_empty() {
            if state.closed {
                return false;
            }
            let room = self.capacity.saturating_sub(state.samples.len());
            if room == 0 {
                state = self
                    .changed
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            let (now, later) = samples.split_at(room.min(samples.len()));
            state.samples.extend(now);
            samples = later;
            self.changed.notify_all();
        }
        true
    }

    /// Appends `samples` without waiting, dropping the oldest samples beyond the capacity.
    /// Returns how many were dropped.
    pub(crate) fn push_overwrite(&self, samples: &[i16]) -> usize {
        let mut state = self.lock();
        state.samples.extend(samples);
        let excess = state.samples.len().saturating_sub(self.capacity);
        state.samples.drain(..excess);
        state.dropped += excess as u64;
        self.changed.notify_all();
        excess
    }

    /// Takes exactly `out.len()` samples if that many are queued; otherwise takes nothing,
    /// fills `out` with silence and returns false (an underrun). Once the queue is closed,
    /// what is left is taken, padded with silence.
    pub(crate) fn pop_exact(&self, out: &mut [i16]) -> bool {
        let mut state = self.lock();
        if state.samples.len() < out.len() {
            if state.closed && !state.samples.is_empty() {
                let n = state.samples.len();
                for (slot, sample) in out.iter_mut().zip(state.samples.drain(..)) {
                    *slot = sample;
                }
                out[n..].fill(0);
                return true;
            }
            out.fill(0);
            return false;
        }
        let n = out.len();
        for (slot, sample) in out.iter_mut().zip(state.samples.drain(..n)) {
            *slot = sample;
        }
        self.changed.notify_all();
        true
    }

    /// Takes what is queued up to `out.len()` samples and fills the rest with silence, without
    /// waiting (a playback device callback). Returns how many samples were real.
    #[cfg_attr(not(any(test, feature = "sound-devices")), allow(dead_code))]
    pub(crate) fn pop_fill(&self, out: &mut [i16]) -> usize {
        let mut state = self.lock();
        let n = out.len().min(state.samples.len());
        for (slot, sample) in out.iter_mut().zip(state.samples.drain(..n)) {
            *slot = sample;
        }
        out[n..].fill(0);
        self.changed.notify_all();
        n
    }

    /// Waits until at least one sample is queued, then takes up to `out.len()`. Returns 0
    /// once the queue is closed and empty.
    pub(crate) fn pop_wait(&self, out: &mut [i16]) -> usize {
        let mut state = self.lock();
        while state.samples.is_empty() {
            if state.closed {
                return 0;
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        let n = out.len().min(state.samples.len());
        for (slot, sample) in out.iter_mut().zip(state.samples.drain(..n)) {
            *slot = sample;
        }
        self.changed.notify_all();
        n
    }

    /// Wakes every waiter; pushes fail from now on and pops drain what is left.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Closed and nothing left: the producer is done.
    pub(crate) fn is_finished(&self) -> bool {
        let state = self.lock();
        state.closed && state.samples.is_empty()
    }

    /// The next 20 ms of a microphone fed through this queue (silence unless
    /// [`CaptureFrame::Ready`]).
    pub(crate) fn next_frame(&self, out: &mut [i16; FRAME_SAMPLES]) -> CaptureFrame {
        if self.pop_exact(out) {
            CaptureFrame::Ready
        } else if self.is_finished() {
            CaptureFrame::Ended
        } else {
            CaptureFrame::Behind
        }
    }

    /// Samples dropped so far for lack of room.
    pub(crate) fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn overwrite_keeps_the_newest_within_capacity() {
        let q = SampleQueue::new(4);
        assert_eq!(q.push_overwrite(&[1, 2, 3]), 0);
        assert_eq!(q.push_overwrite(&[4, 5, 6]), 2);
        assert_eq!(q.dropped(), 2);
        let mut out = [0; 4];
        assert!(q.pop_exact(&mut out));
        assert_eq!(out, [3, 4, 5, 6]);
    }

    #[test]
    fn underrun_is_silence_and_takes_nothing() {
        let q = SampleQueue::new(8);
        q.push_overwrite(&[7, 7]);
        let mut out = [9; 3];
        assert!(!q.pop_exact(&mut out));
        assert_eq!(out, [0; 3]);
        assert_eq!(q.pop_fill(&mut out), 2);
        assert_eq!(out, [7, 7, 0]);
    }

    #[test]
    fn push_wait_is_paced_by_the_consumer() {
        let q = Arc::new(SampleQueue::new(2));
        let producer = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || q.push_wait(&[1, 2, 3, 4, 5]))
        };
        let mut got = Vec::new();
        let mut buf = [0; 2];
        while got.len() < 5 {
            let n = q.pop_wait(&mut buf);
            got.extend_from_slice(&buf[..n]);
        }
        assert!(producer.join().expect("producer"));
        assert_eq!(got, [1, 2, 3, 4, 5]);
        q.close();
        assert_eq!(q.pop_wait(&mut buf), 0);
        assert!(!q.push_wait(&[1]));
    }
}
