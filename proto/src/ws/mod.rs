//! RFC 6455 WebSocket framing.
