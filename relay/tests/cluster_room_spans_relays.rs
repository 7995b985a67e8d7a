//! One VoRS room over three relays of a cluster (a real redis-server, three real relays, each
//! member on a relay of its own): media from one member reaches each other member exactly once
//! and never comes back; ADD, DEL, mute and chat reach everyone; and the room's rules (unique
//! names, the password, the member limit) hold over every relay.

use std::time::Duration;

use moose_proto::vors::client::ClientEvent;
use moose_testkit::cluster::Cluster;
use moose_testkit::metrics::wait_metrics;
use moose_testkit::relay::Relay;
use moose_testkit::vors_member::{VorsMember, settle, talk};

const WITHIN: Duration = Duration::from_secs(10);

fn join(relay: &Relay, name: &str, room: &str) -> VorsMember {
    VorsMember::join(relay.vors, &relay.vors_pubkey, name, room)
}

fn heard(member: &VorsMember, want: impl Fn(&ClientEvent) -> bool) -> bool {
    member.events.iter().any(want)
}

#[test]
fn media_roster_mute_and_chat_span_three_relays() {
    let cluster = Cluster::start(3, &[]);
    let [r0, r1, r2] = [0, 1, 2].map(|i| &cluster.relays[i]);
    let mut ann = join(r0, "ann", "spanned");
    let mut bob = join(r1, "bob", "spanned");
    let mut cat = join(r2, "cat", "spanned");
    settle(
        &mut [&mut ann, &mut bob, &mut cat],
        WITHIN,
        "everyone's ADD on every relay",
        |ms| ms.iter().all(|m| m.peers() == 2),
    );

    // Media: 50 frames from ann reach bob and cat once each, one link datagram per relay.
    const FRAMES: u64 = 50;
    talk(&mut ann, &mut [&mut bob, &mut cat], FRAMES as u32, || {});
    settle(
        &mut [&mut ann, &mut bob, &mut cat],
        WITHIN,
        "ann's frames on two other relays",
        |ms| ms[1].received() == FRAMES && ms[2].received() == FRAMES,
    );
    wait_metrics(
        r0,
        WITHIN,
        "link datagrams out",
        || {},
        |m| m.get("moose_cluster_link_datagrams_out_total") == 2 * FRAMES,
    );
    for relay in [r1, r2] {
        let m = wait_metrics(
            relay,
            WITHIN,
            "link datagrams in",
            || {},
            |m| m.get("moose_cluster_link_accepted_total") == FRAMES,
        );
        assert_eq!(m.get("moose_cluster_link_datagrams_in_total"), FRAMES);
    }
    for m in [&ann, &bob, &cat] {
        let stats = m.stats();
        assert_eq!(m.echoes, 0, "{}: no echo", m.name);
        assert_eq!(stats.dropped_replayed, 0, "{}: nothing twice", m.name);
        assert_eq!(
            stats.dropped_bad_tag + stats.dropped_unknown_sid,
            0,
            "{}",
            m.name
        );
    }
    assert_eq!(
        ann.received(),
        0,
        "ann hears nobody but herself, and not herself"
    );

    // Chat and mute from bob (relay 1) reach ann and cat.
    let bob_sid = bob.sid();
    bob.send_chat("hello from relay 1");
    bob.set_muted(true);
    settle(
        &mut [&mut ann, &mut bob, &mut cat],
        WITHIN,
        "bob's chat and mute",
        |ms| {
            [&ms[0], &ms[2]].iter().all(|m| {
                heard(m, |e| {
                    matches!(e, ClientEvent::Chat { sid, msg } if *sid == bob_sid && msg == "hello from relay 1")
                }) && heard(m, |e| *e == ClientEvent::PeerMuted(bob_sid))
            })
        },
    );

    // Cat hangs up on relay 2: DEL reaches ann and bob, who go on talking.
    let cat_sid = cat.sid();
    drop(cat);
    settle(&mut [&mut ann, &mut bob], WITHIN, "cat's DEL", |ms| {
        ms.iter().all(|m| {
            m.peers() == 1
                && heard(
                    m,
                    |e| matches!(e, ClientEvent::PeerRemoved { sid, .. } if *sid == cat_sid),
                )
        })
    });
    bob.set_muted(false);
    talk(&mut bob, &mut [&mut ann], 20, || {});
    settle(&mut [&mut ann, &mut bob], WITHIN, "bob's frames", |ms| {
        ms[0].received() == 20
    });
    assert_eq!(bob.echoes + ann.echoes, 0);
}

#[test]
fn names_passwords_and_the_member_limit_hold_over_every_relay() {
    let cluster = Cluster::start(3, &["--max-members", "3"]);
    let relays = &cluster.relays;
    let try_join = |relay: &Relay, name: &str, password: &str| {
        VorsMember::try_join(
            relay.vors,
            &relay.vors_pubkey,
            name,
            "rules",
            password,
            None,
        )
    };
    let mut ann = try_join(&relays[0], "ann", "secret").expect("the first member");
    for relay in relays {
        assert_eq!(
            try_join(relay, "eve", "guess").err().as_deref(),
            Some("wrong password"),
            "every relay checks the password the first member set"
        );
        assert_eq!(
            try_join(relay, "eve", "").err().as_deref(),
            Some("wrong password")
        );
    }
    assert_eq!(
        try_join(&relays[1], "ann", "secret").err().as_deref(),
        Some("name is taken"),
        "a name taken on relay 0 is taken on relay 1"
    );
    let mut bob = try_join(&relays[1], "bob", "secret").expect("bob");
    let mut cat = try_join(&relays[2], "cat", "secret").expect("cat");
    for relay in relays {
        assert_eq!(
            try_join(relay, "dan", "secret").err().as_deref(),
            Some("room is full"),
            "three members over three relays fill a room of three"
        );
    }
    settle(
        &mut [&mut ann, &mut bob, &mut cat],
        WITHIN,
        "the room of three",
        |ms| ms.iter().all(|m| m.peers() == 2),
    );
    // A place freed on one relay is free on the others.
    drop(cat);
    settle(&mut [&mut ann, &mut bob], WITHIN, "cat's DEL", |ms| {
        ms.iter().all(|m| m.peers() == 1)
    });
    let dan = try_join(&relays[0], "dan", "secret").expect("dan takes cat's place");
    drop(dan);
}
