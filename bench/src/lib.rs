//! Moose Relay's client side: the `moose-call` VoRS call client and the `moose-bench` load
//! generator.
//!
//! [`audio`] holds everything that touches sound (WAV files, the Opus codec as VoRS profiles
//! it, the per-member playout timeline, tone analysis for tests); [`vors_client`] drives the
//! sans-IO client machine of `moose_proto::vors` over real sockets.

pub mod audio;
pub mod baseline;
pub mod vors_client;
