//! Moose Relay's client side: the `moose-call` VoRS call client, the `moose-bench` load
//! generator, and `moose-baseline`, the minimal forwarder the benchmark measures against.
//!
//! [`audio`] holds everything that touches sound (WAV files, the Opus codec as VoRS profiles
//! it, the per-member playout timeline, tone analysis for tests); [`vors_client`] drives the
//! sans-IO client machine of `moose_proto::vors` over real sockets; [`load`] is the load
//! generator and its reports; [`baseline`] the forwarder; [`flood`] the handshake flood that
//! loads a relay's handshake path while a load measures the calls; [`bind`] the source
//! addresses clients may leave from; [`tui`] is moose-call's full-screen terminal UI.

pub mod audio;
pub mod baseline;
pub mod bind;
pub mod flood;
pub mod load;
pub mod tui;
pub mod vors_client;
