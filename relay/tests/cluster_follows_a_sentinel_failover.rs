//! The cluster's Redis behind Redis Sentinel (docs/operations.md, "Redis high availability"):
//! relays given `redis+sentinel://` find the primary through the sentinels, past a listed
//! sentinel that does not answer. When the primary dies and the sentinel promotes its replica,
//! each relay finds the new primary on its next reconnect, registers again and restores its
//! rooms: the call in progress loses nothing, and members who join afterwards are in the whole
//! room across both relays. The same over TLS (`rediss+sentinel://`): sentinels, replication
//! and relays all speak it.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use moose_testkit::cluster::Cluster;
use moose_testkit::http::http_get;
use moose_testkit::metrics::wait_metrics;
use moose_testkit::redis::Redis;
use moose_testkit::relay::Relay;
use moose_testkit::sentinel::Sentinels;
use moose_testkit::vors_member::{VorsMember, settle, talk};
use moose_testkit::wait::wait_for;

const WITHIN: Duration = Duration::from_secs(10);

fn join(relay: &Relay, name: &str) -> VorsMember {
    VorsMember::join(relay.vors, &relay.vors_pubkey, name, "failover")
}

/// A loopback address where nothing listens (a sentinel that is down).
fn nobody_listening() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

#[test]
fn relays_follow_a_sentinel_failover_and_the_room_stays_whole() {
    failover_keeps_the_room_whole(Redis::start());
}

#[test]
fn relays_follow_a_failover_through_tls_sentinels() {
    failover_keeps_the_room_whole(Redis::with_tls());
}

/// The scenario, with `primary` plain or TLS (the relays then trust its CA).
fn failover_keeps_the_room_whole(primary: Redis) {
    let ha = Sentinels::watch(&primary);
    let url = ha.url_after(nobody_listening());
    assert_eq!(url.starts_with("rediss"), primary.tls_ca().is_some());
    let mut cluster = Cluster::start_through(primary, &url, 2, &[]);
    assert_eq!(ha.named_primary(), Some(cluster.redis.addr()));
    let mut ann = join(&cluster.relays[0], "ann");
    let mut bob = join(&cluster.relays[1], "bob");
    settle(&mut [&mut ann, &mut bob], WITHIN, "ADDs", |ms| {
        ms.iter().all(|m| m.peers() == 1)
    });
    let before: Vec<u64> = cluster
        .relays
        .iter()
        .map(|r| r.metric("moose_cluster_reregistrations_total"))
        .collect();

    // The primary dies; the sentinel promotes the replica.
    cluster.redis.kill();
    talk(&mut ann, &mut [&mut bob], 50, || {});
    wait_for(Duration::from_secs(15), "the replica promoted", || {
        ha.named_primary() == Some(ha.replica.addr())
    });

    // Each relay reaches the new primary through the sentinel and registers again there.
    for (relay, before) in cluster.relays.iter().zip(before) {
        wait_metrics(
            relay,
            WITHIN,
            "registered on the new primary",
            || {},
            |m| {
                m.get("moose_cluster_reregistrations_total") > before
                    && m.get("moose_cluster_state") == 1
            },
        );
        assert_eq!(http_get(relay.admin, "/readyz").0, 200);
    }
    cluster.wait_relays(2);
    settle(&mut [&mut ann, &mut bob], WITHIN, "ann's frames", |ms| {
        ms[1].received() == 50
    });
    assert_eq!(bob.stats().packets_lost, 0, "the call lost nothing");

    // New members, one on each relay, are in the whole room, and hear it.
    let mut cat = join(&cluster.relays[1], "cat");
    let mut dan = join(&cluster.relays[0], "dan");
    let mut room = [&mut ann, &mut bob, &mut cat, &mut dan];
    settle(&mut room, WITHIN, "the whole room", |ms| {
        ms.iter().all(|m| m.peers() == 3)
    });
    let [ann, bob, cat, dan] = room;
    talk(bob, &mut [&mut *ann, &mut *cat, &mut *dan], 25, || {});
    let mut room = [ann, cat, dan];
    settle(&mut room, WITHIN, "bob's frames everywhere", |ms| {
        ms.iter().all(|m| m.received() == 25)
    });
    assert!(room.iter().all(|m| m.echoes == 0), "no echo");
}
