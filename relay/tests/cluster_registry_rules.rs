//! The cluster-wide rules, held atomically by the Lua scripts in a real redis-server, with two
//! or three registry clients acting as different relays: a name is unique in its room over
//! every relay, SIDs are unique in the room and come from each relay core's lane, the first
//! member sets the room password and every relay enforces it, the member limit counts every
//! relay, and a wrong cluster key cannot join. Redis's password, and a sentinel's own, come
//! from the settings.
#![allow(clippy::unwrap_used)]

mod cluster_support;

use std::collections::BTreeSet;

use cluster_support::*;
use moose_proto::cluster::PasswordVerifier;
use moose_proto::vors::Sid;
use moose_proto::vors::keys::hash_password;
use moose_proto::vors::room::RESERVED_SID;
use moose_relay::cluster::registry::{Refusal, RegistryError};
use moose_testkit::redis::Redis;

#[test]
fn a_name_taken_through_one_relay_is_refused_through_every_other() {
    let (_redis, k, [mut a, mut b, mut c]) = three_relays();
    let ann = reserve(&mut a, &simple(&k, "lobby", "ann")).expect("first ann");
    assert_eq!(
        reserve(&mut b, &simple(&k, "lobby", "ann")),
        Err(Refusal::NameTaken)
    );
    assert_eq!(
        reserve(&mut c, &simple(&k, "lobby", "ann")),
        Err(Refusal::NameTaken)
    );
    assert_eq!(
        reserve(&mut a, &simple(&k, "lobby", "ann")),
        Err(Refusal::NameTaken),
        "on its own relay too"
    );
    // Another room, and another name, are free.
    assert!(reserve(&mut b, &simple(&k, "other", "ann")).is_ok());
    assert!(reserve(&mut c, &simple(&k, "lobby", "bob")).is_ok());
    // Once ann leaves, the name is free again, through any relay.
    assert!(a.leave(room(&k, "lobby"), ann.sid).unwrap());
    assert!(
        !a.leave(room(&k, "lobby"), ann.sid).unwrap(),
        "a member leaves once"
    );
    assert!(reserve(&mut b, &simple(&k, "lobby", "ann")).is_ok());
    // A relay cannot remove another relay's member.
    let bob_sid = Sid(2);
    assert!(!a.leave(room(&k, "lobby"), bob_sid).unwrap());
}

#[test]
fn sids_are_unique_in_the_room_and_come_from_each_relay_cores_lane() {
    let (_redis, k, [mut a, mut b, mut c]) = three_relays();
    // a and b have 2 cores and the room on core 0: even SIDs, 0 to 254 (128 of them). c has
    // 3 cores and the room on core 1: SIDs 1, 4, ..., 253 (85), some of them even too.
    let mut seen = BTreeSet::new();
    let mut refused = 0;
    for i in 0..600 {
        let (registry, core, lanes) = match i % 3 {
            0 => (&mut a, 0, 2),
            1 => (&mut b, 0, 2),
            _ => (&mut c, 1, 3),
        };
        let request = join(&k, "big", &format!("m{i}"), None, core, lanes, 255);
        match reserve(registry, &request) {
            Ok(reserved) => {
                let sid = reserved.sid;
                assert_eq!(sid.0 % lanes, core, "{sid:?} out of its lane");
                assert_ne!(sid, RESERVED_SID);
                assert!(seen.insert(sid.0), "{sid:?} handed out twice");
            }
            Err(refusal) => {
                assert_eq!(refusal, Refusal::RoomFull, "a lane ran out");
                refused += 1;
            }
        }
    }
    // Every SID of the three lanes was handed out exactly once: the 128 even ones and the
    // 43 odd ones of c's lane (1, 7, ..., 253).
    let reachable: BTreeSet<u8> = (0..255u8).filter(|s| s % 2 == 0 || s % 3 == 1).collect();
    assert_eq!(seen, reachable);
    assert_eq!(seen.len() + refused, 600);
}

#[test]
fn the_first_member_sets_the_password_and_every_relay_enforces_it() {
    let (redis, k, [mut a, mut b, mut c]) = three_relays();
    let secret = hash_password("swordfish");
    let wrong = hash_password("password");
    let with = |name: &str, pw: Option<&[u8; 32]>| join(&k, "vault", name, pw, 0, 1, 64);
    let first = reserve(&mut a, &with("ann", Some(&secret))).expect("sets the password");
    for (registry, name) in [(&mut a, "x1"), (&mut b, "x2"), (&mut c, "x3")] {
        assert_eq!(
            reserve(registry, &with(name, Some(&wrong))),
            Err(Refusal::WrongPassword)
        );
        assert_eq!(
            reserve(registry, &with(name, None)),
            Err(Refusal::WrongPassword)
        );
    }
    // The password is checked before the name: a stranger learns nothing about who is in.
    assert_eq!(
        reserve(&mut b, &with("ann", None)),
        Err(Refusal::WrongPassword)
    );
    assert_eq!(
        reserve(&mut b, &with("ann", Some(&secret))),
        Err(Refusal::NameTaken)
    );
    let bob = reserve(&mut c, &with("bob", Some(&secret))).expect("right password");
    // The room stays closed while anyone is in; emptied, its next first member sets anew.
    assert!(a.leave(room(&k, "vault"), first.sid).unwrap());
    assert_eq!(
        reserve(&mut b, &with("cat", None)),
        Err(Refusal::WrongPassword)
    );
    assert!(c.leave(room(&k, "vault"), bob.sid).unwrap());
    assert!(
        reserve(&mut b, &with("cat", None)).is_ok(),
        "an emptied room is open again"
    );
    assert_eq!(
        reserve(&mut a, &with("dan", Some(&secret))),
        Err(Refusal::WrongPassword)
    );
    // An open room and a closed one look alike in Redis: both hold a 16-byte verifier.
    let mut conn = raw(&redis);
    let pw: Vec<u8> = redis::cmd("HGET")
        .arg(format!("moose:room:{}", room(&k, "vault").to_hex()))
        .arg("pw")
        .query(&mut conn)
        .unwrap();
    assert_eq!(pw, k.password_verifier(&room(&k, "vault"), None).0);
    assert_ne!(PasswordVerifier([0; 16]).0, pw.as_slice());
}

