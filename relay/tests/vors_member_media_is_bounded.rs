//! What one registered member's UDP can make the relay do is bounded, while honest calls,
//! their loss gaps included, go on untouched.
//!
//! - **Silence.** A member whose datagrams stop (no keepalive, no media: its address is gone,
//!   or was never really its own) stops getting the room's audio within the pause window
//!   (4 s, plus up to 1 s until the sweep), and gets it again as soon as its keepalives return.
//! - **Rate.** A member sending 1 000 genuine packets as fast as it can has at most a burst
//!   of 100 plus 200 a second forwarded; the rest is counted `rate`. The 50 a second of a
//!   real client afterwards all go through.
//! - **PKT jump.** A packet under a member's SID and keys (every member has them, from ADD)
//!   with PKT 2^24 − 1, from the member's address (a spoofed source, played by sending it from
//!   the member's own socket), would have muted that member for the rest of its session. It is
//!   dropped as `pkt_jump`; the member goes on being heard, and a real loss gap of 2 s is
//!   still accepted.

use std::time::{Duration, Instant};

use moose_proto::vors::packet::seal;
use moose_testkit::metrics::{Metrics, OnPanic, wait_metrics};
use moose_testkit::relay::Relay;
use moose_testkit::vors_member::{VorsMember, settle, talk};

const LINE: Duration = Duration::from_secs(15);
const OPUS: [u8; 60] = [0x55; 60];

/// Two members of `room`, each knowing the other.
fn pair(relay: &Relay, room: &str) -> (VorsMember, VorsMember) {
    let mut alice = VorsMember::join(relay.vors, &relay.vors_pubkey, "alice", room);
    let mut bob = VorsMember::join(relay.vors, &relay.vors_pubkey, "bob", room);
    settle(&mut [&mut alice, &mut bob], LINE, "ADDs", |m| {
        m[0].peers() == 1 && m[1].peers() == 1
    });
    (alice, bob)
}

/// Alice talks `frames` frames; bob must hear every one of them.
fn heard(alice: &mut VorsMember, bob: &mut VorsMember, frames: u32, what: &str) {
    let before = bob.received();
    talk(alice, &mut [&mut *bob], frames, || {});
    bob.run_until(LINE, what, |b| b.received() >= before + u64::from(frames));
    assert_eq!(
        bob.received(),
        before + u64::from(frames),
        "{what}: too much"
    );
}

#[test]
fn a_silent_member_is_paused_and_resumes() {
    let relay = Relay::start(&[], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let (mut alice, mut bob) = pair(&relay, "silence");
    heard(&mut alice, &mut bob, 25, "alice before the cut");

    // Bob's datagrams stop (he still listens); alice talks on for 7 s, in 200 ms slices.
    bob.hold_udp = true;
    let cut = Instant::now();
    let heard_in = |from: f64, to: f64, alice: &mut VorsMember, bob: &mut VorsMember| {
        while cut.elapsed().as_secs_f64() < from {
            talk(alice, &mut [&mut *bob], 10, || {});
        }
        let before = bob.received();
        while cut.elapsed().as_secs_f64() < to {
            talk(alice, &mut [&mut *bob], 10, || {});
        }
        bob.received() - before
    };
    // Bob's last keepalive left at most 1 s before the cut: no pause before 3 s after it.
    let early = heard_in(1.5, 2.8, &mut alice, &mut bob);
    assert!(
        early > 0,
        "bob was paused less than 3 s after his last datagram"
    );
    // Paused at the first sweep past 4 s of silence: by 5 s after the cut.
    let late = heard_in(6.0, 7.0, &mut alice, &mut bob);
    assert_eq!(
        late, 0,
        "bob still gets audio 6 s after his datagrams stopped"
    );
    let m = Metrics::read(&relay);
    assert_eq!(m.sum("moose_vors_members_silent"), 1, "{}", m.vors());
    assert_eq!(m.get("moose_vors_silence_pauses_total"), 1, "{}", m.vors());

    // His keepalives return (the session sends one a second): so does his audio.
    bob.hold_udp = false;
    bob.held.clear();
    let back = Instant::now();
    let before = bob.received();
    while bob.received() < before + 10 {
        assert!(back.elapsed() < Duration::from_secs(3), "bob not resumed");
        talk(&mut alice, &mut [&mut bob], 10, || {});
    }
    wait_metrics(
        &relay,
        LINE,
        "no silent member",
        || {
            alice.step();
            bob.step();
        },
        |m| m.sum("moose_vors_members_silent") == 0,
    );
    heard(&mut alice, &mut bob, 25, "alice after the resume");
}

#[test]
fn a_member_past_the_packet_rate_is_capped() {
    let relay = Relay::start(&[], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let (mut alice, mut bob) = pair(&relay, "flood");
    let base = Metrics::read(&relay);
    let forwarded = |m: &Metrics| {
        m.get("moose_vors_packets_forwarded_total") - base.get("moose_vors_packets_forwarded_total")
    };
    let capped = |m: &Metrics| m.dropped("rate") - base.dropped("rate");

    let heard_before = bob.received();
    let start = Instant::now();
    for _ in 0..1_000 {
        alice.send_media(&OPUS);
    }
    let took = start.elapsed();
    let m = wait_metrics(
        &relay,
        LINE,
        "every packet judged",
        || bob.step(),
        |m| forwarded(m) + capped(m) >= 1_000,
    );
    // A burst of half a second's worth (100), then 200 a second.
    let allowed = 100 + (200.0 * took.as_secs_f64()).ceil() as u64 + 1;
    let passed = forwarded(&m);
    assert!(
        (100..=allowed).contains(&passed),
        "{passed} of 1 000 forwarded in {took:?} (at most {allowed}):\n{}",
        m.vors()
    );
    assert_eq!(passed + capped(&m), 1_000, "{}", m.vors());
    bob.run_until(LINE, "the forwarded packets", |b| {
        b.received() >= heard_before + passed
    });

    // A real client's pace is never capped.
    heard(&mut alice, &mut bob, 100, "alice at 50 a second");
    let m = Metrics::read(&relay);
    assert_eq!(passed + capped(&m), 1_000, "{}", m.vors());
}

#[test]
fn a_forged_pkt_jump_cannot_mute_a_member() {
    let relay = Relay::start(&[], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let (mut alice, mut bob) = pair(&relay, "jump");
    heard(&mut alice, &mut bob, 25, "alice before the forgery");
    let base = Metrics::read(&relay);

    let mut forged = Vec::new();
    seal(&alice.keys(), alice.sid(), 0xff_ffff, 0, &OPUS, &mut forged).expect("seal");
    alice.send_raw(&forged);
    heard(&mut alice, &mut bob, 50, "alice after the forgery");
    let m = Metrics::read(&relay);
    assert_eq!(
        m.dropped("pkt_jump") - base.dropped("pkt_jump"),
        1,
        "{}",
        m.vors()
    );

    // A real loss gap: alice's next 100 packets (2 s) are lost on the way, then she goes on.
    alice.hold_udp = true;
    talk(&mut alice, &mut [&mut bob], 100, || {});
    alice.hold_udp = false;
    alice.held.clear();
    let lost_before = bob.stats().packets_lost;
    heard(&mut alice, &mut bob, 25, "alice after a 2 s loss gap");
    assert_eq!(
        bob.stats().packets_lost - lost_before,
        100,
        "{:?}",
        bob.stats()
    );
    let m = Metrics::read(&relay);
    assert_eq!(
        m.dropped("pkt_jump") - base.dropped("pkt_jump"),
        1,
        "{}",
        m.vors()
    );
}
