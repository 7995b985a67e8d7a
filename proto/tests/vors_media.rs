//! VoRS media end to end through the deterministic harness: order, loss, replays, mute,
//! chat, and forgeries at the relay's edge.
#![allow(clippy::unwrap_used)]

mod vors_harness;

use std::net::SocketAddr;
use std::time::Duration;

use moose_proto::vors::client::ClientEvent;
use moose_proto::vors::room::{DropReason, EdgeVerdict, RoomConfig};
use vors_harness::{Link, Sim};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A room with `names` joined and settled.
fn room_with(seed: u64, names: &[&str]) -> Sim {
    let mut sim = Sim::new(seed, RoomConfig::default());
    for name in names {
        let i = sim.connect(name, "");
        assert!(
            sim.run_until(ms(2000), |s| s.members[i].joined_sid().is_some()),
            "{name} joined"
        );
    }
    sim.run_for(ms(100));
    sim
}

/// PKTs strictly rising, and every payload is the frame its FRAME field names.
fn assert_in_order_and_intact(sim: &Sim, receiver: usize, sender: usize) -> usize {
    let sid = sim.members[sender].joined_sid().unwrap();
    let got: Vec<_> = sim.members[receiver]
        .received
        .iter()
        .filter(|(r, _)| r.sid == sid)
        .collect();
    for pair in got.windows(2) {
        assert!(
            pair[0].0.pkt < pair[1].0.pkt,
            "{:?} then {:?}",
            pair[0].0,
            pair[1].0
        );
    }
    for (r, opus) in &got {
        assert_eq!(opus, format!("m{sender}f{}", r.frame).as_bytes());
    }
    got.len()
}

#[test]
fn reordered_packets_are_dropped_and_the_rest_arrive_in_order() {
    let mut sim = room_with(11, &["alice", "bob"]);
    // 60 ms of jitter against 20 ms frames: packets overtake each other both ways.
    sim.up = Link {
        jitter: ms(60),
        ..sim.up
    };
    sim.down = Link {
        jitter: ms(60),
        ..sim.down
    };
    sim.members[0].speaking = true;
    sim.run_for(ms(10_000));
    sim.members[0].speaking = false;
    sim.run_for(ms(200));

    let sent = sim.members[0].sent_media.len() as u64;
    assert_eq!(sent, 500);
    let room = sim.room.stats();
    let relay_reordered = room.dropped(DropReason::Reordered);
    assert!(relay_reordered > 0, "the jitter reordered nothing upstream");
    assert_eq!(
        room.forwarded_packets + relay_reordered + room.dropped(DropReason::Replayed),
        sent
    );

    let received = assert_in_order_and_intact(&sim, 1, 0) as u64;
    let bob = sim.members[1].client.stats();
    assert!(
        bob.dropped_reordered > 0,
        "the jitter reordered nothing downstream"
    );
    assert_eq!(received + bob.dropped_reordered, room.forwarded_copies);
    assert_eq!(
        bob.dropped_bad_tag + bob.dropped_unknown_sid + bob.dropped_malformed,
        0
    );
}

#[test]
fn lost_packets_are_counted_by_pkt_gaps() {
    let mut sim = room_with(12, &["alice", "bob"]);
    sim.up = Link {
        loss: 0.1,
        ..sim.up
    };
    sim.down = Link {
        loss: 0.1,
        ..sim.down
    };
    sim.members[0].speaking = true;
    sim.run_for(ms(20_000));
    sim.members[0].speaking = false;
    sim.run_for(ms(100));

    let received = assert_in_order_and_intact(&sim, 1, 0);
    let got = &sim.members[1].received;
    let span = u64::from(got.last().unwrap().0.pkt - got.first().unwrap().0.pkt + 1);
    let bob = sim.members[1].client.stats();
    assert_eq!(bob.packets_received + bob.packets_lost, span);
    // 1000 packets through 10 % loss each way: about 810 arrive.
    assert!(
        (700..=900).contains(&received),
        "{received} of 1000 arrived"
    );
}