#[test]
fn the_member_limit_counts_every_relay() {
    let (_redis, k, [mut a, mut b, mut c]) = three_relays();
    let limited = |name: &str| join(&k, "small", name, None, 0, 1, 3);
    let ann = reserve(&mut a, &limited("ann")).expect("1");
    reserve(&mut b, &limited("bob")).expect("2");
    reserve(&mut a, &limited("cat")).expect("3");
    for registry in [&mut a, &mut b, &mut c] {
        assert_eq!(reserve(registry, &limited("dan")), Err(Refusal::RoomFull));
    }
    // Joining members count as much as announced ones; one leaving makes a place anywhere.
    assert!(a.leave(room(&k, "small"), ann.sid).unwrap());
    assert!(reserve(&mut c, &limited("dan")).is_ok());
    assert_eq!(reserve(&mut b, &limited("eve")), Err(Refusal::RoomFull));
}

#[test]
fn a_relay_with_another_cluster_key_is_refused_at_start_with_a_clear_message() {
    let redis = Redis::start();
    let _a = relay(&redis, 1, &keys(1));
    let mut wrong =
        moose_relay::cluster::Registry::connect(&info(&redis), relay_id(2), link_addr(2), &keys(2))
            .unwrap();
    let err = wrong.register().expect_err("another key");
    assert!(matches!(err, RegistryError::KeyMismatch), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("--cluster-key") && message.contains("same key"),
        "{message}"
    );
    // It never entered the relay table, so no relay will send it anything.
    let mut conn = raw(&redis);
    let table: Vec<String> = redis::cmd("HKEYS")
        .arg("moose:relays")
        .query(&mut conn)
        .unwrap();
    assert_eq!(table, vec![relay_id(1).to_hex()]);
    // The threads refuse to start with it, too (the relay then exits with status 78).
    let stats = std::sync::Arc::new(moose_relay::cluster::ClusterStats::new());
    let started = moose_relay::cluster::start(
        moose_relay::cluster::ServiceConfig {
            redis: info(&redis),
            advertise: link_addr(3),
            key: cluster_key(2),
            cores: 1,
            max_members: 64,
        },
        stats,
    );
    assert!(matches!(started, Err(RegistryError::KeyMismatch)));
}

#[test]
fn a_redis_with_a_password_takes_it_from_the_settings() {
    let redis = Redis::with_password("redis-pass-0123");
    let k = keys(1);
    let without =
        moose_relay::cluster::Registry::connect(&info(&redis), relay_id(1), link_addr(1), &k)
            .and_then(|mut r| r.register());
    assert!(without.is_err(), "no password, no entry");
    let moose_relay::cluster::RedisEndpoint::Direct(info) = info(&redis) else {
        unreachable!("a direct address")
    };
    let settings = info
        .redis_settings()
        .clone()
        .set_password("redis-pass-0123");
    let info = moose_relay::cluster::RedisEndpoint::Direct(info.set_redis_settings(settings));
    let mut registry =
        moose_relay::cluster::Registry::connect(&info, relay_id(1), link_addr(1), &k).unwrap();
    registry.register().unwrap();
    assert!(
        registry
            .reserve(&simple(&k, "lobby", "ann"))
            .unwrap()
            .is_ok()
    );
}

#[test]
fn sentinels_with_a_password_of_their_own_are_asked_with_it() {
    use moose_relay::cluster::RedisEndpoint;
    use moose_relay::cluster::sentinel::SentinelSet;
    use moose_testkit::sentinel::{MASTER, Sentinels};

    let primary = Redis::start();
    let ha = Sentinels::watch_with_password(&primary, Some("sentinel-pass-0123"));
    let url = format!("redis+sentinel://{}/{MASTER}", ha.sentinel.addr());
    let mut set = SentinelSet::parse(&url).unwrap();
    let k = keys(1);
    let without = moose_relay::cluster::Registry::connect(
        &RedisEndpoint::Sentinel(set.clone()),
        relay_id(1),
        link_addr(1),
        &k,
    );
    assert!(without.is_err(), "the sentinel wants its password");
    set.sentinel_password = Some("sentinel-pass-0123".into());
    let mut registry = moose_relay::cluster::Registry::connect(
        &RedisEndpoint::Sentinel(set),
        relay_id(1),
        link_addr(1),
        &k,
    )
    .unwrap();
    registry.register().unwrap();
    let relays: Vec<String> = redis::cmd("HKEYS")
        .arg("moose:relays")
        .query(&mut raw(&primary))
        .unwrap();
    assert_eq!(
        relays,
        vec![relay_id(1).to_hex()],
        "registered on the primary"
    );
}
