//! Per-core counters, written by their own core only and read by the admin endpoint.
//!
//! Each counter has exactly one writer (its core), so an increment is a relaxed load and store,
//! not a locked read-modify-write: as cheap as a plain `u64` on the hot path, yet readable from
//! the admin core without tearing. Each core's block is cache-line aligned so cores never share
//! a line.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A counter with a single writing thread.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning core may call this (single writer).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down (members, lines), single writer as above.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Upper bounds of the forward-latency buckets, in nanoseconds and as Prometheus `le` labels
/// (seconds): 1-2-5 steps from 1 µs to 1 s, then `+Inf`.
pub const LATENCY_BOUNDS: [(u64, &str); 19] = [
    (1_000, "0.000001"),
    (2_000, "0.000002"),
    (5_000, "0.000005"),
    (10_000, "0.00001"),
    (20_000, "0.00002"),
    (50_000, "0.00005"),
    (100_000, "0.0001"),
    (200_000, "0.0002"),
    (500_000, "0.0005"),
    (1_000_000, "0.001"),
    (2_000_000, "0.002"),
    (5_000_000, "0.005"),
    (10_000_000, "0.01"),
    (20_000_000, "0.02"),
    (50_000_000, "0.05"),
    (100_000_000, "0.1"),
    (200_000_000, "0.2"),
    (500_000_000, "0.5"),
    (1_000_000_000, "1"),
];

/// A latency histogram with a single writer: one counter per bucket (not cumulative; the
/// exposition sums them) and the sum in nanoseconds. Recording is a search over 19 bounds and
/// two single-writer counter additions: no lock, no read-modify-write.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [Counter; LATENCY_BOUNDS.len() + 1],
    sum_nanos: Counter,
}

/// A copy of a histogram, summed over cores, for the exposition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Per bucket, not cumulative; the last is above every bound.
    pub buckets: [u64; LATENCY_BOUNDS.len() + 1],
    pub sum_nanos: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    pub fn add(&mut self, other: &HistogramSnapshot) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.sum_nanos += other.sum_nanos;
    }
}

impl LatencyHistogram {
    /// Records one latency. Only the owning core may call this (single writer).
    #[inline]
    pub fn record(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        // Prometheus buckets are "less than or equal": the first bound >= nanos.
        let index = LATENCY_BOUNDS.partition_point(|&(bound, _)| bound < nanos);
        self.buckets[index].inc();
        self.sum_nanos.add(nanos);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut snapshot = HistogramSnapshot {
            sum_nanos: self.sum_nanos.get(),
            ..HistogramSnapshot::default()
        };
        for (out, bucket) in snapshot.buckets.iter_mut().zip(&self.buckets) {
            *out = bucket.get();
        }
        snapshot
    }
}

/// Why the relay refused or dropped something; one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// A receiver too slow for its queue lost its oldest audio.
    SlowReceiver,
    /// A message over the size limit.
    OverLimit,
    /// An apikey missing, malformed or unknown.
    RefusedKey,
    /// Refused because the address made too many failed attempts.
    RateLimited,
    /// A line already held `--max-peers` peers.
    LineFull,
    /// A new line would have been one more than `--max-lines`.
    ServerFull,
    /// A protocol violation (unmasked frame, bad opcode, text message, ...).
    Protocol,
    /// A message over its sender's rate cap (`--line-rate-cap`).
    RateCapped,
    /// A ping not answered: its peer already had as many pongs queued as it may.
    UnansweredPing,
}

impl Drop {
    pub const ALL: [Drop; 9] = [
        Drop::SlowReceiver,
        Drop::OverLimit,
        Drop::RefusedKey,
        Drop::RateLimited,
        Drop::LineFull,
        Drop::ServerFull,
        Drop::Protocol,
        Drop::RateCapped,
        Drop::UnansweredPing,
    ];

    /// The `reason` label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Drop::SlowReceiver => "slow_receiver",
            Drop::OverLimit => "over_limit",
            Drop::RefusedKey => "refused_key",
            Drop::RateLimited => "rate_limited",
            Drop::LineFull => "line_full",
            Drop::ServerFull => "server_full",
            Drop::Protocol => "protocol",
            Drop::RateCapped => "rate_capped",
            Drop::UnansweredPing => "unanswered_ping",
        }
    }
}

