//! What the integration tests of the relay and the bench share: the workspace's programs, a real
//! `moose-relay` on free loopback ports, its `/metrics`, clients of both protocols (a WebSocket
//! client, a VoRS member over raw sockets, `moose-call` processes, `moose-bench` runs), tone
//! files and checks, raw PCM captures, a lossy network path, a private tmux for the terminal UI, nginx with the deploy/ configs, a real redis-server,
//! and headless
//! Chromium.
//!
//! Scenario tests live with what they test: the relay's behaviour in `relay/tests/`, the clients'
//! and the load generator's in `bench/tests/`. Both take everything they share from here.
//!
//! Every wait in the kit is for an event (a line, a metric, an exit) with a deadline. A failed
//! check panics, which is how a test fails: `unwrap` is the short form of that here.
#![allow(clippy::unwrap_used)]

pub mod bench;
pub mod binary;
pub mod browser;
pub mod call;
pub mod cluster;
pub mod http;
pub mod lossy_path;
pub mod metrics;
pub mod monitoring;
pub mod nginx;
pub mod pcm;
pub mod redis;
pub mod relay;
pub mod rng;
pub mod sentinel;
pub mod temp;
pub mod tmux;
pub mod tone;
pub mod vors_member;
pub mod wait;
pub mod workspace;
pub mod ws;
pub mod yaml;