#[test]
fn replays_die_at_the_relay_and_at_the_client() {
    let mut sim = room_with(13, &["alice", "bob"]);
    sim.members[0].speaking = true;
    sim.run_for(ms(1000));
    sim.members[0].speaking = false;
    sim.run_for(ms(100));
    let alice = sim.members[0].addr;
    let old = sim.members[0].sent_media[10].clone();
    let last = sim.members[0].sent_media.last().unwrap().clone();
    assert_eq!(
        sim.inject_to_relay(alice, &old),
        EdgeVerdict::Drop(DropReason::Reordered)
    );
    assert_eq!(
        sim.inject_to_relay(alice, &last),
        EdgeVerdict::Drop(DropReason::Replayed)
    );
    let before = sim.members[1].received.len();
    assert_eq!(sim.inject_to_client(1, &last), None);
    assert_eq!(sim.inject_to_client(1, &old), None);
    assert_eq!(sim.members[1].received.len(), before);
    let bob = sim.members[1].client.stats();
    assert_eq!((bob.dropped_replayed, bob.dropped_reordered), (1, 1));
}

#[test]
fn muted_frames_are_counted_but_not_sent() {
    let mut sim = room_with(14, &["alice", "bob"]);
    sim.members[0].speaking = true;
    sim.run_for(ms(500));
    let muted_at = sim.now;
    sim.members[0].client.set_muted(muted_at, true);
    sim.run_for(ms(1000));
    // A newcomer learns that alice is muted right after her ADD.
    let c = sim.connect("carol", "");
    assert!(sim.run_until(ms(2000), |s| s.members[c].joined_sid().is_some()));
    sim.run_for(ms(100));
    let unmuted_at = sim.now;
    sim.members[0].client.set_muted(unmuted_at, false);
    sim.run_for(ms(500));

    let sid_a = sim.members[0].joined_sid().unwrap();
    let bob: Vec<_> = sim.members[1].client_events().cloned().collect();
    assert!(
        bob.contains(&ClientEvent::PeerMuted(sid_a))
            && bob.contains(&ClientEvent::PeerUnmuted(sid_a))
    );
    let carol: Vec<_> = sim.members[c].client_events().cloned().collect();
    let add_at = carol
        .iter()
        .position(|e| matches!(e, ClientEvent::PeerAdded { sid, .. } if *sid == sid_a));
    assert_eq!(
        carol.get(add_at.unwrap() + 1),
        Some(&ClientEvent::PeerMuted(sid_a))
    );

    assert_in_order_and_intact(&sim, 1, 0);
    let got = &sim.members[1].received;
    let gap = got
        .windows(2)
        .find(|w| w[1].0.frame - w[0].0.frame > 1)
        .unwrap();
    assert_eq!(
        gap[1].0.pkt,
        gap[0].0.pkt + 1,
        "no packet was sent while muted"
    );
    assert_eq!(gap[1].0.lost, 0);
    // FRAME kept counting 20 ms frames through the muted time.
    let muted_frames = ((unmuted_at - muted_at).as_millis() / 20) as u32;
    let skipped = gap[1].0.frame - gap[0].0.frame;
    assert!(
        skipped.abs_diff(muted_frames) <= 1,
        "FRAME jumped by {skipped}, muted {muted_frames}"
    );
    assert!(muted_frames >= 50);
    assert_eq!(
        sim.members[0].client.stats().frames,
        u64::from(sim.members[0].frames_made)
    );
}

#[test]
fn chat_is_relayed_with_the_author_sid_to_the_others_only() {
    let mut sim = room_with(15, &["alice", "bob", "carol"]);
    let now = sim.now;
    sim.members[0].client.send_chat(now, "hello, room").unwrap();
    sim.run_for(ms(50));
    let sid_a = sim.members[0].joined_sid().unwrap();
    let chat = ClientEvent::Chat {
        sid: sid_a,
        msg: "hello, room".to_owned(),
    };
    for i in [1, 2] {
        assert_eq!(
            sim.members[i]
                .client_events()
                .filter(|e| **e == chat)
                .count(),
            1
        );
    }
    assert!(
        !sim.members[0]
            .client_events()
            .any(|e| matches!(e, ClientEvent::Chat { .. }))
    );
}

