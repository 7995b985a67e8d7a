//! The freshness check of a VoRS hello, between framing message 1 and decrypting it.
//!
//! A captured message 1 sent again, from any address, would cost a full handshake, take the
//! victim's name in its room until the cookie timeout, and draw a message 2. So when the
//! session has framed message 1 ([`ServerEvent::Message1`]), its client ephemeral key is
//! looked up in the process's replay cache (`limits::replay`) before any Noise work: a key
//! seen within the window is refused at once, unanswered. A new key goes on to decryption,
//! and the session judges the hello's SENT_AT against the relay's clock
//! (`--hello-max-skew`, `--accept-untimed-hellos`); a stale or untimed hello is closed
//! unanswered too. Each refusal is counted by reason.
//!
//! [`ServerEvent::Message1`]: moose_proto::vors::server::ServerEvent::Message1

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use moose_proto::vors::freshness::{Freshness, Staleness, UnixTime};
use moose_proto::vors::handshake::KEY_LEN;
use moose_proto::vors::server::{ServerCloseReason, ServerSession};
use tracing::debug;

use crate::limits::Limits;
use crate::limits::replay::{HelloRefusal, Sighting};
use crate::shard::Shard;
use crate::stats::CoreStats;

/// Screens the message 1 `session` has framed, whose client ephemeral key is `ephemeral`,
/// and opens it if it is new: afterwards the session holds the hello, or is closed.
pub(crate) fn screen(shard: &Shard, session: &mut ServerSession, ephemeral: &[u8; KEY_LEN]) {
    let check = Screening {
        limits: &shard.limits,
        freshness: &shard.config.hello_freshness,
        stats: &shard.stats,
    };
    check.run(session, ephemeral, Instant::now(), wall_clock());
}

/// What screening reads and counts, apart from the clocks.
#[derive(Debug, Clone, Copy)]
struct Screening<'a> {
    limits: &'a Limits,
    freshness: &'a Freshness,
    stats: &'a CoreStats,
}

impl Screening<'_> {
    fn run(
        &self,
        session: &mut ServerSession,
        ephemeral: &[u8; KEY_LEN],
        now: Instant,
        wall: UnixTime,
    ) {
        match self.limits.hello_sighting(ephemeral, wall) {
            Sighting::Seen => {
                // Cannot fail: the session has just framed message 1.
                let _ = session.refuse_replayed();
                self.refused(HelloRefusal::Replay);
                return;
            }
            Sighting::New { evicted: true } => self.stats.vors_hello_cache_evictions.inc(),
            Sighting::New { evicted: false } => {}
        }
        let _ = session.open_hello(now, wall, self.freshness);
        match session.close_reason() {
            Some(ServerCloseReason::Stale(Staleness::Untimed)) => {
                self.refused(HelloRefusal::Untimed);
            }
            Some(ServerCloseReason::Stale(_)) => self.refused(HelloRefusal::Stale),
            _ => {}
        }
    }

    fn refused(&self, reason: HelloRefusal) {
        self.stats.hello_refused(reason);
        debug!(reason = reason.label(), "vors hello refused");
    }
}

