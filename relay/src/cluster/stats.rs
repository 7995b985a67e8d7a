//! The cluster's figures: the coordination threads' ([`ClusterStats`], one block per
//! process) and the reasons a core drops a relay-link datagram ([`LinkDrop`]; the link
//! counters themselves are in each core's `stats::CoreStats`, single writer like the rest).
//! Both are read by the admin endpoint (`metrics/families.rs`).
//!
//! The coordination counters are written by the two cluster threads (commands and inbox), so
//! they use `fetch_add`: a locked add, off every hot path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Where the relay stands with the cluster, as `moose_cluster_state` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum ClusterState {
    /// No `--cluster-redis`: the relay is alone, as before the cluster existed.
    Standalone = 0,
    /// Registered, heartbeats answered: joins are served.
    Up = 1,
    /// Redis cannot be reached (or refused us): calls go on, joins get ERR, `/readyz` 503.
    Down = 2,
    /// Redis is back: the relay is registering again and restoring its rooms.
    Restoring = 3,
}

impl ClusterState {
    fn from_u64(v: u64) -> ClusterState {
        match v {
            1 => ClusterState::Up,
            2 => ClusterState::Down,
            3 => ClusterState::Restoring,
            _ => ClusterState::Standalone,
        }
    }
}

/// The coordination threads' counters and gauges.
#[derive(Debug)]
pub struct ClusterStats {
    state: AtomicU64,
    /// Live relays in Redis's table at the last sweep, this one included.
    relays: AtomicU64,
    redis_errors: AtomicU64,
    reregistrations: AtomicU64,
    evicted_members: AtomicU64,
    swept_relays: AtomicU64,
    events_in: AtomicU64,
    events_dropped: AtomicU64,
    joins_unavailable: AtomicU64,
}

impl Default for ClusterStats {
    fn default() -> Self {
        Self::new()
    }
}

impl ClusterStats {
    /// Zero everywhere, state standalone.
    pub const fn new() -> Self {
        ClusterStats {
            state: AtomicU64::new(ClusterState::Standalone as u64),
            relays: AtomicU64::new(0),
            redis_errors: AtomicU64::new(0),
            reregistrations: AtomicU64::new(0),
            evicted_members: AtomicU64::new(0),
            swept_relays: AtomicU64::new(0),
            events_in: AtomicU64::new(0),
            events_dropped: AtomicU64::new(0),
            joins_unavailable: AtomicU64::new(0),
        }
    }

    pub fn state(&self) -> ClusterState {
        ClusterState::from_u64(self.state.load(Relaxed))
    }

    pub fn set_state(&self, state: ClusterState) {
        self.state.store(state as u64, Relaxed);
    }

    /// Whether new calls may come (`/readyz`): standalone, or registered with Redis.
    pub fn ready(&self) -> bool {
        matches!(self.state(), ClusterState::Standalone | ClusterState::Up)
    }

    pub fn relays(&self) -> u64 {
        self.relays.load(Relaxed)
    }

    pub fn set_relays(&self, n: u64) {
        self.relays.store(n, Relaxed);
    }

    pub fn redis_errors(&self) -> u64 {
        self.redis_errors.load(Relaxed)
    }

    pub fn redis_error(&self) {
        self.redis_errors.fetch_add(1, Relaxed);
    }

    pub fn reregistrations(&self) -> u64 {
        self.reregistrations.load(Relaxed)
    }

    pub fn reregistered(&self) {
        self.reregistrations.fetch_add(1, Relaxed);
    }

    pub fn evicted_members(&self) -> u64 {
        self.evicted_members.load(Relaxed)
    }

    pub fn evicted(&self) {
        self.evicted_members.fetch_add(1, Relaxed);
    }

    pub fn swept_relays(&self) -> u64 {
        self.swept_relays.load(Relaxed)
    }

    pub fn swept(&self, n: u64) {
        self.swept_relays.fetch_add(n, Relaxed);
    }

    pub fn events_in(&self) -> u64 {
        self.events_in.load(Relaxed)
    }

    pub fn event_in(&self) {
        self.events_in.fetch_add(1, Relaxed);
    }

    pub fn events_dropped(&self) -> u64 {
        self.events_dropped.load(Relaxed)
    }

    pub fn event_dropped(&self) {
        self.events_dropped.fetch_add(1, Relaxed);
    }

    pub fn joins_unavailable(&self) -> u64 {
        self.joins_unavailable.load(Relaxed)
    }

    pub fn join_unavailable(&self) {
        self.joins_unavailable.fetch_add(1, Relaxed);
    }
}

/// Why a core dropped a relay-link datagram; one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkDrop {
    /// Not a link datagram: length, kind or reserved byte.
    Malformed,
    /// The origin is not a live relay of Redis's table (or is this relay itself).
    UnknownRelay,
    /// The tag does not verify: forged, altered, another cluster key, or sent to another
    /// relay.
    BadTag,
    /// A sequence number already accepted, or older than the replay window.
    Replayed,
    /// No room of that id on this core.
    UnknownRoom,
    /// The first byte names another core (a sender with a stale table, or more cores named
    /// than this relay has): steering sent it here by the kernel's hash.
    WrongCore,
}

impl LinkDrop {
    pub const ALL: [LinkDrop; 6] = [
        LinkDrop::Malformed,
        LinkDrop::UnknownRelay,
        LinkDrop::BadTag,
        LinkDrop::Replayed,
        LinkDrop::UnknownRoom,
        LinkDrop::WrongCore,
    ];

    /// The `reason` label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            LinkDrop::Malformed => "malformed",
            LinkDrop::UnknownRelay => "unknown_relay",
            LinkDrop::BadTag => "bad_tag",
            LinkDrop::Replayed => "replayed",
            LinkDrop::UnknownRoom => "unknown_room",
            LinkDrop::WrongCore => "wrong_core",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_drop_labels_are_distinct_and_indexed_in_order() {
        for (i, reason) in LinkDrop::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i);
        }
        let mut labels: Vec<_> = LinkDrop::ALL.iter().map(|d| d.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), LinkDrop::ALL.len());
    }

    #[test]
    fn only_standalone_and_up_are_ready() {
        let stats = ClusterStats::new();
        assert!(stats.ready());
        for (state, ready) in [
            (ClusterState::Up, true),
            (ClusterState::Down, false),
            (ClusterState::Restoring, false),
            (ClusterState::Standalone, true),
        ] {
            stats.set_state(state);
            assert_eq!(stats.state(), state);
            assert_eq!(stats.ready(), ready, "{state:?}");
        }
    }
}
