//! Moose Relay wire formats and protocol state machines.
//!
//! Sans-IO: nothing here opens a socket, spawns a task or reads a clock. Callers pass bytes and
//! the current time in, and take bytes, events and deadlines out. See `docs/architecture.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod apikey;
pub mod cluster;
pub mod http;
pub mod vors;
pub mod ws;