/// The relay's wall clock, in whole seconds since the Unix epoch (0 if it reads earlier).
fn wall_clock() -> UnixTime {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH);
    UnixTime(since_epoch.map_or(0, |d| d.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use moose_proto::vors::handshake::{ClientHandshake, generate_keypair};
    use moose_proto::vors::hello::Hello;
    use moose_proto::vors::netstring;
    use moose_proto::vors::server::{MAGIC, ServerEvent};

    const WALL: UnixTime = UnixTime(1_800_000_000);

    struct Relay {
        limits: Limits,
        freshness: Freshness,
        stats: CoreStats,
        private: [u8; KEY_LEN],
        public: [u8; KEY_LEN],
    }

    impl Relay {
        fn new() -> Self {
            let config = Config::default();
            let (private, public) = generate_keypair().expect("keypair");
            Relay {
                limits: Limits::new(&config),
                freshness: config.hello_freshness,
                stats: CoreStats::default(),
                private,
                public,
            }
        }

        /// Magic and message 1 of a real client, sent at `sent_at`.
        fn hello(&self, sent_at: Option<UnixTime>) -> Vec<u8> {
            let hello = Hello {
                username: "ann",
                room: "r",
                password_hash: None,
            };
            let (_, msg1) = ClientHandshake::start(&self.public, &hello, sent_at).expect("start");
            let mut bytes = MAGIC.to_vec();
            netstring::encode(&msg1, &mut bytes);
            bytes
        }

        /// A session fed `bytes` and screened at `wall`, as the listener does it.
        fn screen(&self, bytes: &[u8], wall: UnixTime) -> ServerSession {
            let now = Instant::now();
            let mut session = ServerSession::new(now, &self.private);
            session.handle_tcp(now, bytes);
            let Some(ServerEvent::Message1 { ephemeral }) = session.poll_event() else {
                panic!("message 1 framed");
            };
            let check = Screening {
                limits: &self.limits,
                freshness: &self.freshness,
                stats: &self.stats,
            };
            check.run(&mut session, &ephemeral, now, wall);
            session
        }

        fn refused(&self, reason: HelloRefusal) -> u64 {
            self.stats.hellos_refused(reason)
        }
    }

    fn opened(session: &mut ServerSession) -> bool {
        matches!(session.poll_event(), Some(ServerEvent::Hello(_)))
    }

    #[test]
    fn a_copy_of_a_hello_is_refused_from_any_session_until_its_window_ends() {
        let relay = Relay::new();
        let bytes = relay.hello(Some(WALL));
        assert!(opened(&mut relay.screen(&bytes, WALL)));
        let mut copy = relay.screen(&bytes, UnixTime(WALL.0 + 1));
        assert_eq!(copy.close_reason(), Some(ServerCloseReason::Replayed));
        assert!(!opened(&mut copy));
        assert_eq!(relay.refused(HelloRefusal::Replay), 1);
        // Past the window the cache has forgotten the key, and the freshness check refuses
        // the copy instead.
        let late = UnixTime(WALL.0 + relay.freshness.remember_for() + 1);
        let copy = relay.screen(&bytes, late);
        assert_eq!(
            copy.close_reason(),
            Some(ServerCloseReason::Stale(Staleness::OutsideWindow))
        );
        assert_eq!(relay.refused(HelloRefusal::Stale), 1);
        // Another hello of the same member is a new handshake.
        assert!(opened(&mut relay.screen(&relay.hello(Some(WALL)), WALL)));
        assert_eq!(relay.refused(HelloRefusal::Replay), 1);
    }

    #[test]
    fn stale_and_untimed_hellos_are_counted_apart() {
        let relay = Relay::new();
        let skew = relay.freshness.max_skew;
        let early = relay.screen(&relay.hello(Some(UnixTime(WALL.0 + skew + 1))), WALL);
        assert!(early.is_closed());
        let untimed = relay.screen(&relay.hello(None), WALL);
        assert_eq!(
            untimed.close_reason(),
            Some(ServerCloseReason::Stale(Staleness::Untimed))
        );
        assert_eq!(relay.refused(HelloRefusal::Stale), 1);
        assert_eq!(relay.refused(HelloRefusal::Untimed), 1);
        assert_eq!(relay.refused(HelloRefusal::Replay), 0);
    }

    #[test]
    fn a_full_cache_counts_what_it_forgets() {
        let config = Config {
            hello_replay_cache: 1,
            ..Config::default()
        };
        let relay = Relay {
            limits: Limits::new(&config),
            ..Relay::new()
        };
        let first = relay.hello(Some(WALL));
        relay.screen(&first, WALL);
        relay.screen(&relay.hello(Some(WALL)), WALL);
        assert_eq!(relay.stats.vors_hello_cache_evictions.get(), 1);
        // The forgotten key is let through again: the bound the eviction counter warns of.
        assert!(opened(&mut relay.screen(&first, WALL)));
    }

    #[test]
    fn the_wall_clock_reads_unix_seconds() {
        // 2025-01-01: any clock this runs under is later.
        assert!(wall_clock().0 > 1_735_689_600);
    }
}
