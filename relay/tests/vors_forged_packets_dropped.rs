//! During a real call (alice sends a tone, bob records) the test throws forged datagrams at
//! the relay's VoRS port, and is itself a member, mallory, driven over raw sockets so it can
//! send from a registered address. Every forgery is dropped at the edge and counted under its
//! reason, exactly; none is forwarded; the call is unharmed.
//!
//! UDP is steered to a core by its first byte (the SID), so forgeries that should reach the
//! room's core carry a SID of the room's lane: mallory's own, alice's, or one nobody holds in
//! the same lane. Datagrams that land elsewhere, or come from an address no member
//! registered, are `unknown_source` whatever their content.

use std::net::UdpSocket;
use std::time::Duration;

use moose_proto::vors::Sid;
use moose_proto::vors::packet::{COOKIE_LEN, seal};
use moose_testkit::call::CallProc;
use moose_testkit::metrics::{Metrics, OnPanic, wait_metrics};
use moose_testkit::relay::Relay;
use moose_testkit::rng::Rng;
use moose_testkit::temp::temp_dir;
use moose_testkit::tone::{assert_tone, opus_frames, tone_wav};
use moose_testkit::vors_member::VorsMember;

const ROOM: &str = "forgeries";
const LINE: Duration = Duration::from_secs(15);
const CORES: u8 = 2;

/// A media-shaped datagram: `sid`, PKT, FRAME, `payload_len` random bytes, a random tag.
fn forged_media(rng: &mut Rng, sid: Sid, pkt: u32, payload_len: usize) -> Vec<u8> {
    let mut d = vec![sid.0];
    d.extend_from_slice(&pkt.to_be_bytes()[1..]);
    d.extend_from_slice(&(pkt + 3).to_be_bytes()[1..]);
    d.extend(rng.bytes(payload_len + 8));
    d
}

/// What the forgeries must add to each drop reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Expected {
    unknown_source: u64,
    unknown_sid: u64,
    malformed: u64,
    bad_tag: u64,
    replayed: u64,
    reordered: u64,
}

impl Expected {
    fn since(base: &Metrics, now: &Metrics) -> Expected {
        let d = |reason| now.dropped(reason) - base.dropped(reason);
        Expected {
            unknown_source: d("unknown_source"),
            unknown_sid: d("unknown_sid"),
            malformed: d("malformed"),
            bad_tag: d("bad_tag"),
            replayed: d("replayed"),
            reordered: d("reordered"),
        }
    }

    fn reached_by(&self, got: &Expected) -> bool {
        got.unknown_source >= self.unknown_source
            && got.unknown_sid >= self.unknown_sid
            && got.malformed >= self.malformed
            && got.bad_tag >= self.bad_tag
            && got.replayed >= self.replayed
            && got.reordered >= self.reordered
    }
}

