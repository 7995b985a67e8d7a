//! Joining the cluster at start (docs/cluster.md, section 11): the relay-link sockets, then
//! the cluster threads, before any executor runs; and what each core takes from them.
//!
//! The link sockets are bound first, so that a relay that cannot listen never enters Redis's
//! table. A wrong cluster key is the one refusal: the relay says so and exits 78.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use flume::Receiver;
use moose_proto::cluster::RelayId;
use moose_proto::cluster::keys::LinkKey;
use tracing::info;

use super::RegistryError;
use super::service::{self, Cluster, CoreEvent, ServiceConfig};
use super::settings::ClusterSettings;
use super::stats::ClusterStats;
use crate::sockets::{self, BindError};

/// Why the relay cannot start as a relay of its cluster.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartupError {
    #[error(transparent)]
    Bind(#[from] BindError),
    /// `--cluster-redis` is not a usable connection (never shows a password).
    #[error("--cluster-redis {url}: {problem}")]
    Redis { url: String, problem: String },
    /// Redis holds another cluster key's check value: exit 78.
    #[error(transparent)]
    KeyMismatch(RegistryError),
}

/// What one core takes from the cluster.
#[derive(Debug)]
pub(crate) struct CoreCluster {
    pub events: Receiver<CoreEvent>,
    /// This core's socket of the link group.
    pub link: OwnedFd,
    pub me: RelayId,
    pub link_key: LinkKey,
}

/// The running cluster: its threads, and each core's share.
#[derive(Debug)]
pub(crate) struct Started {
    pub cluster: Cluster,
    pub cores: Vec<CoreCluster>,
}

/// Binds the link group for `cores` and starts the cluster threads.
pub(crate) fn start(
    settings: &ClusterSettings,
    cores: usize,
    max_members: usize,
) -> Result<Started, StartupError> {
    let (links, link_addr) = sockets::bind_link(cores, settings.listen)?;
    let redis = settings.endpoint().map_err(|problem| StartupError::Redis {
        url: settings.shown_url(),
        problem,
    })?;
    let config = ServiceConfig {
        redis,
        advertise: settings.advertise,
        key: settings.key.clone(),
        cores,
        max_members,
    };
    let mut cluster =
        service::start(config, Arc::new(ClusterStats::new())).map_err(StartupError::KeyMismatch)?;
    let handle = cluster.handle.clone();
    let me = handle.me();
    let link_key = handle.keys().link().clone();
    let events = std::mem::take(&mut cluster.events);
    let cores = events
        .into_iter()
        .zip(links)
        .map(|(events, link)| CoreCluster {
            events,
            link,
            me,
            link_key: link_key.clone(),
        })
        .collect();
    info!(link = %link_addr, "cluster: relay link bound");
    Ok(Started { cluster, cores })
}
