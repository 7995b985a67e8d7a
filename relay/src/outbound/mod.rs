//! What the relay sends down one TCP connection: a bounded queue of whole messages (a line
//! peer's WebSocket frames, a VoRS member's control messages) and the writer task that drains
//! it into the socket. Lines and VoRS rooms both use it; neither owns it.

pub(crate) mod queue;
pub(crate) mod writer;