#[test]
fn forged_packets_dropped() {
    let mut rng = Rng::from_clock();
    let seed = rng.0;

    let relay = Relay::start(&["--cores", &CORES.to_string()], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let dir = temp_dir("forged");
    let rec = dir.join("rec");
    let tone = tone_wav(&dir, 440.0, 4.0);

    let mut bob = CallProc::start(
        &relay,
        "bob",
        ROOM,
        &["--record", rec.to_str().expect("utf-8")],
    );
    bob.expect_line("joined bob", LINE);
    let mut mallory = VorsMember::join(relay.vors, &relay.vors_pubkey, "mallory", ROOM);
    bob.expect_line("joined mallory", LINE);
    let mut alice = CallProc::start(
        &relay,
        "alice",
        ROOM,
        &["--input", tone.to_str().expect("utf-8")],
    );
    alice.expect_line("joined alice", LINE);
    bob.expect_line("joined alice", LINE);
    mallory.run_until(LINE, "ADD alice", |m| m.peer_sid("alice").is_some());
    let alice_sid = mallory.peer_sid("alice").expect("alice's SID");
    let bob_sid = mallory.peer_sid("bob").expect("bob's SID");
    let own = mallory.sid();
    // Alice is talking before the forgeries start.
    wait_metrics(
        &relay,
        LINE,
        "alice talking",
        || mallory.step(),
        |m| m.get("moose_vors_packets_forwarded_total") >= 25,
    );
    let base = Metrics::read(&relay);
    let mut want = Expected::default();

    // (a) Random bytes of random lengths from an address no member registered.
    let stranger = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for _ in 0..40 {
        let len = rng.below(300) as usize;
        stranger.send_to(&rng.bytes(len), relay.vors).expect("send");
    }
    want.unknown_source += 40;

    // (b) Media-shaped datagrams under alice's SID with wrong tags: from the stranger, and
    // from mallory's registered address (a member cannot speak for another).
    for i in 0..20 {
        let d = forged_media(&mut rng, alice_sid, 1_000 + i, 40);
        stranger.send_to(&d, relay.vors).expect("send");
        mallory.send_raw(&forged_media(&mut rng, alice_sid, 2_000 + i, 40));
    }
    want.unknown_source += 40;

    // ... under mallory's own SID with random tags, some of them cookie-sized (a 16-byte
    // datagram from a member's address is media with 1 byte of Opus).
    for i in 0..12 {
        let len = if i % 4 == 0 { COOKIE_LEN - 15 } else { 40 };
        mallory.send_raw(&forged_media(&mut rng, own, 100 + i, len));
    }
    want.bad_tag += 12;

    // ... under a SID of the room's lane that nobody holds.
    let nobody = (1..)
        .map(|k| own.0.wrapping_add(k * CORES))
        .find(|&s| s != 255 && s != alice_sid.0 && s != bob_sid.0 && s != own.0)
        .expect("a free SID");
    for i in 0..10 {
        mallory.send_raw(&forged_media(&mut rng, Sid(nobody), 1 + i, 40));
    }
    want.unknown_sid += 10;

    // ... too short for media (2 to 11 bytes), first byte in the room's lane.
    for len in 2..12 {
        let mut d = rng.bytes(len);
        d[0] = own.0;
        mallory.send_raw(&d);
    }
    want.malformed += 10;

    // (c) Mallory's own sealed packets, then copies of them: the last one again is
    // `replayed`, older ones `reordered`.
    // Real Opus frames of a 1 kHz tone, so bob's recording of mallory is sound, not noise.
    let frames = opus_frames(1_000.0, 6);
    let genuine: Vec<Vec<u8>> = frames[..5].iter().map(|f| mallory.send_media(f)).collect();
    mallory.send_raw(&genuine[4]);
    for copy in &genuine[..4] {
        mallory.send_raw(copy);
    }
    mallory.send_raw(&genuine[4]);
    want.replayed += 2;
    want.reordered += 4;

    // PKT 6 with a broken tag, and with a flipped ciphertext byte: both fail the tag, and
    // neither moves mallory's counter, so the genuine PKT 6 after them still goes through.
    let keys = mallory.keys();
    let mut forged = Vec::new();
    seal(&keys, own, 6, 5, &frames[5], &mut forged).expect("seal");
    let last = forged.len() - 1;
    forged[last] ^= 0x01;
    mallory.send_raw(&forged);
    forged[last] ^= 0x01;
    forged[9] ^= 0x80;
    mallory.send_raw(&forged);
    want.bad_tag += 2;
    let sixth = mallory.send_media(&frames[5]);
    assert_eq!(
        &sixth[1..4],
        &[0, 0, 6],
        "the session's next packet is PKT 6"
    );
    let genuine_sent = 6;

    let now = wait_metrics(
        &relay,
        LINE,
        "every forgery counted",
        || mallory.step(),
        |m| want.reached_by(&Expected::since(&base, m)),
    );
    let got = Expected::since(&base, &now);
    assert_eq!(
        got,
        want,
        "drops by reason (seed {seed:#x}):\n{}",
        now.vors()
    );
    assert_eq!(
        now.get("moose_vors_send_dropped_total"),
        0,
        "{}",
        now.vors()
    );

    // Let alice's 4 s tone (200 packets) play out before she leaves.
    wait_metrics(
        &relay,
        LINE,
        "alice's tone sent",
        || mallory.step(),
        |m| m.get("moose_vors_packets_forwarded_total") >= 190 + genuine_sent,
    );
    let alice = alice.hang_up(LINE);
    bob.expect_line("left alice", LINE);
    let sent = alice.summary().sent;

    // Mallory, a receiver too, got every packet alice sent, each verified under her key:
    // no forgery under her SID and no copy of mallory's own packets came back to it.
    mallory.run_until(LINE, "all of alice's packets", |m| {
        m.stats().packets_received >= sent
    });
    let seen = mallory.stats();
    assert_eq!(
        (
            seen.packets_received,
            seen.packets_lost,
            seen.dropped_bad_tag,
            seen.dropped_unknown_sid,
            seen.dropped_replayed,
            seen.dropped_reordered,
            seen.dropped_malformed
        ),
        (sent, 0, 0, 0, 0, 0, 0),
        "mallory received something it should not have: {seen:?}"
    );
    assert_eq!(mallory.echoes, 0, "mallory's own packets came back to it");
    drop(mallory);
    bob.expect_line("left mallory", LINE);
    let bob = bob.hang_up(LINE);

    // Only genuine packets were forwarded: alice's and mallory's six, to the two others each.
    let m = Metrics::read(&relay);
    let forwarded = m.get("moose_vors_packets_forwarded_total");
    assert_eq!(
        forwarded,
        sent + genuine_sent,
        "alice sent {sent}:\n{}",
        m.vors()
    );
    assert_eq!(
        m.get("moose_vors_datagrams_out_total"),
        2 * forwarded,
        "{}",
        m.vors()
    );
    let heard = bob.summary();
    // Alice's last packet may reach bob's client after her DEL: moose-call reads TCP and UDP
    // on two threads, and a packet of a member it was told left is dropped. Nothing else.
    let expected = sent + genuine_sent;
    assert!(
        heard.received <= expected && heard.received + 1 >= expected,
        "bob received {} of {expected}: {heard:?}",
        heard.received
    );
    assert_eq!(heard.lost, 0, "bob: {heard:?}");
    let alice_heard = alice.summary();
    assert_eq!(
        (alice_heard.received, alice_heard.lost),
        (genuine_sent, 0),
        "alice: {alice_heard:?}"
    );
    assert_tone(&rec.join("alice.wav"), 440.0, 3.5, 3.5);
    let _ = std::fs::remove_dir_all(&dir);
}
