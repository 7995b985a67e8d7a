//! Opening a media packet with the sender's keys (what a client does with every datagram),
//! and the tag-only check: a packet opens exactly when its tag checks, and an opened packet
//! seals back to the same bytes.
//!
//! Input: a byte choosing one of two key sets, then the datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moose_proto::vors::packet::{Datagram, MediaPacket, check_tag, classify, open, seal};
use moose_proto_fuzz::media_keys;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, datagram)) = data.split_first() else {
        return;
    };
    let keys = media_keys(pick % 2);
    let _ = classify(datagram, pick & 0x80 != 0);
    let mut opus = Vec::new();
    let opened = open(&keys, datagram, &mut opus);
    assert_eq!(opened.is_ok(), check_tag(datagram, &keys.mac));
    let Ok((pkt, frame)) = opened else {
        assert!(opus.is_empty());
        return;
    };
    let packet = MediaPacket::parse(datagram).expect("opened, so long enough");
    assert_eq!((packet.pkt(), packet.frame()), (pkt, frame));
    let mut sealed = Vec::new();
    match seal(&keys, packet.sid(), pkt, frame, &opus, &mut sealed) {
        Ok(()) => assert_eq!(sealed, datagram),
        // Longer than any Opus packet: the relay forwards it, no client would send it.
        Err(_) => assert!(opus.len() > moose_proto::vors::packet::MAX_OPUS_LEN),
    }
    if let Datagram::Media(p) = classify(datagram, true) {
        assert_eq!(p, packet);
    }
});