#[test]
fn every_member_hears_every_other_and_never_itself() {
    let mut sim = room_with(16, &["alice", "bob", "carol"]);
    sim.up = Link {
        loss: 0.02,
        jitter: ms(5),
        ..sim.up
    };
    for m in &mut sim.members {
        m.speaking = true;
    }
    sim.run_for(ms(2000));
    for m in &mut sim.members {
        m.speaking = false;
    }
    sim.run_for(ms(100));
    for receiver in 0..3 {
        let own = sim.members[receiver].joined_sid().unwrap();
        assert!(
            sim.members[receiver]
                .received
                .iter()
                .all(|(r, _)| r.sid != own)
        );
        for sender in (0..3).filter(|s| *s != receiver) {
            let n = assert_in_order_and_intact(&sim, receiver, sender);
            assert!(n > 80, "{receiver} heard {n} packets from {sender}");
        }
        assert_eq!(sim.members[receiver].client.stats().dropped_unknown_sid, 0);
    }
}

#[test]
fn forgeries_die_at_the_edge_with_their_reason() {
    let mut sim = room_with(17, &["alice", "bob"]);
    sim.members[0].speaking = true;
    sim.run_for(ms(200));
    sim.members[0].speaking = false;
    sim.run_for(ms(100));
    let alice = sim.members[0].addr;
    let stranger = SocketAddr::from(([192, 0, 2, 66], 4444));
    let genuine = sim.members[0].sent_media.last().unwrap().clone();
    let mut newer = genuine.clone();
    newer[3] = newer[3].wrapping_add(100); // a higher PKT, so only the tag can refuse it
    let received = sim.members[1].received.len();

    assert_eq!(
        sim.inject_to_relay(stranger, &genuine),
        EdgeVerdict::Drop(DropReason::UnknownSource)
    );
    assert_eq!(
        sim.inject_to_relay(alice, &newer),
        EdgeVerdict::Drop(DropReason::BadTag)
    );
    assert_eq!(
        sim.inject_to_relay(stranger, &[7; 16]),
        EdgeVerdict::Drop(DropReason::UnknownSource)
    );
    assert_eq!(
        sim.inject_to_relay(alice, &[1, 2, 3, 4, 5]),
        EdgeVerdict::Drop(DropReason::Malformed)
    );
    let mut other_sid = genuine.clone();
    other_sid[0] = 200;
    assert_eq!(
        sim.inject_to_relay(alice, &other_sid),
        EdgeVerdict::Drop(DropReason::UnknownSid)
    );
    sim.run_for(ms(100));
    assert_eq!(
        sim.members[1].received.len(),
        received,
        "nothing forged reached bob"
    );
    let room = sim.room.stats();
    assert_eq!(room.dropped(DropReason::UnknownSource), 2);
    assert_eq!(room.dropped(DropReason::BadTag), 1);
}

#[test]
fn a_frozen_member_stops_getting_copies_and_gets_them_again_when_it_thaws() {
    let mut sim = room_with(23, &["alice", "bob"]);
    let bob = sim.members[1].joined_sid().unwrap();
    sim.members[0].speaking = true;
    sim.run_for(ms(1_000));
    let before = sim.members[1].received.len();
    assert!(before > 40, "bob hears alice");
    // Bob's program hangs: no keepalive leaves it any more.
    sim.members[1].frozen = true;
    let frozen_at = sim.now;
    assert!(
        sim.run_until(ms(7_000), |s| s.room.is_paused(bob)),
        "bob paused"
    );
    // Its last keepalive left up to 1 s before; the room sweeps every second.
    let paused_after = sim.now - frozen_at;
    assert!(
        paused_after >= ms(3_000) && paused_after <= ms(5_100),
        "paused {paused_after:?} after the freeze"
    );
    let mark = sim.verdicts.len();
    sim.run_for(ms(1_000));
    let copies_to_bob = sim.verdicts[mark..]
        .iter()
        .filter(
            |v| matches!(v, EdgeVerdict::Forward { recipients, .. } if recipients.contains(bob)),
        )
        .count();
    assert_eq!(copies_to_bob, 0, "copies for a silent member");
    // It comes back: its overdue keepalive resumes it, without waiting for a sweep.
    sim.members[1].frozen = false;
    sim.run_for(ms(100));
    assert!(!sim.room.is_paused(bob));
    let back = sim.members[1].received.len();
    sim.run_for(ms(1_000));
    assert!(
        sim.members[1].received.len() >= back + 45,
        "bob hears alice again"
    );
    assert_eq!((sim.room.stats().paused, sim.room.stats().resumed), (1, 1));
}
