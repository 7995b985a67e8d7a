//! Close codes (RFC 6455 §7.4) and close frame payloads (§5.5.1).

use super::encode::encode_server_frame;
use super::error::FrameError;
use super::frame::{MAX_CONTROL_PAYLOAD, Opcode};

/// Longest close reason: a control payload minus the 2-byte code.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// A WebSocket close status code (RFC 6455 §7.4): the first two bytes, big-endian, of a
/// close frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (relay shutting down, page closed).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the framing rules (an unmasked client frame, a reserved opcode,
    /// a bad close payload: [`FrameError::close_code`](super::FrameError::close_code)).
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept (e.g. text on a binary-only line).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: "no status received". Reported locally for an empty close payload; never sent.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: "abnormal closure". Reported locally when the TCP connection drops; never sent.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: payload inconsistent with its type (invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: the message breaks a rule of the endpoint that no more specific code covers
    /// (§7.4.1).
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: message over the size limit.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client needed an extension the server did not offer.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: unexpected condition in the server.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: service restart (IANA registry).
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later, e.g. overload (IANA registry).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);

    /// Whether this code may be sent in a close frame: 1000–1003, 1007–1014 (1012–1014 are
    /// in the IANA registry since RFC 6455), and 3000–4999 (registered and private use).
    /// 1004–1006, 1015, everything under 1000 and the unassigned 1016–2999 are refused.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// Parses a close frame's (unmasked) payload: `None` when empty, else the code and the
/// UTF-8 reason, which may be empty.
pub fn parse_close(payload: &[u8]) -> Result<Option<(CloseCode, &str)>, FrameError> {
    let (code, reason) = match payload {
        [] => return Ok(None),
        [hi, lo, reason @ ..] if payload.len() <= MAX_CONTROL_PAYLOAD => {
            (CloseCode(u16::from_be_bytes([*hi, *lo])), reason)
        }
        _ => return Err(FrameError::BadClosePayload),
    };
    if !code.is_valid_on_wire() {
        return Err(FrameError::InvalidCloseCode);
    }
    let reason = std::str::from_utf8(reason).map_err(|_| FrameError::InvalidUtf8)?;
    Ok(Some((code, reason)))
}

/// The payload of a close frame: the code, big-endian, then `reason` cut to at most
/// [`MAX_CLOSE_REASON`] bytes on a character boundary.
pub fn close_payload(code: CloseCode, reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_CONTROL_PAYLOAD);
    write_close_payload(code, reason, &mut out);
    out
}

/// Appends the close payload (see [`close_payload`]) to `out`.
pub fn write_close_payload(code: CloseCode, reason: &str, out: &mut Vec<u8>) {
    debug_assert!(
        code.is_valid_on_wire(),
        "close code {} is not for the wire",
        code.0
    );
    out.extend_from_slice(&code.0.to_be_bytes());
    out.extend_from_slice(truncate_utf8(reason, MAX_CLOSE_REASON).as_bytes());
}

/// Appends a complete unmasked close frame with `code` and `reason`.
pub fn encode_server_close(code: CloseCode, reason: &str, out: &mut Vec<u8>) {
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    let reason = truncate_utf8(reason, MAX_CLOSE_REASON);
    payload[..2].copy_from_slice(&code.0.to_be_bytes());
    payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
    debug_assert!(
        code.is_valid_on_wire(),
        "close code {} is not for the wire",
        code.0
    );
    encode_server_frame(true, Opcode::Close, &payload[..2 + reason.len()], out);
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::decode_server_header;

    #[test]
    fn wire_validity() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            assert!(CloseCode(code).is_valid_on_wire(), "{code}");
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode(code).is_valid_on_wire(), "{code}");
        }
    }

    #[test]
    fn parse_close_cases() {
        assert_eq!(parse_close(b""), Ok(None));
        assert_eq!(
            parse_close(&[0x03, 0xe8]),
            Ok(Some((CloseCode::NORMAL, "")))
        );
        assert_eq!(
            parse_close(b"\x03\xe9bye \xc3\xa9"),
            Ok(Some((CloseCode::GOING_AWAY, "bye é")))
        );
        assert_eq!(parse_close(&[0x03]), Err(FrameError::BadClosePayload));
        let mut long = vec![0x03, 0xe8];
        long.resize(MAX_CONTROL_PAYLOAD, b'a');
        assert!(parse_close(&long).is_ok());
        long.push(b'a');
        assert_eq!(parse_close(&long), Err(FrameError::BadClosePayload));
        assert_eq!(
            parse_close(&[0x03, 0xed]),
            Err(FrameError::InvalidCloseCode),
            "1005"
        );
        assert_eq!(
            parse_close(&[0x03, 0xee]),
            Err(FrameError::InvalidCloseCode),
            "1006"
        );
        assert_eq!(parse_close(b"\x03\xe8\xff"), Err(FrameError::InvalidUtf8));
        assert_eq!(
            parse_close(b"\x03\xe8\xc3"),
            Err(FrameError::InvalidUtf8),
            "cut sequence"
        );
    }

    #[test]
    fn payload_round_trip_and_truncation() {
        let p = close_payload(CloseCode::MESSAGE_TOO_BIG, "message too big");
        assert_eq!(&p[..2], &[0x03, 0xf1]);
        assert_eq!(
            parse_close(&p),
            Ok(Some((CloseCode::MESSAGE_TOO_BIG, "message too big")))
        );
        // 62 two-byte characters = 124 bytes: cut to 122, not into the middle of one.
        let reason = "é".repeat(62);
        let p = close_payload(CloseCode::NORMAL, &reason);
        assert_eq!(p.len(), 2 + 122);
        assert_eq!(
            parse_close(&p).map(|c| c.map(|(_, r)| r.len())),
            Ok(Some(122))
        );
    }

    #[test]
    fn server_close_frame() {
        let mut out = Vec::new();
        encode_server_close(
            CloseCode::PROTOCOL_ERROR,
            "client frame not masked",
            &mut out,
        );
        let h = decode_server_header(&out, 125)
            .expect("valid")
            .expect("complete");
        assert_eq!(
            (h.opcode, h.fin, h.frame_len()),
            (Opcode::Close, true, out.len())
        );
        let parsed = parse_close(&out[h.payload_range()]).expect("valid close");
        assert_eq!(
            parsed,
            Some((CloseCode::PROTOCOL_ERROR, "client frame not masked"))
        );
        let mut long = Vec::new();
        encode_server_close(CloseCode::NORMAL, &"x".repeat(500), &mut long);
        assert_eq!(long.len(), 2 + MAX_CONTROL_PAYLOAD);
    }
}