/// One core's counters for Moose lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct CoreStats {
    pub ws_messages_in: Counter,
    pub ws_bytes_in: Counter,
    /// Frames, not messages: forwarded messages (one per recipient copy) and the relay's own
    /// pings, pongs and closes.
    pub ws_frames_out: Counter,
    pub ws_bytes_out: Counter,
    pub ws_upgrades: Counter,
    pub ws_handoffs: Counter,
    pub http_requests: Counter,
    pub lines: Gauge,
    pub line_peers: Gauge,
    drops: [Counter; Drop::ALL.len()],
    /// VoRS handshakes that reached the room decision (message 1 decrypted).
    pub vors_handshakes: Counter,
    /// VoRS connections that ended before the room decision (garbage, wrong magic, bad
    /// handshake, oversized netstring, stall).
    pub vors_handshake_failures: Counter,
    pub vors_joins: Counter,
    pub vors_rejects: Counter,
    pub vors_handoffs: Counter,
    pub vors_datagrams_in: Counter,
    pub vors_bytes_in: Counter,
    pub vors_packets_forwarded: Counter,
    pub vors_datagrams_out: Counter,
    pub vors_bytes_out: Counter,
    /// Copies the kernel would not take (socket buffer full): dropped, never queued.
    pub vors_send_dropped: Counter,
    pub vors_rooms: Gauge,
    pub vors_members: Gauge,
    /// Registered members paused for silence at this core's last sweep (no media to them).
    pub vors_members_silent: Gauge,
    /// Times a member was paused for silence.
    pub vors_silence_pauses: Counter,
    vors_drops: [Counter; VorsDrop::ALL.len()],
    /// TCP connections closed as soon as accepted, by reason.
    connections_refused: [Counter; ConnectionRefusal::ALL.len()],
    /// VoRS connections closed before their handshake started, by reason.
    vors_handshakes_refused: [Counter; HandshakeRefusal::ALL.len()],
    /// VoRS members refused because a new room would pass `--max-rooms`.
    pub vors_server_full: Counter,
    /// VoRS members refused because their client made `--max-rooms-per-address` rooms.
    pub vors_too_many_rooms: Counter,
    /// VoRS handshakes waiting for their message 1 on this core, sampled every second.
    pub vors_handshakes_waiting: Gauge,
    /// Waiting VoRS handshakes shut to make room in a full `--max-handshakes` table.
    pub vors_handshakes_evicted: Counter,
    /// VoRS connections closed at a handshake stage's deadline, by stage.
    vors_handshake_deadlines: [Counter; HandshakeStage::ALL.len()],
    /// Time this core spent on the handshakes' expensive steps (message 1 decrypted, message 2
    /// written), in nanoseconds: what `--handshake-cpu-percent` bounds.
    pub vors_handshake_cpu_nanos: Counter,
    /// Clients forgotten by a full per-address table, by table.
    address_evictions: [Counter; AddressTable::ALL.len()],
    /// Connections the relay reset because their peer stopped taking bytes, by reason.
    connections_cut: [Counter; Cut::COUNTED.len()],
    /// VoRS chat messages dropped, and mute changes deferred, for their member's rate.
    vors_rate_limited: [Counter; ControlKind::ALL.len()],
    /// VoRS hellos refused for not being fresh (replayed, stale, untimed), by reason.
    vors_hellos_refused: [Counter; HelloRefusal::ALL.len()],
    /// Client ephemeral keys the replay cache forgot before their window ended, because it
    /// was full.
    pub vors_hello_cache_evictions: Counter,
    /// Receive to send submission of a line message, per recipient copy.
    pub ws_forward_latency: LatencyHistogram,
    /// Receive to send submission of a VoRS media packet (once per packet: one `sendmmsg`
    /// batch serves every recipient).
    pub vors_forward_latency: LatencyHistogram,
    /// The executor's own figures (glommio `executor_stats`), added every second.
    pub executor_task_nanos: Counter,
    pub executor_busy_nanos: Counter,
    pub executor_tasks: Counter,
    pub executor_scheduler_runs: Counter,
    /// 1 while this core's HTTP and VoRS TCP listeners are open, 0 once draining closed them.
    pub accepting: Gauge,
    /// Relay-link datagrams received (cluster; zero on a standalone relay), before any check.
    pub link_datagrams_in: Counter,
    /// Relay-link datagrams accepted and handed to their room.
    pub link_accepted: Counter,
    /// Relay-link datagrams sent: one per media packet per remote relay hosting the room.
    pub link_datagrams_out: Counter,
    /// Relay-link datagrams the kernel would not take (socket buffer full).
    pub link_send_dropped: Counter,
    /// Relay-link datagrams dropped on arrival, by reason.
    link_drops: [Counter; LinkDrop::ALL.len()],
}

pub use moose_proto::vors::room::DropReason as VorsDrop;

use crate::cluster::stats::LinkDrop;
use crate::limits::handshakes::{HandshakeRefusal, HandshakeStage};
use crate::limits::replay::HelloRefusal;
use crate::limits::{AddressTable, ConnectionRefusal};
use crate::outbound::queue::Cut;
pub use crate::vors::control_rate::ControlKind;

impl CoreStats {
    pub fn dropped(&self, reason: Drop) {
        self.drops[reason as usize].inc();
    }

    pub fn drops(&self, reason: Drop) -> u64 {
        self.drops[reason as usize].get()
    }

