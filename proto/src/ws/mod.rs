//! RFC 6455 WebSocket framing.
//!
//! Decoders tell "need more bytes" (`Ok(None)`) apart from "bad input" (`Err`), and take the
//! message size limit so that an oversized frame is refused on its header. The relay's hot
//! path is [`decode_client_header`] then [`reframe_in_place`]: a client frame becomes the
//! server frame in the same buffer, unmasked a word at a time, and is shared from there with
//! every recipient. [`Fragments`] tracks message boundaries when a client fragments.
//! No extension is negotiated, so the RSV bits must be zero.

mod close;
mod encode;
mod error;
mod frame;
mod mask;
mod message;

pub use close::{
    CloseCode, MAX_CLOSE_REASON, close_payload, encode_server_close, parse_close,
    write_close_payload,
};
pub use encode::{
    MAX_SERVER_HEADER, encode_client_frame, encode_server_frame, reframe_in_place,
    server_header_len, write_server_header_before,
};
pub use error::FrameError;
pub use frame::{
    FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER, Opcode, decode_client_header,
    decode_server_header,
};
pub use mask::apply_mask;
pub use message::{Fragments, MessagePart};
