//! Faults against a real redis-server, through the cluster's own threads: a relay that stops
//! heartbeating (as after SIGKILL) is swept within 5 s and its members get DEL at the other
//! relays; a relay that stops cleanly leaves at once; while Redis is down joins are refused and
//! the relay is unready, and when Redis comes back (empty) the relays register again within
//! 5 s and the rooms are whole; a relay swept while cut off restores its members, and one
//! whose place was taken meanwhile is evicted.
#![allow(clippy::unwrap_used)]

mod cluster_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_support::*;
use futures_lite::future::block_on;
use moose_proto::vors::Sid;
use moose_relay::cluster::inbox::EventKind;
use moose_relay::cluster::registry::{OwnMember, Refusal};
use moose_relay::cluster::service::{CoreEvent, JoinError, ServiceConfig};
use moose_relay::cluster::{Cluster, ClusterState, ClusterStats, start};
use moose_testkit::redis::Redis;

/// A relay's cluster threads on `redis`, with `cores` cores.
fn service(redis: &Redis, n: u8, cores: usize) -> (Cluster, Arc<ClusterStats>) {
    let stats = Arc::new(ClusterStats::new());
    let cluster = start(
        ServiceConfig {
            redis: info(redis),
            advertise: link_addr(n),
            key: cluster_key(1),
            cores,
            max_members: 64,
        },
        stats.clone(),
    )
    .unwrap();
    (cluster, stats)
}

/// The next event on `cluster`'s core `core` that `pick` wants, within `within`.
fn next_event<T>(
    cluster: &Cluster,
    core: usize,
    within: Duration,
    mut pick: impl FnMut(CoreEvent) -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = cluster.events[core]
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no wanted event within {within:?}"));
        if let Some(wanted) = pick(event) {
            return wanted;
        }
    }
}

/// Joins `name` into `room` through `cluster`'s core 0 and announces it; its SID.
fn enter_through(cluster: &Cluster, room: &str, name: &str, n: u8) -> Sid {
    let handle = &cluster.handle;
    let id = handle.room_id(room);
    let reserved = block_on(handle.reserve(id, 0, name, None, false)).unwrap();
    handle.announce(id, reserved.sid, record(name, n));
    reserved.sid
}

#[test]
fn a_silent_relay_is_swept_within_5_s_and_its_members_get_del_everywhere() {
    let redis = Redis::start();
    let (a, _) = service(&redis, 1, 1);
    let (mut b, _) = service(&redis, 2, 1);
    let lobby = a.handle.room_id("lobby");
    let ann = enter_through(&a, "lobby", "ann", 1);
    let bob = enter_through(&b, "lobby", "bob", 2);
    let bob_relay = b.handle.me();
    next_event(&a, 0, Duration::from_secs(5), |e| match e {
        CoreEvent::Add { member, .. } if member.sid == bob => Some(()),
        _ => None,
    });
    // b falls silent as a killed relay does: no DEL, no goodbye, no more heartbeats.
    b.stop(false);
    let silent = Instant::now();
    let del = next_event(&a, 0, Duration::from_secs(5), |e| match e {
        CoreEvent::Del { room, relay, sid } => Some((room, relay, sid)),
        _ => None,
    });
    assert_eq!(del, (lobby, bob_relay, bob));
    assert!(silent.elapsed() < Duration::from_secs(5));
    // Its member is gone from Redis too; a's member stays.
    let k = keys(1);
    let mut probe = relay(&redis, 9, &k);
    let view = probe.snapshot(lobby).unwrap();
    assert_eq!(
        view.members.iter().map(|m| m.sid).collect::<Vec<_>>(),
        vec![ann]
    );
    wait_for(
        Duration::from_secs(2),
        "a counts one other relay (the probe)",
        || (a.handle.stats().swept_relays() == 1).then_some(()),
    );
}

#[test]
fn a_relay_that_stops_cleanly_leaves_at_once() {
    let redis = Redis::start();
    let (a, _) = service(&redis, 1, 1);
    let (mut b, _) = service(&redis, 2, 1);
    let bob = enter_through(&b, "lobby", "bob", 2);
    enter_through(&a, "lobby", "ann", 1);
    b.stop(true);
    let stopped = Instant::now();
    let sid = next_event(&a, 0, Duration::from_secs(2), |e| match e {
        CoreEvent::Del { sid, .. } => Some(sid),
        _ => None,
    });
    assert_eq!(sid, bob);
    assert!(stopped.elapsed() < Duration::from_secs(1), "no TTL wait");
}

