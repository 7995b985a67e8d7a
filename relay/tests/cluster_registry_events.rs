//! Room events through a real redis-server: ADD, DEL, MUTED, UNMUTED and CHAT reach the inbox
//! of every other relay hosting the room, and of no relay that does not; a relay new to a room
//! gets the room as it stands; and what Redis holds is never a secret in the clear.
#![allow(clippy::unwrap_used)]

mod cluster_support;

use cluster_support::*;
use moose_proto::cluster::seal::{NONCE_LEN, open_chat, open_member, seal_chat};
use moose_proto::vors::keys::{KEY_WIRE_LEN, hash_password};
use moose_relay::cluster::inbox::EventKind;
use moose_relay::cluster::registry::JoinRequest;
use moose_testkit::redis::Redis;

#[test]
fn events_reach_every_other_relay_hosting_the_room_and_no_other() {
    let (redis, k, [mut a, mut b, mut c]) = three_relays();
    let lobby = room(&k, "lobby");
    // c hosts another room only.
    enter(&mut c, &k, "elsewhere", "cy", 3);
    // b hosts the lobby with a member still joining (no UDP address yet): it must hear too.
    let bob = reserve(&mut b, &simple(&k, "lobby", "bob")).unwrap().sid;
    let ann = enter(&mut a, &k, "lobby", "ann", 1);
    assert!(a.set_muted(lobby, ann, true).unwrap());
    assert!(
        a.set_muted(lobby, ann, true).unwrap(),
        "no change, no event"
    );
    assert!(a.set_muted(lobby, ann, false).unwrap());
    let msg = "hello from relay one";
    let sealed = seal_chat(k.seal(), &lobby, ann, msg, [9; NONCE_LEN]).unwrap();
    assert!(a.chat(lobby, ann, &sealed).unwrap());
    assert!(
        !b.chat(lobby, bob, &sealed).unwrap(),
        "a joining member cannot chat yet"
    );
    assert!(a.leave(lobby, ann).unwrap());
    let got = inbox(&redis, 2);
    let kinds: Vec<&EventKind> = got.iter().map(|e| &e.kind).collect();
    assert_eq!(kinds.len(), 5, "{kinds:?}");
    for event in &got {
        assert_eq!(event.room, lobby);
        assert_eq!(event.from, relay_id(1));
        assert_eq!(event.core, 0, "b's owner core of the room");
    }
    let EventKind::Add {
        sid,
        origin_core,
        muted,
        sealed,
        link,
    } = kinds[0]
    else {
        panic!("ADD first: {kinds:?}");
    };
    assert_eq!((*sid, *origin_core, *muted), (ann, 0, false));
    assert_eq!(
        *link,
        Some(link_addr(1)),
        "a's link address, from the relay table"
    );
    assert_eq!(
        open_member(k.seal(), &lobby, ann, sealed).unwrap(),
        record("ann", 1)
    );
    assert_eq!(
        kinds[1],
        &EventKind::Muted {
            sid: ann,
            muted: true
        }
    );
    assert_eq!(
        kinds[2],
        &EventKind::Muted {
            sid: ann,
            muted: false
        }
    );
    let EventKind::Chat { sid, sealed } = kinds[3] else {
        panic!("CHAT: {kinds:?}");
    };
    assert_eq!(open_chat(k.seal(), &lobby, *sid, sealed).unwrap(), msg);
    assert_eq!(kinds[4], &EventKind::Del { sid: ann });
    assert!(inbox(&redis, 3).is_empty(), "c hosts no lobby member");
    assert!(
        inbox(&redis, 1).is_empty(),
        "nothing echoes to the author's relay"
    );
    // A member that never registered leaves without DEL.
    assert!(b.leave(lobby, bob).unwrap());
    assert!(inbox(&redis, 1).is_empty());
}

