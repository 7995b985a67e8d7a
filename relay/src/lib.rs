//! Moose Relay: the thread-per-core daemon. See `docs/architecture.md`.
//!
//! `proto` holds the wire formats; this crate owns every socket, executor and timer.
//!
//! The public modules are what `main.rs`, the examples and the fuzz targets use; the rest is
//! private, so `pub` inside it means nothing beyond the crate (`unreachable_pub` keeps it so).

mod accept;
pub mod cli;
pub mod cluster;
pub mod config;
mod drain;
mod handoff;
mod http;
mod limits;
mod line;
pub mod logging;
mod metrics;
mod outbound;
mod owner;
pub mod preflight;
mod ratelimit;
pub mod runtime;
mod shard;
mod sockets;
pub mod stats;
pub mod sys;
pub mod vors;