#[test]
fn events_reach_the_core_that_owns_the_room() {
    let redis = Redis::start();
    let (a, _) = service(&redis, 1, 1);
    let (b, _) = service(&redis, 2, 2);
    let lobby = a.handle.room_id("lobby");
    // On b the room is owned by core 1 (b's own choice; the cluster records it).
    let bob = block_on(b.handle.reserve(lobby, 1, "bob", None, false)).unwrap();
    assert_eq!(bob.sid.0 % 2, 1, "b's SID is in core 1's lane");
    let ann = enter_through(&a, "lobby", "ann", 1);
    let member = next_event(&b, 1, Duration::from_secs(5), |e| match e {
        CoreEvent::Add { room, member, .. } if room == lobby => Some(member),
        _ => None,
    });
    assert_eq!(
        (member.sid, member.relay, member.relay_core),
        (ann, a.handle.me(), 0)
    );
    assert_eq!(member.record, record("ann", 1));
    a.handle.set_muted(lobby, ann, true);
    a.handle.chat(lobby, ann, "hi bob");
    assert_eq!(
        next_event(&b, 1, Duration::from_secs(5), |e| match e {
            CoreEvent::Muted { sid, muted, .. } => Some((sid, muted)),
            _ => None,
        }),
        (ann, true)
    );
    assert_eq!(
        next_event(&b, 1, Duration::from_secs(5), |e| match e {
            CoreEvent::Chat { sid, msg, .. } => Some((sid, msg)),
            _ => None,
        }),
        (ann, "hi bob".to_owned())
    );
    // Core 0 of b owns no lobby: it gets the relay table (every core does), no room event.
    next_event(&b, 0, Duration::from_secs(2), |e| match e {
        CoreEvent::Relays(live) if live.len() == 2 => Some(()),
        _ => None,
    });
    while let Ok(event) = b.events[0].try_recv() {
        assert!(matches!(event, CoreEvent::Relays(_)), "{event:?} on core 0");
    }
}

#[test]
fn redis_down_refuses_joins_and_redis_back_restores_the_rooms_within_5_s() {
    let mut redis = Redis::start();
    let (a, a_stats) = service(&redis, 1, 1);
    let (b, b_stats) = service(&redis, 2, 1);
    let lobby = a.handle.room_id("lobby");
    let ann = enter_through(&a, "lobby", "ann", 1);
    let bob = enter_through(&b, "lobby", "bob", 2);
    next_event(&a, 0, Duration::from_secs(5), |e| match e {
        CoreEvent::Add { member, .. } if member.sid == bob => Some(()),
        _ => None,
    });
    redis.kill();
    wait_for(Duration::from_secs(3), "both relays see Redis down", || {
        (a_stats.state() == ClusterState::Down && b_stats.state() == ClusterState::Down)
            .then_some(())
    });
    assert!(!a_stats.ready());
    let refused = block_on(a.handle.reserve(lobby, 0, "cat", None, false));
    assert_eq!(refused, Err(JoinError::Unavailable));
    assert_eq!(JoinError::Unavailable.reason(), "cluster unavailable");
    assert!(a_stats.joins_unavailable() >= 1);
    // Changes during the outage are kept and made when Redis is back.
    a.handle.set_muted(lobby, ann, true);
    redis.restart();
    let back = Instant::now();
    wait_for(
        Duration::from_secs(5),
        "both relays registered again",
        || {
            (a_stats.state() == ClusterState::Up && b_stats.state() == ClusterState::Up)
                .then_some(())
        },
    );
    assert!(back.elapsed() < Duration::from_secs(5));
    assert!(a_stats.reregistrations() >= 1 && b_stats.reregistrations() >= 1);
    // The room is whole again in the (emptied, restarted) Redis: both members, ann muted.
    let k = keys(1);
    let mut probe = relay(&redis, 9, &k);
    let view = wait_for(Duration::from_secs(5), "both members back in Redis", || {
        let view = probe.snapshot(lobby).unwrap();
        (view.members.len() == 2).then_some(view)
    });
    let ann_there = view.members.iter().find(|m| m.sid == ann).expect("ann");
    assert!(ann_there.muted);
    // Each relay's core got the other's side of the room again.
    next_event(&a, 0, Duration::from_secs(5), |e| match e {
        CoreEvent::Resync { room, view }
            if room == lobby && view.members.iter().any(|m| m.sid == bob) =>
        {
            Some(())
        }
        CoreEvent::Add { member, .. } if member.sid == bob => Some(()),
        _ => None,
    });
    // And joins work again, with the rules intact: ann's name is still taken.
    assert_eq!(
        block_on(b.handle.reserve(lobby, 0, "ann", None, false)),
        Err(JoinError::Refused(Refusal::NameTaken))
    );
    assert!(block_on(b.handle.reserve(lobby, 0, "cat", None, false)).is_ok());
}

