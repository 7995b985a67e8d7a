//! Frame headers (RFC 6455 §5.2): opcodes and the incremental header decoders.
//!
//! ```text
//!  0               1               2               3
//!  F R R R opcode  M len7          extended length (0, 2 or 8 bytes, big-endian)
//!  I S S S (4)     A (7)           ... then the masking key (4 bytes, if MASK)
//!  N V V V         S                   then the payload
//!    1 2 3         K
//! ```

use super::error::FrameError;

/// Largest payload of a control frame (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// Longest header on the wire: 2 + 8-byte length + 4-byte mask.
pub const MAX_HEADER: usize = 14;

const FIN: u8 = 0x80;
const RSV: u8 = 0x70;
const OPCODE: u8 = 0x0f;
const MASK: u8 = 0x80;
const LEN7: u8 = 0x7f;
/// `len7` values that announce a 16-bit or a 64-bit extended length.
const LEN16: u8 = 126;
const LEN64: u8 = 127;

/// A frame's opcode (§5.2). Reserved values are refused while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// 0x0: continues a fragmented text or binary message.
    Continuation,
    /// 0x1: UTF-8 text.
    Text,
    /// 0x2: binary data (the Moose audio stream).
    Binary,
    /// 0x8: close handshake.
    Close,
    /// 0x9: ping; answer with a pong carrying the same payload.
    Ping,
    /// 0xA: the answer to a ping, echoing its payload; an unsolicited pong is a heartbeat
    /// that needs no answer (§5.5.3).
    Pong,
}

impl Opcode {
    /// The opcode for the 4-bit wire value, `None` for the reserved ones.
    pub fn from_u4(bits: u8) -> Option<Opcode> {
        match bits {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xa => Some(Opcode::Pong),
            _ => None,
        }
    }

    /// The 4-bit wire value.
    pub fn as_u4(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xa,
        }
    }

    /// Close, ping and pong: never fragmented, at most 125 bytes, may come between the
    /// fragments of a data message.
    pub fn is_control(self) -> bool {
        self.as_u4() & 0x8 != 0
    }
}

/// A decoded frame header. The payload is `frame[header_len..frame_len()]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Last frame of its message.
    pub fin: bool,
    /// What the frame carries.
    pub opcode: Opcode,
    /// The masking key, present on every client frame and on no server frame.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes (at most the decoder's `max_payload`).
    pub payload_len: usize,
    /// Header length in bytes: 2, 4 or 10, plus 4 when masked.
    pub header_len: usize,
}

impl FrameHeader {
    /// Length of the whole frame, header plus payload.
    pub fn frame_len(&self) -> usize {
        self.header_len.saturating_add(self.payload_len)
    }

    /// Where the payload sits in a buffer that starts with this frame.
    pub fn payload_range(&self) -> std::ops::Range<usize> {
        self.header_len..self.frame_len()
    }
}

/// Decodes the header of a frame sent by a client, which must be masked.
///
/// `Ok(None)`: `buf` holds a valid but incomplete header; call again with more bytes. A
/// short buffer is never an error, but a broken frame is reported from the first byte that
/// shows it. `max_payload` is the message size limit: a longer payload is `TooLarge` as soon
/// as the length field is readable. Rules are checked in wire order: reserved bits, opcode,
/// unfragmented control (all from the first byte), mask bit, control payload length, length
/// encoding, limit.
pub fn decode_client_header(
    buf: &[u8],
    max_payload: usize,
) -> Result<Option<FrameHeader>, FrameError> {
    decode_header(buf, max_payload, true)
}

/// Decodes the header of a frame sent by a server, which must not be masked. Same contract
/// as [`decode_client_header`]; used by our own clients, the benchmark and tests.
pub fn decode_server_header(
    buf: &[u8],
    max_payload: usize,
) -> Result<Option<FrameHeader>, FrameError> {
    decode_header(buf, max_payload, false)
}

