//! The cascade sends one copy of a packet to each other relay hosting the room, whatever its
//! number of members there: a room of six spread 3/2/1 over three relays, everyone talking.
//! Each relay's link datagrams out are its members' packets times the two other relays (not
//! times the remote members), each relay accepts exactly what the others sent it, and every
//! member hears every other member's every packet once.

use std::time::Duration;

use moose_testkit::cluster::Cluster;
use moose_testkit::metrics::wait_metrics;
use moose_testkit::vors_member::{VorsMember, settle, talk};

const WITHIN: Duration = Duration::from_secs(15);
const FRAMES: u64 = 25;

#[test]
fn one_link_datagram_per_packet_and_remote_relay() {
    let cluster = Cluster::start(3, &[]);
    let spread: [(usize, &str); 6] = [
        (0, "ann"),
        (0, "bob"),
        (0, "cat"),
        (1, "dan"),
        (1, "eve"),
        (2, "fay"),
    ];
    let mut members: Vec<VorsMember> = spread
        .iter()
        .map(|&(r, name)| {
            let relay = &cluster.relays[r];
            VorsMember::join(relay.vors, &relay.vors_pubkey, name, "six")
        })
        .collect();
    settle(
        &mut members.iter_mut().collect::<Vec<_>>(),
        WITHIN,
        "everyone's ADD",
        |ms| ms.iter().all(|m| m.peers() == 5),
    );
    for talker in 0..members.len() {
        let (before, rest) = members.split_at_mut(talker);
        let (me, after) = rest.split_first_mut().expect("the talker");
        let mut others: Vec<&mut VorsMember> = before.iter_mut().chain(after.iter_mut()).collect();
        talk(me, &mut others, FRAMES as u32, || {});
    }
    settle(
        &mut members.iter_mut().collect::<Vec<_>>(),
        WITHIN,
        "every packet at every other member",
        |ms| ms.iter().all(|m| m.received() == 5 * FRAMES),
    );
    for m in &members {
        assert_eq!(m.echoes, 0, "{}: no echo", m.name);
        assert_eq!(m.stats().dropped_replayed, 0, "{}: nothing twice", m.name);
    }
    // Members per relay: 3, 2, 1; each relay's packets go to the two others once each.
    for (r, hosted) in [3u64, 2, 1].into_iter().enumerate() {
        let relay = &cluster.relays[r];
        let sent_here = hosted * FRAMES;
        let from_others = (6 - hosted) * FRAMES;
        let m = wait_metrics(
            relay,
            WITHIN,
            "link counters",
            || {},
            |m| m.get("moose_cluster_link_accepted_total") == from_others,
        );
        assert_eq!(
            m.get("moose_cluster_link_datagrams_out_total"),
            2 * sent_here,
            "relay {r}: packets × remote relays, not × remote members"
        );
        assert_eq!(m.get("moose_cluster_link_datagrams_in_total"), from_others);
        assert_eq!(m.get("moose_cluster_link_send_dropped_total"), 0);
        assert_eq!(m.get("moose_vors_packets_forwarded_total"), sent_here);
    }
}
