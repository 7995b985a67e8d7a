//! Relay-link datagrams (`moose_proto::cluster::link`) and the replay window, as a receiving
//! core runs them: parse, verify, then the origin's window.
//!
//! Input: records `[seq byte][len][datagram]` (`moose_proto_fuzz::records`). Each datagram is
//! parsed and verified under [`LINK_KEY`] for [`LINK_TO`]; whatever parses must re-encode to
//! the same bytes (one encoding per datagram) once given a correct tag, and the window, fed
//! the header's sequence number, must accept it at most once.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use moose_proto::cluster::link::{LINK_TAG_LEN, MAX_LINK_LEN, encode, parse};
use moose_proto::cluster::replay::{REPLAY_WINDOW, ReplayWindow};
use moose_proto_fuzz::{LINK_KEY, LINK_TO, records};

fuzz_target!(|data: &[u8]| {
    let mut window = ReplayWindow::new();
    let mut accepted = HashSet::new();
    for (pick, datagram) in records(data) {
        let Ok(parsed) = parse(datagram) else {
            continue;
        };
        let verified = parsed.verify(&LINK_KEY, LINK_TO);
        // Re-encoding the parsed fields gives the same bytes but for the tag, which is
        // correct exactly when the input's was.
        let mut out = [0u8; MAX_LINK_LEN];
        let n = encode(&LINK_KEY, LINK_TO, &parsed.header, parsed.payload, &mut out)
            .expect("a parsed payload re-encodes");
        assert_eq!(n, datagram.len());
        let body = n - LINK_TAG_LEN;
        assert_eq!(out[..body], datagram[..body]);
        assert_eq!(verified, out[body..n] == datagram[body..]);
        // The window, with the header's number or (by `pick`) a number near the top.
        let seq = if pick & 1 == 0 {
            parsed.header.seq
        } else {
            window.top().saturating_sub(u64::from(pick >> 1))
        };
        let fresh = window.is_fresh(seq);
        assert_eq!(window.accept(seq), fresh);
        if fresh {
            assert!(accepted.insert(seq), "{seq} accepted twice");
            assert!(seq <= window.top() && window.top() - seq < REPLAY_WINDOW);
        }
        assert!(!window.is_fresh(seq));
    }
});