fn decode_header(
    buf: &[u8],
    max_payload: usize,
    from_client: bool,
) -> Result<Option<FrameHeader>, FrameError> {
    let Some(&b0) = buf.first() else {
        return Ok(None);
    };
    if b0 & RSV != 0 {
        return Err(FrameError::ReservedBits);
    }
    let opcode = Opcode::from_u4(b0 & OPCODE).ok_or(FrameError::UnknownOpcode)?;
    let fin = b0 & FIN != 0;
    if opcode.is_control() && !fin {
        return Err(FrameError::FragmentedControl);
    }
    let Some(&b1) = buf.get(1) else {
        return Ok(None);
    };
    let masked = b1 & MASK != 0;
    match (from_client, masked) {
        (true, false) => return Err(FrameError::Unmasked),
        (false, true) => return Err(FrameError::Masked),
        _ => {}
    }
    let len7 = b1 & LEN7;
    if opcode.is_control() && usize::from(len7) > MAX_CONTROL_PAYLOAD {
        return Err(FrameError::ControlTooLong);
    }

    let (ext_len, wire_len) = match len7 {
        LEN16 => match be_bytes::<2>(buf, 2) {
            Some(bytes) => (2, u64::from(u16::from_be_bytes(bytes))),
            None => return Ok(None),
        },
        LEN64 => match be_bytes::<8>(buf, 2) {
            Some(bytes) => (8, u64::from_be_bytes(bytes)),
            None => return Ok(None),
        },
        short => (0, u64::from(short)),
    };
    let minimal = match ext_len {
        2 => wire_len >= u64::from(LEN16),
        8 => wire_len > u64::from(u16::MAX),
        _ => true,
    };
    if !minimal {
        return Err(FrameError::NonMinimalLength);
    }
    // §5.2: the top bit of the 64-bit form MUST be 0; such a length is over any limit anyway.
    let payload_len = match usize::try_from(wire_len) {
        Ok(n) if wire_len >> 63 == 0 && n <= max_payload => n,
        _ => return Err(FrameError::TooLarge),
    };

    let mask_at = 2 + ext_len;
    let (mask, header_len) = if masked {
        match be_bytes::<4>(buf, mask_at) {
            Some(key) => (Some(key), mask_at + 4),
            None => return Ok(None),
        }
    } else {
        (None, mask_at)
    };
    Ok(Some(FrameHeader {
        fin,
        opcode,
        mask,
        payload_len,
        header_len,
    }))
}

