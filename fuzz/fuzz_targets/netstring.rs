//! Netstrings and netstring lists, nested: decoding, and that whatever decodes re-encodes
//! to the same bytes (one encoding per value).
#![no_main]

use libfuzzer_sys::fuzz_target;
use moose_proto::vors::netstring::{decode, encode, encode_list, list_items};

/// Limits the decoder is called with: the relay's (control, handshake) and the edges.
const LIMITS: [usize; 6] = [0, 1, 10, 2048, 4096, usize::MAX];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, buf)) = data.split_first() else {
        return;
    };
    let max = LIMITS[usize::from(pick) % LIMITS.len()];
    if let Ok(Some((payload, used))) = decode(buf, max) {
        assert!(used <= buf.len() && payload.len() <= max);
        let mut again = Vec::new();
        encode(payload, &mut again);
        assert_eq!(again, &buf[..used]);
        check_list(payload, 4);
    }
});

/// If `payload` is a well-formed list, re-encoding its items gives it back; items are
/// tried as lists too, `depth` levels down.
fn check_list(payload: &[u8], depth: u32) {
    let Ok(items) = list_items(payload).collect::<Result<Vec<_>, _>>() else {
        return;
    };
    let mut outer = Vec::new();
    encode(payload, &mut outer);
    let mut again = Vec::new();
    encode_list(&items, &mut again);
    assert_eq!(again, outer);
    if depth > 0 {
        for item in items {
            check_list(item, depth - 1);
        }
    }
}