#[test]
fn a_relay_new_to_a_room_gets_the_room_as_it_stands() {
    let (_redis, k, [mut a, mut b, mut c]) = three_relays();
    let lobby = room(&k, "lobby");
    let ann = enter(&mut a, &k, "lobby", "ann", 1);
    assert!(a.set_muted(lobby, ann, true).unwrap());
    let _joining = reserve(&mut a, &simple(&k, "lobby", "amy")).unwrap();
    let first = reserve(&mut b, &simple(&k, "lobby", "bob")).unwrap();
    let view = first.view.expect("b is new to the room");
    assert_eq!(view.hosts, vec![(relay_id(1), 0)]);
    assert_eq!(view.members.len(), 1, "announced members only: {view:?}");
    let member = &view.members[0];
    assert_eq!(
        (member.sid, member.relay, member.muted),
        (ann, relay_id(1), true)
    );
    assert_eq!(
        open_member(k.seal(), &lobby, ann, &member.sealed).unwrap(),
        record("ann", 1)
    );
    let second = reserve(&mut b, &simple(&k, "lobby", "ben")).unwrap();
    assert!(second.view.is_none(), "b hosts the room already");
    // A relay with no room of that name yet (two of its joins asked at once) asks for it.
    let asking = JoinRequest {
        want_view: true,
        ..simple(&k, "lobby", "bea")
    };
    let third = reserve(&mut b, &asking).unwrap();
    assert_eq!(
        third.view,
        Some(view.clone()),
        "the view, though b hosts the room"
    );
    // The snapshot says the same, for any relay, at any time; c sees a and b as hosts.
    assert_eq!(b.snapshot(lobby).unwrap(), view);
    let seen_by_c = c.snapshot(lobby).unwrap();
    let mut hosts = seen_by_c.hosts.clone();
    hosts.sort();
    assert_eq!(hosts, vec![(relay_id(1), 0), (relay_id(2), 0)]);
}

#[test]
fn redis_holds_no_secret_in_the_clear() {
    let redis = Redis::start();
    let k = keys(1);
    let (mut a, mut b) = (relay(&redis, 1, &k), relay(&redis, 2, &k));
    let (room_name, username, chat_text) =
        ("secret-room-name", "secret-username", "secret chat text");
    let password = hash_password("secret password");
    let lobby = room(&k, room_name);
    let with_password = |name: &str| join(&k, room_name, name, Some(&password), 0, 1, 64);
    reserve(&mut b, &with_password("bob")).unwrap();
    let sid = reserve(&mut a, &with_password(username)).unwrap().sid;
    // Media keys made of one byte value that appears nowhere else.
    let sealed = moose_proto::cluster::seal::seal_member(
        k.seal(),
        &lobby,
        sid,
        &record(username, 0xC3),
        [0x11; NONCE_LEN],
    )
    .unwrap();
    assert!(a.announce(lobby, sid, &sealed).unwrap());
    let sealed_chat = seal_chat(k.seal(), &lobby, sid, chat_text, [0x12; NONCE_LEN]).unwrap();
    assert!(a.chat(lobby, sid, &sealed_chat).unwrap());
    let dump = dump(&redis);
    assert!(
        dump.len() >= 6,
        "keys: {:?}",
        dump.iter().map(|d| &d.0).collect::<Vec<_>>()
    );
    let key_bytes = [0xC3u8; KEY_WIRE_LEN];
    let derived = [&k.link().0[..], &k.seal().0[..]];
    for (key, bytes) in &dump {
        // The member's keys, or any 8 bytes of them (the ChaCha20 or SipHash half).
        assert!(
            !contains(bytes, &key_bytes[..8]),
            "{key} holds media key bytes"
        );
        for secret in [
            room_name.as_bytes(),
            username.as_bytes(),
            chat_text.as_bytes(),
            &password[..],
        ] {
            assert!(
                !contains(bytes, secret),
                "{key} holds {:?}",
                String::from_utf8_lossy(secret)
            );
        }
        for derived in derived {
            assert!(!contains(bytes, &derived[..8]), "{key} holds a derived key");
        }
        assert!(
            !contains(bytes, &cluster_key(1).0[..8]),
            "{key} holds the cluster key"
        );
    }
    // Yet everything needed is there, sealed: the record opens with the key.
    let everything: Vec<u8> = dump.iter().flat_map(|(_, b)| b.clone()).collect();
    assert!(contains(&everything, &sealed));
}