/// `buf[at..at + N]` as an array, `None` while those bytes have not all arrived.
fn be_bytes<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at + N)
        .and_then(|b| <[u8; N]>::try_from(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn client(buf: &[u8]) -> Result<Option<FrameHeader>, FrameError> {
        decode_client_header(buf, MAX)
    }

    #[test]
    fn opcode_round_trip_and_reserved() {
        for bits in 0..16u8 {
            match Opcode::from_u4(bits) {
                Some(op) => assert_eq!(op.as_u4(), bits),
                None => assert!(matches!(bits, 3..=7 | 11..=15), "{bits}"),
            }
        }
        assert!(Opcode::Close.is_control() && Opcode::Ping.is_control());
        assert!(Opcode::Pong.is_control() && !Opcode::Binary.is_control());
        assert!(!Opcode::Continuation.is_control() && !Opcode::Text.is_control());
    }

    #[test]
    fn decodes_each_length_form() {
        let mask = [1, 2, 3, 4];
        let cases: [(&[u8], usize, usize); 3] = [
            (&[0x82, 0x80 | 125], 125, 6),
            (&[0x82, 0x80 | 126, 0x00, 126], 126, 8),
            (&[0x82, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0], 65536, 14),
        ];
        for (head, len, header_len) in cases {
            let mut buf = head.to_vec();
            buf.extend_from_slice(&mask);
            let h = client(&buf).expect("valid").expect("complete");
            assert_eq!(
                h,
                FrameHeader {
                    fin: true,
                    opcode: Opcode::Binary,
                    mask: Some(mask),
                    payload_len: len,
                    header_len
                }
            );
            assert_eq!(h.frame_len(), header_len + len);
            assert_eq!(h.payload_range(), header_len..header_len + len);
            for n in 0..buf.len() {
                assert_eq!(client(&buf[..n]), Ok(None), "prefix {n} of {len}");
            }
        }
    }

    #[test]
    fn header_errors() {
        let cases: &[(&[u8], FrameError)] = &[
            (&[0xc2], FrameError::ReservedBits),
            (&[0xa2], FrameError::ReservedBits),
            (&[0x92], FrameError::ReservedBits),
            (&[0x83], FrameError::UnknownOpcode),
            (&[0x8b], FrameError::UnknownOpcode),
            (&[0x09], FrameError::FragmentedControl),
            (&[0x82, 0x05], FrameError::Unmasked),
            (&[0x89, 0x80 | 126], FrameError::ControlTooLong),
            (&[0x88, 0x80 | 127], FrameError::ControlTooLong),
            (&[0x82, 0x80 | 126, 0x00, 125], FrameError::NonMinimalLength),
            (
                &[0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
                FrameError::NonMinimalLength,
            ),
            (
                &[0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0],
                FrameError::TooLarge,
            ),
            (
                &[0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0x10, 0, 1],
                FrameError::TooLarge,
            ),
        ];
        for (buf, want) in cases {
            assert_eq!(client(buf), Err(*want), "{buf:x?}");
        }
        assert_eq!(
            decode_server_header(&[0x82, 0x85], MAX),
            Err(FrameError::Masked)
        );
        assert_eq!(
            decode_server_header(&[0x09], MAX),
            Err(FrameError::FragmentedControl)
        );
    }

    #[test]
    fn too_large_as_soon_as_length_is_readable() {
        // 200-byte payload against a 199-byte limit: refused with 4 bytes, before the mask.
        let buf = [0x82, 0x80 | 126, 0x00, 200];
        assert_eq!(decode_client_header(&buf[..3], 199), Ok(None));
        assert_eq!(decode_client_header(&buf, 199), Err(FrameError::TooLarge));
        assert_eq!(
            decode_client_header(&buf, 200),
            Ok(None),
            "mask still missing"
        );
        assert_eq!(
            decode_client_header(&[0x81, 0x8a], 9),
            Err(FrameError::TooLarge)
        );
        assert_eq!(
            decode_client_header(&[0x02, 0x80, 0, 0, 0, 0], 0).map(|h| h.map(|h| h.payload_len)),
            Ok(Some(0))
        );
    }

    #[test]
    fn control_frames_up_to_125_are_fine() {
        let h = client(&[0x8a, 0x80 | 125, 9, 9, 9, 9])
            .expect("valid")
            .expect("complete");
        assert_eq!((h.opcode, h.payload_len, h.fin), (Opcode::Pong, 125, true));
        let h = decode_server_header(&[0x88, 0x00], MAX)
            .expect("valid")
            .expect("complete");
        assert_eq!(
            (h.opcode, h.payload_len, h.mask, h.header_len),
            (Opcode::Close, 0, None, 2)
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_results_are_consistent() {
        // A small deterministic generator stands in for the fuzzer in the normal test run.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let r = next();
            let len = (r % 16) as usize;
            let buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let limit = (r >> 8) as usize % 70_000;
            for from_client in [true, false] {
                if let Ok(Some(h)) = decode_header(&buf, limit, from_client) {
                    assert!(h.header_len <= buf.len() && h.payload_len <= limit);
                    assert_eq!(h.mask.is_some(), from_client);
                    // More bytes never change a decoded header.
                    let mut longer = buf.clone();
                    longer.extend_from_slice(&[0xff; 16]);
                    assert_eq!(decode_header(&longer, limit, from_client), Ok(Some(h)));
                }
            }
        }
    }

    #[test]
    fn fragments_decode_with_their_fin_bit() {
        let h = client(&[0x01, 0x83, 0, 0, 0, 0])
            .expect("valid")
            .expect("complete");
        assert_eq!((h.fin, h.opcode), (false, Opcode::Text));
        let h = client(&[0x80, 0x82, 0, 0, 0, 0])
            .expect("valid")
            .expect("complete");
        assert_eq!((h.fin, h.opcode), (true, Opcode::Continuation));
    }
}
