//! Faults of a cluster under calls in progress (docs/cluster.md, section 6): a relay killed
//! (its members get DEL on the others within 5 s, who keep talking), Redis killed (calls go on
//! losing nothing, joins are refused with a clear ERR and `/readyz` says 503, and the room is
//! whole again once Redis is back), and forged link datagrams during a call (every one counted,
//! none forwarded, the call loses nothing). A relay with another cluster key is refused at
//! start, with exit status 78.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use moose_proto::vors::client::ClientEvent;
use moose_testkit::cluster::Cluster;
use moose_testkit::cluster::free_udp_port;
use moose_testkit::http::http_get;
use moose_testkit::metrics::wait_metrics;
use moose_testkit::relay::{Relay, run_relay};
use moose_testkit::temp::TempDir;
use moose_testkit::vors_member::{VorsMember, settle, talk};

const WITHIN: Duration = Duration::from_secs(10);

fn join(relay: &Relay, name: &str, room: &str) -> VorsMember {
    VorsMember::join(relay.vors, &relay.vors_pubkey, name, room)
}

#[test]
fn a_killed_relay_s_members_get_del_within_5_s_and_the_others_talk_on() {
    let mut cluster = Cluster::start(3, &[]);
    let mut ann = join(&cluster.relays[0], "ann", "kill");
    let mut bob = join(&cluster.relays[1], "bob", "kill");
    let cat = join(&cluster.relays[2], "cat", "kill");
    let cat_sid = cat.sid();
    let mut cat = cat;
    settle(&mut [&mut ann, &mut bob, &mut cat], WITHIN, "ADDs", |ms| {
        ms.iter().all(|m| m.peers() == 2)
    });
    // SIGKILL (the testkit's drop): no retire, the others must notice the silence.
    let killed_at = Instant::now();
    drop(cluster.relays.remove(2));
    settle(
        &mut [&mut ann, &mut bob],
        Duration::from_secs(6),
        "cat's DEL",
        |ms| {
            ms.iter().all(|m| {
                m.events
                    .iter()
                    .any(|e| matches!(e, ClientEvent::PeerRemoved { sid, .. } if *sid == cat_sid))
            })
        },
    );
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(5), "DEL after {took:?}");
    talk(&mut ann, &mut [&mut bob], 25, || {});
    settle(&mut [&mut ann, &mut bob], WITHIN, "ann's frames", |ms| {
        ms[1].received() == 25
    });
    drop(cat);
}

#[test]
fn redis_down_keeps_calls_refuses_joins_and_redis_back_makes_the_room_whole() {
    let mut cluster = Cluster::start(3, &[]);
    let mut ann = join(&cluster.relays[0], "ann", "outage");
    let mut bob = join(&cluster.relays[1], "bob", "outage");
    settle(&mut [&mut ann, &mut bob], WITHIN, "ADDs", |ms| {
        ms.iter().all(|m| m.peers() == 1)
    });
    cluster.redis.kill();
    let admin = cluster.relays[0].admin;
    settle(&mut [&mut ann, &mut bob], WITHIN, "/readyz 503", |_| {
        http_get(admin, "/readyz").0 == 503
    });
    // The call goes on, nothing lost.
    talk(&mut ann, &mut [&mut bob], 50, || {});
    settle(&mut [&mut ann, &mut bob], WITHIN, "ann's frames", |ms| {
        ms[1].received() == 50
    });
    assert_eq!(bob.stats().packets_lost, 0);
    let relay = &cluster.relays[0];
    let refused = VorsMember::try_join(relay.vors, &relay.vors_pubkey, "cat", "outage", "", None);
    assert_eq!(refused.err().as_deref(), Some("cluster unavailable"));
    // Redis back, empty: the relays register again and put their members back.
    cluster.redis.restart();
    for relay in &cluster.relays {
        let admin = relay.admin;
        settle(&mut [&mut ann, &mut bob], WITHIN, "/readyz 200", |_| {
            http_get(admin, "/readyz").0 == 200
        });
    }
    cluster.wait_relays(3);
    let mut cat = join(&cluster.relays[2], "cat", "outage");
    settle(
        &mut [&mut ann, &mut bob, &mut cat],
        WITHIN,
        "the whole room",
        |ms| ms.iter().all(|m| m.peers() == 2),
    );
    talk(&mut cat, &mut [&mut ann, &mut bob], 25, || {});
    settle(
        &mut [&mut ann, &mut bob, &mut cat],
        WITHIN,
        "cat's frames",
        |ms| ms[0].received() == 25 && ms[1].received() == 50 + 25,
    );
}

#[test]
fn forged_link_datagrams_are_counted_and_none_is_forwarded() {
    let cluster = Cluster::start(2, &[]);
    let mut ann = join(&cluster.relays[0], "ann", "forged");
    let mut bob = join(&cluster.relays[1], "bob", "forged");
    settle(&mut [&mut ann, &mut bob], WITHIN, "ADDs", |ms| {
        ms.iter().all(|m| m.peers() == 1)
    });
    let target = cluster.links[1];
    let forger = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut forged = 0u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    // Media from ann, and about 100 forged link datagrams every 10 ms round meanwhile: of
    // every length around a media packet's, header bytes at random, kind 1 on most.
    const FRAMES: u64 = 50;
    talk(&mut ann, &mut [&mut bob], FRAMES as u32, || {
        for _ in 0..100 {
            let mut datagram = vec![0u8; 60 + (forged as usize % 80)];
            for byte in datagram.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *byte = seed as u8;
            }
            datagram[1] = if forged.is_multiple_of(8) { 2 } else { 1 };
            datagram[3] = 0;
            forger.send_to(&datagram, target).expect("send");
            forged += 1;
        }
    });
    settle(&mut [&mut ann, &mut bob], WITHIN, "ann's frames", |ms| {
        ms[1].received() == FRAMES
    });
    let m = wait_metrics(
        &cluster.relays[1],
        WITHIN,
        "every datagram counted",
        || {},
        |m| m.get("moose_cluster_link_datagrams_in_total") == FRAMES + forged,
    );
    assert_eq!(m.get("moose_cluster_link_accepted_total"), FRAMES);
    assert_eq!(m.sum("moose_cluster_link_dropped_total"), forged);
    let stats = bob.stats();
    assert_eq!(stats.packets_lost, 0);
    assert_eq!(
        stats.dropped_unknown_sid + stats.dropped_bad_tag + stats.dropped_malformed,
        0
    );
    assert_eq!(bob.echoes, 0);
}

#[test]
fn a_relay_with_another_cluster_key_is_refused_at_start() {
    let cluster = Cluster::start(1, &[]);
    let dir = TempDir::new("other-key");
    let other = dir.path().join("other.key");
    std::fs::write(&other, format!("{}\n", "a7".repeat(32))).expect("key file");
    let (url, listen) = (
        cluster.redis.url(),
        format!("127.0.0.1:{}", free_udp_port()),
    );
    let vors_key = dir.path().join("vors.key");
    let out = run_relay(
        &[
            "--listen",
            "127.0.0.1:0",
            "--vors-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--vors-key",
            vors_key.to_str().expect("utf-8"),
            "--cluster-redis",
            &url,
            "--cluster-key",
            other.to_str().expect("utf-8"),
            "--cluster-listen",
            &listen,
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("--cluster-key is not this cluster's key"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&"a7".repeat(8)),
        "no key bytes in the error"
    );
    assert_eq!(
        moose_testkit::metrics::Metrics::read(&cluster.relays[0]).get("moose_cluster_relays"),
        1,
        "the refused relay never joined"
    );
}
