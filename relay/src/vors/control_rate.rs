//! How often a VoRS member may chat and change its mute state.
//!
//! CHAT and MUTED/UNMUTED each go to every other member of the room (up to 254 copies, each a
//! Noise transport message the relay encrypts), so one member could otherwise keep the whole
//! room's control queues full. Each member has a token bucket per kind:
//!
//! - **chat**: a burst of [`CHAT_BURST`] messages, then `--chat-per-minute` (120 by default,
//!   2 a second; 0 turns the limit off). A chat message over the limit is dropped and counted
//!   (`moose_vors_rate_limited_total{kind="chat"}`). Its author is not told: VoRS has no message
//!   for it, and an answer would be traffic too.
//! - **mute**: a burst of [`MUTE_BURST`] changes, then one a second. A change over the limit is
//!   not lost but deferred: the member's latest wish is applied once its bucket has a token
//!   again (checked every second by the member's timer), so the others always end up with its
//!   real state. Each deferral is counted (`kind="mute"`).
//!
//! A person chats and toggles far below these rates; a client in a loop meets them at once.

use std::time::Instant;

/// Chat messages a member may send at once before its rate applies.
pub(crate) const CHAT_BURST: u32 = 20;
/// Mute changes a member may make at once before its rate applies.
pub(crate) const MUTE_BURST: u32 = 10;
/// Mute changes a member may make per minute after its burst.
pub(crate) const MUTE_PER_MINUTE: u32 = 60;

/// What a member's control rate limits: one counter each in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    Chat,
    Mute,
}

impl ControlKind {
    pub const ALL: [ControlKind; 2] = [ControlKind::Chat, ControlKind::Mute];

    /// The `kind` label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            ControlKind::Chat => "chat",
            ControlKind::Mute => "mute",
        }
    }
}

/// A token bucket: `burst` events at once, refilled evenly at `per_minute`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    burst: f64,
    per_second: f64,
}

impl Bucket {
    fn new(burst: u32, per_minute: u32, now: Instant) -> Self {
        Bucket {
            tokens: f64::from(burst),
            updated: now,
            burst: f64::from(burst),
            per_second: f64::from(per_minute) / 60.0,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.updated = now;
    }

    /// Takes a token if there is one.
    fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One member's buckets, and the mute state it asked for while over its rate.
#[derive(Debug)]
pub(crate) struct ControlRate {
    /// `None`: chat is not limited (`--chat-per-minute 0`).
    chat: Option<Bucket>,
    mute: Bucket,
    /// The latest mute state asked for and not applied yet.
    pending_mute: Option<bool>,
}

impl ControlRate {
    /// The buckets of a member that joined at `now`, full.
    pub(crate) fn new(chat_per_minute: u32, now: Instant) -> Self {
        ControlRate {
            chat: (chat_per_minute > 0).then(|| Bucket::new(CHAT_BURST, chat_per_minute, now)),
            mute: Bucket::new(MUTE_BURST, MUTE_PER_MINUTE, now),
            pending_mute: None,
        }
    }

    /// Whether a chat message may go to the room now (it takes a token); false: drop it.
    pub(crate) fn allow_chat(&mut self, now: Instant) -> bool {
        self.chat.as_mut().is_none_or(|bucket| bucket.try_take(now))
    }

    /// The member asked to be `muted`: `Some` to apply now, `None` when the change waits for
    /// [`due_mute`](Self::due_mute) (only the latest wish is kept).
    pub(crate) fn mute_change(&mut self, muted: bool, now: Instant) -> Option<bool> {
        if self.mute.try_take(now) {
            self.pending_mute = None;
            Some(muted)
        } else {
            self.pending_mute = Some(muted);
            None
        }
    }

    /// A deferred mute state to apply now, once the bucket has a token for it.
    pub(crate) fn due_mute(&mut self, now: Instant) -> Option<bool> {
        let muted = self.pending_mute?;
        self.mute.try_take(now).then(|| {
            self.pending_mute = None;
            muted
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn chat_gets_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut rate = ControlRate::new(120, t0);
        let allowed = (0..100).filter(|_| rate.allow_chat(t0)).count();
        assert_eq!(allowed, CHAT_BURST as usize);
        // 120 a minute: one more every half second.
        assert!(!rate.allow_chat(t0 + Duration::from_millis(400)));
        assert!(rate.allow_chat(t0 + Duration::from_millis(500)));
        assert!(!rate.allow_chat(t0 + Duration::from_millis(600)));
        // A quiet minute refills the burst, no more.
        let later = t0 + Duration::from_secs(60);
        let allowed = (0..100).filter(|_| rate.allow_chat(later)).count();
        assert_eq!(allowed, CHAT_BURST as usize);
    }

    #[test]
    fn chat_per_minute_zero_is_no_limit() {
        let t0 = Instant::now();
        let mut rate = ControlRate::new(0, t0);
        assert!((0..10_000).all(|_| rate.allow_chat(t0)));
    }

    #[test]
    fn mute_changes_over_the_rate_wait_and_the_latest_wins() {
        let t0 = Instant::now();
        let mut rate = ControlRate::new(120, t0);
        for i in 0..MUTE_BURST {
            assert_eq!(rate.mute_change(i % 2 == 0, t0), Some(i % 2 == 0));
        }
        assert_eq!(rate.mute_change(true, t0), None);
        assert_eq!(rate.mute_change(false, t0), None);
        assert_eq!(rate.due_mute(t0), None, "no token yet");
        // A second later one token is back: the latest wish, once.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(rate.due_mute(t1), Some(false));
        assert_eq!(rate.due_mute(t1 + Duration::from_secs(5)), None);
        // A change within the rate clears a pending one.
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(rate.mute_change(true, t2), Some(true));
        assert_eq!(rate.due_mute(t2 + Duration::from_secs(5)), None);
    }
}
