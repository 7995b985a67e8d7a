//! The state of one core: its lines, its counters and its links to the others.

use std::sync::Arc;

use glommio::channels::channel_mesh::Senders;

use crate::accept::spares::SparePool;
use crate::accept::warnings::AcceptWarnings;
use crate::cluster::ClusterHandle;
use crate::config::Config;
use crate::drain::Lifecycle;
use crate::handoff::Handoff;
use crate::limits::Limits;
use crate::limits::budget::HandshakeBudget;
use crate::limits::handshakes::HandshakeGate;
use crate::line::Lines;
use crate::owner::Owners;
use crate::stats::CoreStats;
use crate::vors::keyfile::ServerKey;
use crate::vors::link::CoreLink;
use crate::vors::rooms::VorsCore;

/// Everything one executor owns. Lives in an `Rc` on its core; nothing in it is shared with
/// other cores except the read-only configuration and the single-writer counters.
#[derive(Debug)]
pub(crate) struct Shard {
    pub core: usize,
    pub config: Arc<Config>,
    pub stats: Arc<CoreStats>,
    /// Every core's counters, read by the admin endpoint.
    pub all_stats: Arc<[Arc<CoreStats>]>,
    pub owners: Owners,
    pub lines: Lines,
    /// The limits every core shares (per-address slots, handshake and apikey failure rates,
    /// line and room quotas).
    pub limits: Arc<Limits>,
    /// VoRS handshakes waiting for their message 1 on this core.
    pub handshakes: HandshakeGate,
    /// The share of this core VoRS handshakes may still take.
    pub handshake_budget: HandshakeBudget,
    /// The queue of handshakes waiting for `handshake_budget`: one turn, first come first
    /// served (`vors::listener::budget_turn`).
    pub handshake_turns: glommio::sync::Semaphore,
    /// This core's rate-limited accept warnings.
    pub accept_warnings: AcceptWarnings,
    /// Descriptors held in reserve for every accept loop of the process.
    pub spares: Arc<SparePool>,
    /// Senders to every core's hand-off receiver (`None` with a single core).
    pub mesh: Option<Senders<Handoff>>,
    pub vors: VorsCore,
    /// This core's side of the relay link; `None` on a standalone relay.
    pub link: Option<CoreLink>,
    pub vors_key: Arc<ServerKey>,
    /// Read-only here: is the relay draining?
    pub lifecycle: Arc<Lifecycle>,
}

/// The process-wide state every core gets a handle to, besides configuration and counters.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub lifecycle: Arc<Lifecycle>,
    pub limits: Arc<Limits>,
    pub spares: Arc<SparePool>,
    /// The cluster's handle; `None` on a standalone relay.
    pub cluster: Option<ClusterHandle>,
}

impl Shard {
    pub(crate) fn new(
        core: usize,
        config: Arc<Config>,
        all_stats: Arc<[Arc<CoreStats>]>,
        owners: Owners,
        mesh: Option<Senders<Handoff>>,
        vors_key: Arc<ServerKey>,
        shared: Shared,
    ) -> Self {
        let Shared {
            lifecycle,
            limits,
            spares,
            cluster,
        } = shared;
        let stats = all_stats[core].clone();
        Shard {
            core,
            lines: Lines::new(
                config.max_peers,
                config.queue_bytes,
                stats.clone(),
                limits.lines.clone(),
            ),
            handshakes: HandshakeGate::new(config.max_handshakes),
            handshake_budget: HandshakeBudget::new(
                config.handshake_cpu_percent,
                std::time::Instant::now(),
            ),
            handshake_turns: glommio::sync::Semaphore::new(1),
            accept_warnings: AcceptWarnings::default(),
            spares,
            limits,
            vors: VorsCore::new(core, config.cores(), config.vors_rooms()).with_cluster(cluster),
            // Set by the executor, which makes the link's socket (`runtime`).
            link: None,
            config,
            stats,
            all_stats,
            owners,
            mesh,
            vors_key,
            lifecycle,
        }
    }
}

impl Shard {
    /// A peer's address as a field of an info-level event: present with
    /// `--log-peer-addresses`, or when the log level includes debug; absent otherwise.
    pub(crate) fn peer_at_info(
        &self,
        addr: std::net::SocketAddr,
    ) -> Option<tracing::field::DisplayValue<std::net::SocketAddr>> {
        (self.config.log_peer_addresses || tracing::enabled!(tracing::Level::DEBUG))
            .then(|| tracing::field::display(addr))
    }
}
