//! A relay cut off from Redis long enough to be swept, whose member's name was taken through
//! another relay meanwhile: when Redis takes it back, it restores its rooms, ends that
//! member's session (evicted, counted), keeps the others, and the room is whole again with the
//! newcomer (docs/cluster.md, section 6, "A relay swept while cut off").
//!
//! Only the one relay is cut off, by Redis itself: it speaks to Redis as an ACL user of its
//! own, which the test turns off (and disconnects) and on again.

use std::time::Duration;

use moose_proto::vors::Sid;
use moose_proto::vors::client::ClientEvent;
use moose_testkit::cluster::Cluster;
use moose_testkit::metrics::wait_metrics;
use moose_testkit::relay::Relay;
use moose_testkit::vors_member::{VorsMember, settle, talk};

const WITHIN: Duration = Duration::from_secs(10);
const ROOM: &str = "cut-off";

fn join(relay: &Relay, name: &str) -> VorsMember {
    VorsMember::join(relay.vors, &relay.vors_pubkey, name, ROOM)
}

fn removed(member: &VorsMember, sid: Sid) -> bool {
    member
        .events
        .iter()
        .any(|e| matches!(e, ClientEvent::PeerRemoved { sid: s, .. } if *s == sid))
}

/// Runs one Redis command as the default user.
fn redis_command(cluster: &Cluster, args: &[&str]) {
    let mut conn = redis::Client::open(cluster.redis.url())
        .and_then(|c| c.get_connection())
        .expect("connect to the test's redis-server");
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    let _: redis::Value = command.query(&mut conn).expect("redis command");
}

#[test]
fn a_member_whose_name_was_taken_while_its_relay_was_cut_off_is_evicted() {
    let mut cluster = Cluster::start(1, &[]);
    redis_command(
        &cluster,
        &[
            "ACL", "SETUSER", "relay-a", "on", ">pw-a", "~*", "&*", "+@all",
        ],
    );
    let a = cluster.add_relay_as("relay-a", "pw-a", &[]);
    cluster.wait_relays(2);
    let (on_b, on_a) = (&cluster.relays[0], &cluster.relays[a]);
    let mut ann = join(on_a, "ann");
    let mut amy = join(on_a, "amy");
    let mut bob = join(on_b, "bob");
    settle(&mut [&mut ann, &mut amy, &mut bob], WITHIN, "ADDs", |ms| {
        ms.iter().all(|m| m.peers() == 2)
    });
    let (ann_sid, amy_sid) = (ann.sid(), amy.sid());

    // Relay A loses Redis: its user is turned off and its connections closed. Its liveness
    // expires and B sweeps it: bob hears DEL of both of A's members.
    redis_command(&cluster, &["ACL", "SETUSER", "relay-a", "off"]);
    redis_command(&cluster, &["CLIENT", "KILL", "USER", "relay-a"]);
    settle(
        &mut [&mut ann, &mut amy, &mut bob],
        WITHIN,
        "A swept",
        |ms| removed(ms[2], ann_sid) && removed(ms[2], amy_sid),
    );
    // Meanwhile the name "amy" is free in Redis, and taken through B.
    let mut amy_b = join(on_b, "amy");

    // Redis takes A back: A registers again and restores its room. Its amy cannot be put back
    // (the name is taken): her session ends. ann is put back.
    redis_command(&cluster, &["ACL", "SETUSER", "relay-a", "on"]);
    settle(
        &mut [&mut ann, &mut amy, &mut bob, &mut amy_b],
        WITHIN,
        "A's amy evicted and the room whole",
        |ms| {
            ms[1].is_closed()
                && ms[0].peer_sid("amy") == Some(ms[3].sid())
                && ms[0].peers() == 2
                && ms[2].peers() == 2
                && ms[3].peers() == 2
        },
    );
    assert_eq!(
        cluster.relays[a].metric("moose_cluster_evicted_members_total"),
        1
    );
    assert_eq!(
        cluster.relays[a].metric("moose_cluster_reregistrations_total"),
        1
    );
    wait_metrics(
        &cluster.relays[a],
        WITHIN,
        "A ready",
        || {},
        |m| m.get("moose_cluster_state") == 1,
    );
    // The room is one again: ann's frames reach both members on B, once each.
    talk(&mut ann, &mut [&mut bob, &mut amy_b], 25, || {});
    settle(
        &mut [&mut ann, &mut bob, &mut amy_b],
        WITHIN,
        "ann's frames",
        |ms| ms[1].received() == 25 && ms[2].received() == 25,
    );
    assert_eq!(bob.echoes + amy_b.echoes + ann.echoes, 0);
    // B took A's link datagrams from A's first announcement on, not from its next sweep.
    assert_eq!(
        cluster.relays[0].metric("moose_cluster_link_dropped_total{reason=\"unknown_relay\"}"),
        0
    );
    drop(amy);
}
