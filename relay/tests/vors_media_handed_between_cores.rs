//! With `--media-steering handoff` the kernel's reuseport hash, not the steering program,
//! picks the core that receives each datagram; the relay hands the datagrams of other cores'
//! rooms to their owner. Calls must work exactly as with kernel steering: every packet reaches
//! every other member of its room and nobody else.

mod support;
#[path = "support/vors_member.rs"]
mod vors_member;

use std::time::{Duration, Instant};

use support::Relay;
use vors_member::VorsMember;

const ROOMS: usize = 4;
const MEMBERS: usize = 4;
/// Media packets each member sends.
const PACKETS: usize = 10;

#[test]
fn every_packet_reaches_its_room_when_cores_hand_datagrams_over() {
    let relay = Relay::start(
        &["--open", "--cores", "2", "--media-steering", "handoff"],
        &[],
    );
    // 16 members, each with its own UDP source port: the chance that the kernel's hash puts
    // every one of them on its room's own core (and nothing is handed over) is 1 in 2^16.
    let mut members: Vec<Vec<VorsMember>> = (0..ROOMS)
        .map(|room| {
            (0..MEMBERS)
                .map(|m| {
                    VorsMember::join(
                        relay.vors,
                        &relay.vors_pubkey,
                        &format!("m{m}"),
                        &format!("room-{room}"),
                    )
                })
                .collect()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let step_all = |members: &mut Vec<Vec<VorsMember>>| {
        for member in members.iter_mut().flatten() {
            member.step();
        }
    };
    while members.iter().flatten().any(|m| m.peers() < MEMBERS - 1) {
        assert!(Instant::now() < deadline, "the members never all met");
        step_all(&mut members);
    }
    for i in 0..PACKETS {
        for member in members.iter_mut().flatten() {
            member.send_media(&[i as u8; 60]);
        }
        step_all(&mut members);
    }
    let expected = ((MEMBERS - 1) * PACKETS) as u64;
    while members.iter().flatten().any(|m| m.received() < expected) {
        let behind: Vec<_> = members
            .iter()
            .flatten()
            .map(|m| (m.name.clone(), m.received()))
            .filter(|(_, got)| *got < expected)
            .collect();
        assert!(
            Instant::now() < deadline,
            "members short of {expected} packets: {behind:?}"
        );
        step_all(&mut members);
    }
    for member in members.iter().flatten() {
        assert_eq!(
            member.received(),
            expected,
            "{}: extra packets",
            member.name
        );
        assert_eq!(
            member.echoes, 0,
            "{}: got its own packets back",
            member.name
        );
    }
    let sent = (ROOMS * MEMBERS * PACKETS) as u64;
    assert_eq!(relay.metric("moose_vors_packets_forwarded_total"), sent);
    assert_eq!(
        relay.metric("moose_vors_datagrams_out_total"),
        sent * (MEMBERS as u64 - 1)
    );
    assert!(
        relay.metric("moose_vors_datagrams_handed_off_total") > 0,
        "no datagram was handed over: {}",
        relay.metrics()
    );
}

#[test]
fn kernel_steering_hands_no_datagram_over() {
    let relay = Relay::start(&["--open", "--cores", "2"], &[]);
    let mut ann = VorsMember::join(relay.vors, &relay.vors_pubkey, "ann", "steered");
    let mut bob = VorsMember::join(relay.vors, &relay.vors_pubkey, "bob", "steered");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ann.peers() < 1 || bob.peers() < 1 {
        assert!(Instant::now() < deadline, "the members never met");
        ann.step();
        bob.step();
    }
    for i in 0..PACKETS {
        ann.send_media(&[i as u8; 60]);
        bob.step();
    }
    while bob.received() < PACKETS as u64 {
        assert!(Instant::now() < deadline, "bob got {}", bob.received());
        ann.step();
        bob.step();
    }
    assert_eq!(relay.metric("moose_vors_datagrams_handed_off_total"), 0);
}
