//! Per-core counters, written by their own core only and read by the admin endpoint.
//!
//! Each counter has exactly one writer (its core), so an increment is a relaxed load and store,
//! not a locked read-modify-write: as cheap as a plain `u64` on the hot path, yet readable from
//! the admin core without tearing. Each core's block is cache-line aligned so cores never share
//! a line.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
    /// A protocol violation (unmasked frame, bad opcode, text message, ...).
    Protocol,
}

impl Drop {
    pub const ALL: [Drop; 6] = [
        Drop::SlowReceiver,
        Drop::OverLimit,
        Drop::RefusedKey,
        Drop::RateLimited,
        Drop::LineFull,
        Drop::Protocol,
    ];

    /// The `reason` label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Drop::SlowReceiver => "slow_receiver",
            Drop::OverLimit => "over_limit",
            Drop::RefusedKey => "refused_key",
            Drop::RateLimited => "rate_limited",
            Drop::LineFull => "line_full",
            Drop::Protocol => "protocol",
        }
    }
}

/// One core's counters for Moose lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct CoreStats {
    pub ws_messages_in: Counter,
    pub ws_bytes_in: Counter,
    pub ws_messages_out: Counter,
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
    vors_drops: [Counter; VorsDrop::ALL.len()],
}

pub use moose_proto::vors::room::DropReason as VorsDrop;

impl CoreStats {
    pub fn dropped(&self, reason: Drop) {
        self.drops[reason as usize].inc();
    }

    pub fn drops(&self, reason: Drop) -> u64 {
        self.drops[reason as usize].get()
    }

    pub fn vors_dropped(&self, reason: VorsDrop) {
        if let Some(i) = VorsDrop::ALL.iter().position(|r| *r == reason) {
            self.vors_drops[i].inc();
        }
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
