//! Everything that makes a peer's frames unacceptable, and the close code each one earns.

use std::fmt;

use super::close::CloseCode;

/// Why a frame, a close payload or the fragment sequence of a connection is refused. Every
/// variant ends the connection with [`FrameError::close_code`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// RSV1, RSV2 or RSV3 is set; we negotiate no extension that defines them (§5.2).
    ReservedBits,
    /// Opcode 3–7 or 11–15, reserved by §5.2.
    UnknownOpcode,
    /// A control frame (close, ping, pong) without FIN (§5.5).
    FragmentedControl,
    /// A control frame with a payload over 125 bytes (§5.5).
    ControlTooLong,
    /// A client frame without the mask bit (§5.1): close with 1002.
    Unmasked,
    /// A server frame with the mask bit set (§5.1).
    Masked,
    /// The payload length uses the 16- or 64-bit form for a value the shorter form could hold.
    /// §5.2 says the minimal number of bytes MUST be used; every real client does, and one
    /// encoding per length keeps the in-place reframing arithmetic simple to reason about.
    NonMinimalLength,
    /// The payload length is over the caller's limit (or has the 64-bit form's top bit set).
    /// Reported as soon as the length field is readable, before any payload arrives. 1009.
    TooLarge,
    /// A continuation frame outside a fragmented message (§5.4).
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is still open (§5.4).
    ExpectedContinuation,
    /// A close payload of 1 byte, or over 125 bytes (§5.5.1).
    BadClosePayload,
    /// A close code that may not appear on the wire (§7.4): 1005, 1006, 1015, under 1000,
    /// or unassigned.
    InvalidCloseCode,
    /// Text that is not valid UTF-8 (a close reason, or a text message): 1007 (§8.1).
    InvalidUtf8,
}

impl FrameError {
    /// The code of the close frame the connection should be ended with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            FrameError::TooLarge => CloseCode::MESSAGE_TOO_BIG,
            FrameError::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            FrameError::ReservedBits
            | FrameError::UnknownOpcode
            | FrameError::FragmentedControl
            | FrameError::ControlTooLong
            | FrameError::Unmasked
            | FrameError::Masked
            | FrameError::NonMinimalLength
            | FrameError::UnexpectedContinuation
            | FrameError::ExpectedContinuation
            | FrameError::BadClosePayload
            | FrameError::InvalidCloseCode => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// A short reason suitable for the close frame and for logs (never holds peer data).
    pub fn reason(&self) -> &'static str {
        match self {
            FrameError::ReservedBits => "reserved bits set",
            FrameError::UnknownOpcode => "unknown opcode",
            FrameError::FragmentedControl => "fragmented control frame",
            FrameError::ControlTooLong => "control frame over 125 bytes",
            FrameError::Unmasked => "client frame not masked",
            FrameError::Masked => "server frame masked",
            FrameError::NonMinimalLength => "payload length not minimally encoded",
            FrameError::TooLarge => "message too big",
            FrameError::UnexpectedContinuation => "continuation outside a message",
            FrameError::ExpectedContinuation => "new message inside a fragmented message",
            FrameError::BadClosePayload => "bad close payload",
            FrameError::InvalidCloseCode => "invalid close code",
            FrameError::InvalidUtf8 => "invalid UTF-8",
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for FrameError {}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [FrameError; 13] = [
        FrameError::ReservedBits,
        FrameError::UnknownOpcode,
        FrameError::FragmentedControl,
        FrameError::ControlTooLong,
        FrameError::Unmasked,
        FrameError::Masked,
        FrameError::NonMinimalLength,
        FrameError::TooLarge,
        FrameError::UnexpectedContinuation,
        FrameError::ExpectedContinuation,
        FrameError::BadClosePayload,
        FrameError::InvalidCloseCode,
        FrameError::InvalidUtf8,
    ];

    #[test]
    fn close_codes() {
        for e in ALL {
            let want = match e {
                FrameError::TooLarge => 1009,
                FrameError::InvalidUtf8 => 1007,
                _ => 1002,
            };
            assert_eq!(e.close_code(), CloseCode(want), "{e:?}");
            assert!(e.close_code().is_valid_on_wire());
        }
    }

    #[test]
    fn reasons_fit_a_close_frame_and_are_distinct() {
        for (i, e) in ALL.iter().enumerate() {
            assert!(!e.reason().is_empty() && e.reason().len() <= 123);
            assert_eq!(e.to_string(), e.reason());
            assert!(
                ALL[i + 1..].iter().all(|o| o.reason() != e.reason()),
                "{e:?}"
            );
        }
    }
}
