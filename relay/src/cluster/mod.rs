//! The cluster: VoRS rooms across relays, coordinated through Redis (docs/cluster.md).
//!
//! Standalone (no `--cluster-redis`) none of this runs. With a cluster:
//! - [`settings`]: the flags and their validation; [`sentinel`]: the Sentinel form of
//!   `--cluster-redis`, and finding the primary through the sentinels;
//! - [`registry`] and the Lua scripts of `lua/` ([`scripts`]): the cluster-wide rules, each
//!   one atomic script in Redis;
//! - [`inbox`]: this relay's event stream in Redis;
//! - [`mirror`]: what this relay itself has, restored to Redis after an outage;
//! - [`service`]: the two threads (commands, inbox) and the handle and event channels the
//!   cores use: nothing here runs on a core's forwarding loop;
//! - [`link`]: the relay-link checks and sequence numbers a core runs on link datagrams;
//! - [`stats`]: the `moose_cluster_*` figures;
//! - [`startup`]: the link sockets and the threads, started before the executors.

pub mod inbox;
pub mod link;
pub mod mirror;
pub mod registry;
mod scripts;
pub mod sentinel;
pub mod service;
pub mod settings;
pub(crate) mod startup;
pub mod stats;

pub use registry::{RedisEndpoint, Registry, RegistryError};
pub use service::{Cluster, ClusterHandle, CoreEvent, JoinError, ServiceConfig, start};
pub use stats::{ClusterState, ClusterStats};
