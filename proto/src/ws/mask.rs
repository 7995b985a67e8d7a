//! Payload masking (RFC 6455 §5.3): `transformed[i] = original[i] ^ mask[i % 4]`.
//!
//! This runs over every byte a client sends, so it works a machine word at a time: the
//! mask, rotated to the caller's offset and repeated twice, is XORed as one `u64` into each
//! 8-byte chunk (8 is a multiple of 4, so the rotation stays right from chunk to chunk), and
//! the tail of under 8 bytes goes bytewise. Native byte order is used on both sides of the
//! XOR, so the result is the same on any endianness. Safe code only; the compiler
//! vectorises the chunk loop.

/// XORs `payload` in place with `mask`, starting at position `offset % 4` of the mask.
///
/// A payload that arrives in pieces can be unmasked piece by piece: pass, for each piece,
/// the number of payload bytes before it as `offset`. Applying the same mask twice restores
/// the input, so this also masks.
pub fn apply_mask(payload: &mut [u8], mask: [u8; 4], offset: usize) {
    let r = offset % 4;
    let m = [
        mask[r],
        mask[(r + 1) % 4],
        mask[(r + 2) % 4],
        mask[(r + 3) % 4],
    ];
    let word = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);

    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        if let Ok(bytes) = <&mut [u8; 8]>::try_from(chunk) {
            *bytes = (u64::from_ne_bytes(*bytes) ^ word).to_ne_bytes();
        }
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(payload: &mut [u8], mask: [u8; 4], offset: usize) {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[(offset + i) % 4];
        }
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(151).wrapping_add(7))
            .collect()
    }

    #[test]
    fn matches_bytewise_reference_all_lengths_and_offsets() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..=70 {
            for offset in 0..8 {
                let mut fast = sample(len);
                let mut slow = fast.clone();
                apply_mask(&mut fast, mask, offset);
                reference(&mut slow, mask, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
                if len > 0 && mask != [0; 4] {
                    assert_ne!(fast, sample(len), "len {len}: mask changed nothing");
                }
            }
        }
    }

    #[test]
    fn piecewise_equals_whole() {
        let mask = [0xde, 0xad, 0xbe, 0xef];
        let mut whole = sample(1000);
        apply_mask(&mut whole, mask, 0);
        let mut pieces = sample(1000);
        let mut at = 0;
        for piece_len in [1, 3, 7, 8, 9, 13, 64, 255, 640] {
            apply_mask(&mut pieces[at..at + piece_len], mask, at);
            at += piece_len;
        }
        apply_mask(&mut pieces[at..], mask, at);
        assert_eq!(pieces, whole);
    }

    #[test]
    fn twice_is_identity() {
        let mut data = sample(333);
        apply_mask(&mut data, [1, 2, 3, 4], 5);
        apply_mask(&mut data, [1, 2, 3, 4], 5);
        assert_eq!(data, sample(333));
    }
}
