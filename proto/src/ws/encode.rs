//! Writing frames: server headers written in place before a payload, the client-to-server
//! reframing of the relay's hot path, and appending encoders for control frames and clients.

use std::ops::Range;

use super::frame::{FrameHeader, Opcode};
use super::mask::apply_mask;

/// Longest unmasked header: 2 bytes + 8-byte extended length.
pub const MAX_SERVER_HEADER: usize = 10;

const FIN: u8 = 0x80;
const MASK: u8 = 0x80;

/// Length of the unmasked header for a payload of `payload_len` bytes, using the minimal
/// length form (§5.2): 2 up to 125 bytes, 4 up to 65535, else 10.
pub fn server_header_len(payload_len: usize) -> usize {
    match payload_len {
        0..=125 => 2,
        126..=0xffff => 4,
        _ => 10,
    }
}

/// Writes an unmasked header into the last [`server_header_len`] bytes of `out` (right
/// aligned, so that it ends where the payload begins) and returns how many bytes it wrote.
///
/// # Panics
/// If `out` is shorter than `server_header_len(payload_len)`: a bug in the caller's buffer
/// arithmetic, never a consequence of peer input.
pub fn write_server_header_before(
    fin: bool,
    opcode: Opcode,
    payload_len: usize,
    out: &mut [u8],
) -> usize {
    let n = server_header_len(payload_len);
    assert!(
        out.len() >= n,
        "{} bytes before the payload, header needs {n}",
        out.len()
    );
    let start = out.len() - n;
    write_header(fin, opcode, false, payload_len, &mut out[start..]);
    n
}

/// Writes b0, b1 and the extended length into `out`, which is exactly that long.
fn write_header(fin: bool, opcode: Opcode, masked: bool, payload_len: usize, out: &mut [u8]) {
    out[0] = if fin { FIN } else { 0 } | opcode.as_u4();
    let mask_bit = if masked { MASK } else { 0 };
    // `as` cannot truncate in the arms below: each is range-checked by server_header_len.
    match out.len() {
        2 => out[1] = mask_bit | payload_len as u8,
        4 => {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        }
        _ => {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        }
    }
}

/// Turns one complete client frame into the same server frame, in place.
///
/// `frame` starts with the frame whose header is `h` and holds all of it (extra bytes after
/// it are left alone). The payload is unmasked in place, and an unmasked header with the
/// same FIN and opcode is written into the tail of the old header: a minimal masked header
/// is always 4 bytes longer than the unmasked one, so it fits. Returns the range of `frame`
/// now holding the server frame. No byte of the payload is copied.
///
/// # Panics
/// If `frame` is shorter than `h.frame_len()`, or `h` was not decoded from this frame.
pub fn reframe_in_place(frame: &mut [u8], h: &FrameHeader) -> Range<usize> {
    let payload = h.payload_range();
    if let Some(mask) = h.mask {
        apply_mask(&mut frame[payload.clone()], mask, 0);
    }
    let n = write_server_header_before(h.fin, h.opcode, h.payload_len, &mut frame[..h.header_len]);
    h.header_len - n..payload.end
}

/// Appends a complete unmasked (server) frame.
pub fn encode_server_frame(fin: bool, opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) {
    let n = server_header_len(payload.len());
    out.reserve(n + payload.len());
    let start = out.len();
    out.resize(start + n, 0);
    write_header(fin, opcode, false, payload.len(), &mut out[start..]);
    out.extend_from_slice(payload);
}

/// Appends a complete masked (client) frame; the caller chooses the mask (RFC 6455 wants it
/// unpredictable, and `proto` reads no randomness).
pub fn encode_client_frame(
    fin: bool,
    opcode: Opcode,
    mask: [u8; 4],
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    let n = server_header_len(payload.len());
    out.reserve(n + 4 + payload.len());
    let start = out.len();
    out.resize(start + n, 0);
    write_header(fin, opcode, true, payload.len(), &mut out[start..]);
    out.extend_from_slice(&mask);
    let payload_at = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[payload_at..], mask, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::{decode_client_header, decode_server_header};

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn header_lengths_at_boundaries() {
        for (len, want) in [
            (0, 2),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
            (usize::MAX, 10),
        ] {
            assert_eq!(server_header_len(len), want, "{len}");
        }
    }

    #[test]
    fn header_is_right_aligned() {
        let mut buf = [0xaa; 12];
        assert_eq!(
            write_server_header_before(true, Opcode::Binary, 300, &mut buf),
            4
        );
        assert_eq!(
            buf,
            [
                0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0x82, 126, 0x01, 0x2c
            ]
        );
        let mut buf = [0; 10];
        assert_eq!(
            write_server_header_before(false, Opcode::Text, 70000, &mut buf),
            10
        );
        assert_eq!(buf, [0x01, 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]);
    }

    #[test]
    #[should_panic(expected = "header needs 4")]
    fn header_without_room_panics() {
        write_server_header_before(true, Opcode::Binary, 200, &mut [0; 3]);
    }

    #[test]
    fn reframe_matches_encoder_at_length_boundaries() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        for len in [0, 1, 125, 126, 65535, 65536] {
            let payload = sample(len);
            for fin in [true, false] {
                let mut frame = Vec::new();
                encode_client_frame(fin, Opcode::Binary, mask, &payload, &mut frame);
                frame.extend_from_slice(b"next");
                let h = decode_client_header(&frame, usize::MAX)
                    .expect("valid")
                    .expect("complete");
                let range = reframe_in_place(&mut frame, &h);
                let mut want = Vec::new();
                encode_server_frame(fin, Opcode::Binary, &payload, &mut want);
                assert_eq!(range.end, h.frame_len(), "len {len}");
                assert_eq!(&frame[range], &want[..], "len {len} fin {fin}");
                assert_eq!(
                    &frame[frame.len() - 4..],
                    b"next",
                    "bytes after the frame untouched"
                );
            }
        }
    }

    #[test]
    fn encoders_round_trip_through_decoders() {
        let payload = sample(300);
        let mut out = Vec::new();
        encode_server_frame(true, Opcode::Ping, &payload[..5], &mut out);
        let h = decode_server_header(&out, 1000)
            .expect("valid")
            .expect("complete");
        assert_eq!((h.opcode, h.payload_len, h.mask), (Opcode::Ping, 5, None));
        assert_eq!(&out[h.payload_range()], &payload[..5]);

        let mut out = Vec::new();
        encode_client_frame(false, Opcode::Text, [9, 8, 7, 6], &payload, &mut out);
        let h = decode_client_header(&out, 1000)
            .expect("valid")
            .expect("complete");
        assert_eq!(
            (h.fin, h.opcode, h.mask, h.header_len),
            (false, Opcode::Text, Some([9, 8, 7, 6]), 8)
        );
        assert_ne!(&out[h.payload_range()], &payload[..], "payload is masked");
        apply_mask(&mut out[h.header_len..], [9, 8, 7, 6], 0);
        assert_eq!(&out[h.header_len..], &payload[..]);
    }
}
