//! Moose Relay: the thread-per-core daemon. See `docs/architecture.md`.
//!
//! `proto` holds the wire formats; this crate owns every socket, executor and timer.

pub mod accept;
pub mod cli;
pub mod config;
pub mod drain;
pub mod handoff;
pub mod http;
pub mod limits;
pub mod line;
pub mod logging;
pub mod metrics;
pub mod outbound;
pub mod owner;
pub mod preflight;
pub mod ratelimit;
pub mod runtime;
pub mod shard;
pub mod sockets;
pub mod stats;
pub mod sys;
pub mod vors;