#[test]
fn a_relay_swept_while_cut_off_restores_its_members_and_loses_those_taken_meanwhile() {
    let redis = Redis::start();
    let k = keys(1);
    let (mut a, mut b) = (relay(&redis, 1, &k), relay(&redis, 2, &k));
    let lobby = room(&k, "lobby");
    let ann = enter(&mut a, &k, "lobby", "ann", 1);
    let amy = reserve(&mut a, &simple(&k, "lobby", "amy")).unwrap().sid;
    enter(&mut b, &k, "lobby", "bob", 2);
    // a is cut off: its liveness expires and b sweeps it.
    let mut conn = raw(&redis);
    let _: () = redis::cmd("DEL")
        .arg(format!("moose:alive:{}", relay_id(1).to_hex()))
        .query(&mut conn)
        .unwrap();
    assert_eq!(b.sweep().unwrap().swept, vec![relay_id(1)]);
    assert!(
        b.snapshot(lobby)
            .unwrap()
            .members
            .iter()
            .all(|m| m.relay != relay_id(1))
    );
    // Meanwhile amy's name is taken through b.
    reserve(&mut b, &simple(&k, "lobby", "amy")).unwrap();
    // a finds out at its next heartbeat, registers again and restores its members.
    assert!(matches!(
        a.heartbeat(),
        Err(moose_relay::cluster::RegistryError::Gone)
    ));
    a.register().unwrap();
    let sealed = moose_proto::cluster::seal::seal_member(
        k.seal(),
        &lobby,
        ann,
        &record("ann", 1),
        [1; moose_proto::cluster::seal::NONCE_LEN],
    )
    .unwrap();
    let mine = [
        OwnMember {
            sid: ann,
            tag: k.name_tag(&lobby, "ann"),
            muted: false,
            sealed: Some(sealed),
        },
        OwnMember {
            sid: amy,
            tag: k.name_tag(&lobby, "amy"),
            muted: false,
            sealed: None,
        },
    ];
    let verifier = k.password_verifier(&lobby, None);
    let evicted = a.reconcile(lobby, 0, verifier, 64, &mine).unwrap();
    assert_eq!(evicted, vec![amy], "amy's name went to b meanwhile");
    let view = b.snapshot(lobby).unwrap();
    assert!(
        view.members
            .iter()
            .any(|m| m.sid == ann && m.relay == relay_id(1))
    );
    // b (which learnt of ann when it joined the room) heard DEL at the sweep, ADD at the
    // restore, and nothing of amy, who never registered.
    let events: Vec<_> = inbox(&redis, 2).into_iter().map(|e| e.kind).collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], EventKind::Del { sid: ann });
    assert!(matches!(&events[1], EventKind::Add { sid, .. } if *sid == ann));
    // A second reconcile with nothing changed publishes nothing more.
    let before = inbox(&redis, 2).len();
    assert!(
        a.reconcile(lobby, 0, verifier, 64, &mine[..1])
            .unwrap()
            .is_empty()
    );
    assert_eq!(inbox(&redis, 2).len(), before);
}

#[test]
fn a_relay_that_finds_another_clusters_key_after_redis_was_emptied_stays_down() {
    let redis = Redis::start();
    let (a, a_stats) = service(&redis, 1, 1);
    enter_through(&a, "lobby", "ann", 1);
    // Redis loses everything, and a relay with another key registers first.
    let mut conn = raw(&redis);
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
    let _intruder = relay(&redis, 7, &keys(2));
    wait_for(
        Duration::from_secs(5),
        "a refuses the other key and is down",
        || (a_stats.state() == ClusterState::Down).then_some(()),
    );
    assert!(!a_stats.ready());
    assert_eq!(
        block_on(
            a.handle
                .reserve(a.handle.room_id("lobby"), 0, "bob", None, false)
        ),
        Err(JoinError::Unavailable)
    );
    // It put nothing of its own into the other cluster's Redis.
    let table: Vec<String> = redis::cmd("HKEYS")
        .arg("moose:relays")
        .query(&mut conn)
        .unwrap();
    assert_eq!(table, vec![relay_id(7).to_hex()]);
}
