//! The payload of handshake message 1, `[USERNAME, ROOM, PWHASH or "", SENT_AT]` (or without
//! SENT_AT): decoding, and that a decoded hello re-encodes to one that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moose_proto::vors::hello::Hello;

fuzz_target!(|data: &[u8]| {
    let Ok((hello, sent_at)) = Hello::decode(data) else {
        return;
    };
    let mut encoded = Vec::new();
    hello
        .encode(sent_at, &mut encoded)
        .expect("a decoded hello is within the limits");
    assert_eq!(Hello::decode(&encoded), Ok((hello, sent_at)));
    assert_eq!(hello.to_owned().as_hello(), hello);
});