    pub fn connection_refused(&self, reason: ConnectionRefusal) {
        self.connections_refused[reason as usize].inc();
    }

    pub fn connections_refused(&self, reason: ConnectionRefusal) -> u64 {
        self.connections_refused[reason as usize].get()
    }

    pub fn handshake_refused(&self, reason: HandshakeRefusal) {
        self.vors_handshakes_refused[reason as usize].inc();
    }

    pub fn handshakes_refused(&self, reason: HandshakeRefusal) -> u64 {
        self.vors_handshakes_refused[reason as usize].get()
    }

    pub fn handshake_deadline(&self, stage: HandshakeStage) {
        self.vors_handshake_deadlines[stage as usize].inc();
    }

    pub fn handshake_deadlines(&self, stage: HandshakeStage) -> u64 {
        self.vors_handshake_deadlines[stage as usize].get()
    }

    pub fn address_evicted(&self, table: AddressTable) {
        self.address_evictions[table as usize].inc();
    }

    pub fn address_evictions(&self, table: AddressTable) -> u64 {
        self.address_evictions[table as usize].get()
    }

    /// Counts a connection cut for `reason` (a member's own leaving is not counted).
    pub(crate) fn connection_cut(&self, reason: Cut) {
        if let Some(i) = Cut::COUNTED.iter().position(|r| *r == reason) {
            self.connections_cut[i].inc();
        }
    }

    pub(crate) fn connections_cut(&self, reason: Cut) -> u64 {
        Cut::COUNTED
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.connections_cut[i].get())
    }

    pub fn vors_rate_limited(&self, kind: ControlKind) {
        self.vors_rate_limited[kind as usize].inc();
    }

    pub fn vors_rate_limits(&self, kind: ControlKind) -> u64 {
        self.vors_rate_limited[kind as usize].get()
    }

    pub fn hello_refused(&self, reason: HelloRefusal) {
        self.vors_hellos_refused[reason as usize].inc();
    }

    pub fn hellos_refused(&self, reason: HelloRefusal) -> u64 {
        self.vors_hellos_refused[reason as usize].get()
    }

    pub fn vors_dropped(&self, reason: VorsDrop) {
        if let Some(i) = VorsDrop::ALL.iter().position(|r| *r == reason) {
            self.vors_drops[i].inc();
        }
    }

    pub fn link_dropped(&self, reason: LinkDrop) {
        self.link_drops[reason as usize].inc();
    }

    pub fn link_drops(&self, reason: LinkDrop) -> u64 {
        self.link_drops[reason as usize].get()
    }

    pub fn vors_drops(&self, reason: VorsDrop) -> u64 {
        VorsDrop::ALL
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.vors_drops[i].get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_labels_are_distinct_and_indexed_in_order() {
        for (i, reason) in Drop::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i);
        }
        let mut labels: Vec<_> = Drop::ALL.iter().map(|d| d.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Drop::ALL.len());
        for (i, reason) in ConnectionRefusal::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i);
        }
        for (i, reason) in HandshakeRefusal::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i);
        }
        for (i, stage) in HandshakeStage::ALL.iter().enumerate() {
            assert_eq!(*stage as usize, i);
        }
        for (i, table) in AddressTable::ALL.iter().enumerate() {
            assert_eq!(*table as usize, i);
        }
    }

    #[test]
    fn latencies_fall_in_their_bucket() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_nanos(999)); // <= 1 µs
        h.record(Duration::from_nanos(1_000)); // <= 1 µs: bounds are inclusive
        h.record(Duration::from_nanos(1_001)); // <= 2 µs
        h.record(Duration::from_micros(300)); // <= 500 µs
        h.record(Duration::from_secs(3)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.buckets[0], 2);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.buckets[8], 1);
        assert_eq!(s.buckets[LATENCY_BOUNDS.len()], 1);
        assert_eq!(s.count(), 5);
        assert_eq!(s.sum_nanos, 999 + 1_000 + 1_001 + 300_000 + 3_000_000_000);
    }

    #[test]
    fn bucket_labels_are_the_bounds_in_seconds() {
        for (nanos, label) in LATENCY_BOUNDS {
            let seconds: f64 = label.parse().expect("a number");
            assert!((seconds * 1e9 - nanos as f64).abs() < 1e-3, "{label}");
        }
        assert!(LATENCY_BOUNDS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn counters_add_up() {
        let stats = CoreStats::default();
        stats.dropped(Drop::SlowReceiver);
        stats.dropped(Drop::SlowReceiver);
        stats.ws_bytes_in.add(1000);
        assert_eq!(stats.drops(Drop::SlowReceiver), 2);
        assert_eq!(stats.drops(Drop::OverLimit), 0);
        assert_eq!(stats.ws_bytes_in.get(), 1000);
    }
}
