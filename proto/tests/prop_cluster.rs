//! The cluster's codecs over generated values: relay-link datagrams round-trip, verify only
//! where they were sent, refuse every altered byte and never panic on arbitrary input; the
//! replay window agrees with a plain model of "seen, or older than the window"; sealed member
//! records and chat open only in their place.
#![allow(clippy::unwrap_used)]

mod prop_support;

use std::collections::BTreeSet;

use moose_proto::cluster::ids::{RelayId, RoomId};
use moose_proto::cluster::keys::{CLUSTER_KEY_LEN, ClusterKey, ClusterKeys, LinkKey};
use moose_proto::cluster::link::{LinkHeader, MAX_LINK_LEN, encode, parse};
use moose_proto::cluster::replay::{REPLAY_WINDOW, ReplayWindow};
use moose_proto::cluster::seal::{MemberRecord, open_chat, open_member, seal_chat, seal_member};
use moose_proto::vors::Sid;
use moose_proto::vors::keys::SessionKeys;
use moose_proto::vors::packet::{MAX_MEDIA_LEN, MIN_MEDIA_LEN};
use prop_support::config;
use proptest::prelude::*;

fn header() -> impl Strategy<Value = LinkHeader> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<[u8; 8]>(),
        1..u64::MAX,
        any::<[u8; 16]>(),
    )
        .prop_map(|(dest_core, origin_core, origin, seq, room)| LinkHeader {
            dest_core,
            origin_core,
            origin: RelayId(origin),
            seq,
            room: RoomId(room),
        })
}

fn media() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), MIN_MEDIA_LEN..=MAX_MEDIA_LEN)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn link_datagrams_round_trip_and_verify_only_at_their_relay(
        key in any::<[u8; 16]>(),
        to in any::<[u8; 8]>(),
        other in any::<[u8; 8]>(),
        header in header(),
        payload in media(),
        flip in any::<prop::sample::Index>(),
    ) {
        let key = LinkKey(key);
        let mut out = vec![0u8; MAX_LINK_LEN];
        let n = encode(&key, RelayId(to), &header, &payload, &mut out).unwrap();
        let datagram = &out[..n];
        let parsed = parse(datagram).unwrap();
        prop_assert_eq!(parsed.header, header);
        prop_assert_eq!(parsed.payload, &payload[..]);
        prop_assert!(parsed.verify(&key, RelayId(to)));
        prop_assert_eq!(parsed.verify(&key, RelayId(other)), other == to);
        let mut bent = datagram.to_vec();
        let at = flip.index(bent.len());
        bent[at] ^= 1;
        let accepted = parse(&bent).is_ok_and(|p| p.verify(&key, RelayId(to)));
        prop_assert!(!accepted, "altered byte {} accepted", at);
    }

    #[test]
    fn parse_never_panics_and_only_takes_what_its_header_allows(
        bytes in prop::collection::vec(any::<u8>(), 0..1400),
    ) {
        if let Ok(parsed) = parse(&bytes) {
            prop_assert_eq!(bytes[1], 1);
            prop_assert_eq!(bytes[3], 0);
            prop_assert_eq!(parsed.header.dest_core, bytes[0]);
            prop_assert!(parsed.payload.len() >= MIN_MEDIA_LEN);
            prop_assert!(!parsed.verify(&LinkKey([0; 16]), RelayId([0; 8])));
        }
    }

    #[test]
    fn the_replay_window_accepts_each_number_once_and_nothing_too_old(
        steps in prop::collection::vec((0u64..4 * REPLAY_WINDOW, any::<bool>()), 1..400),
    ) {
        let mut window = ReplayWindow::new();
        let mut seen = BTreeSet::new();
        let mut top = 0u64;
        let mut base = 1u64;
        for (offset, jump) in steps {
            // Mostly near the top (reordering), sometimes well ahead (loss).
            let seq = if jump { base + offset } else { (top + 1).saturating_sub(offset % 64).max(1) };
            let model = seq != 0
                && !seen.contains(&seq)
                && (seq > top || top - seq < REPLAY_WINDOW);
            prop_assert_eq!(window.is_fresh(seq), model, "seq {}", seq);
            prop_assert_eq!(window.accept(seq), model, "seq {}", seq);
            if model {
                seen.insert(seq);
                top = top.max(seq);
            }
            base = top + 1;
        }
    }

    #[test]
    fn sealed_records_and_chat_open_only_in_their_place(
        cluster in any::<[u8; CLUSTER_KEY_LEN]>(),
        wire in any::<[u8; 48]>(),
        username in "[a-zA-Z0-9 ]{1,64}",
        msg in ".{0,200}",
        sid in any::<u8>(),
        other_sid in any::<u8>(),
        nonce in any::<[u8; 24]>(),
    ) {
        let keys = ClusterKeys::derive(&ClusterKey(cluster));
        let room = keys.room_id("r");
        let record = MemberRecord { keys: SessionKeys::from_wire(&wire), username };
        let sealed = seal_member(keys.seal(), &room, Sid(sid), &record, nonce).unwrap();
        prop_assert_eq!(open_member(keys.seal(), &room, Sid(sid), &sealed), Ok(record));
        prop_assert_eq!(
            open_member(keys.seal(), &room, Sid(other_sid), &sealed).is_ok(),
            sid == other_sid
        );
        let chat = seal_chat(keys.seal(), &room, Sid(sid), &msg, nonce).unwrap();
        prop_assert_eq!(open_chat(keys.seal(), &room, Sid(sid), &chat), Ok(msg));
        prop_assert!(open_chat(keys.seal(), &keys.room_id("s"), Sid(sid), &chat).is_err());
    }
}
