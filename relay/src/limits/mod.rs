//! The limits a public server needs, each a setting with a safe default
//! (docs/configuration.md; docs/architecture.md, "Limits", says how each is counted).
//!
//! [`Limits`] holds what is shared by every core: per-address connection and handshake slots,
//! the handshake rate and apikey failure buckets, and the line and room quotas. Each is
//! touched when a connection, handshake, line or room starts or ends (or an apikey fails),
//! never per message. What is per core lives in the core's `Shard` (the
//! [`handshakes::HandshakeGate`]).

pub(crate) mod address;
pub(crate) mod handshakes;
pub(crate) mod quota;
pub(crate) mod replay;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use moose_proto::vors::freshness::UnixTime;
use moose_proto::vors::handshake::KEY_LEN;

use crate::config::Config;
use crate::ratelimit::AddressBuckets;
use address::AddressSlots;
use quota::Quota;
use replay::{SeenHellos, Sighting};

/// Why a TCP connection was closed as soon as it was accepted; one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefusal {
    /// Its address already had `--max-connections-per-address` connections open.
    PerAddress,
    /// The process was out of file descriptors (EMFILE/ENFILE): accepted on the spare
    /// descriptor and closed at once (see `accept`).
    NoDescriptors,
}

impl ConnectionRefusal {
    pub const ALL: [ConnectionRefusal; 2] = [
        ConnectionRefusal::PerAddress,
        ConnectionRefusal::NoDescriptors,
    ];

    /// The `reason` label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            ConnectionRefusal::PerAddress => "per_address",
            ConnectionRefusal::NoDescriptors => "no_descriptors",
        }
    }
}

/// The limits every core shares.
#[derive(Debug)]
pub(crate) struct Limits {
    /// TCP connections open per address, HTTP/WebSocket and VoRS together.
    pub connections: Arc<AddressSlots>,
    /// VoRS handshakes going on per address.
    pub handshakes_per_address: Arc<AddressSlots>,
    /// VoRS handshakes started per address per minute (`None`: no limit).
    handshake_rate: Option<Mutex<AddressBuckets>>,
    /// Failed apikey attempts per address per minute. One table for every core: the kernel
    /// spreads one address's connections over the cores, so tables per core would let it
    /// make `cores` times as many attempts.
    auth_failures: Mutex<AddressBuckets>,
    /// Moose lines in the process.
    pub lines: Arc<Quota>,
    /// VoRS rooms in the process.
    pub rooms: Quota,
    /// The client ephemeral keys of recent VoRS hellos, for the whole process: a replay
    /// lands on whichever core the kernel picks.
    seen_hellos: Mutex<SeenHellos>,
}

impl Limits {
    pub(crate) fn new(config: &Config) -> Self {
        Limits {
            connections: AddressSlots::new(config.max_connections_per_address),
            handshakes_per_address: AddressSlots::new(config.max_handshakes_per_address),
            handshake_rate: (config.handshakes_per_minute != 0)
                .then(|| Mutex::new(AddressBuckets::new(config.handshakes_per_minute))),
            auth_failures: Mutex::new(AddressBuckets::new(config.auth_failures_per_minute)),
            lines: Arc::new(Quota::new(config.max_lines)),
            rooms: Quota::new(config.max_rooms),
            seen_hellos: Mutex::new(SeenHellos::new(
                config.hello_replay_cache,
                config.hello_freshness.remember_for(),
                rand::random(),
            )),
        }
    }

    /// Looks a VoRS hello's client ephemeral key up at `now` (the relay's wall clock), and
    /// remembers it if it is new (see `replay`).
    pub(crate) fn hello_sighting(&self, ephemeral: &[u8; KEY_LEN], now: UnixTime) -> Sighting {
        // A poisoned table is still a valid one: every update leaves it consistent.
        let mut seen = self.seen_hellos.lock().unwrap_or_else(|e| e.into_inner());
        seen.first_sight(ephemeral, now)
    }

    /// Spends one of `addr`'s handshake tokens; false when it has none left.
    pub(crate) fn spend_handshake_token(&self, addr: IpAddr, now: Instant) -> bool {
        match &self.handshake_rate {
            None => true,
            Some(buckets) => locked(buckets).try_spend(addr, now),
        }
    }

    /// False when `addr` has used up its failed apikey attempts: it is refused before its key
    /// is looked at, so the limit cannot be used to probe keys.
    pub(crate) fn auth_allowed(&self, addr: IpAddr, now: Instant) -> bool {
        locked(&self.auth_failures).allows(addr, now)
    }

    /// Records a failed apikey attempt from `addr`.
    pub(crate) fn spend_auth_failure(&self, addr: IpAddr, now: Instant) {
        locked(&self.auth_failures).spend(addr, now);
    }
}

/// A poisoned table is still a valid one: every update leaves it consistent.
fn locked(buckets: &Mutex<AddressBuckets>) -> MutexGuard<'_, AddressBuckets> {
    buckets.lock().unwrap_or_else(|e| e.into_inner())
}
