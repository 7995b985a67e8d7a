//! Nobody gets a room's audio at an address it has not proven to be its own.
//!
//! - **Reflection.** A member joins over TCP from 127.0.0.1 and its cookie arrives from
//!   127.0.0.66, an address that never asked for anything (a spoofed source, played here by a
//!   socket bound there). The relay must not register it: the "victim" receives nothing while
//!   the room talks, the cookie is counted `wrong_address`, and the same cookie from the
//!   member's own address then works.
//! - **Impostor.** One core (`--cores 1`), two rooms. A member of the second room sends its
//!   cookie from the address a member of the first room registered (played by sending it from
//!   that member's socket). It is refused (`address_taken`), the owner of the address keeps
//!   its audio both ways, and keeps it after the impostor leaves.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use moose_testkit::metrics::{Metrics, OnPanic, wait_metrics};
use moose_testkit::relay::Relay;
use moose_testkit::vors_member::{VorsMember, settle, talk};

const LINE: Duration = Duration::from_secs(15);

/// Every datagram waiting on `socket`: (count, bytes).
fn drain(socket: &UdpSocket) -> (u64, u64) {
    let mut buf = [0u8; 2048];
    let (mut count, mut bytes) = (0, 0);
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        count += 1;
        bytes += n as u64;
    }
    (count, bytes)
}

/// Bob talks and alice hears all of it, then the other way round; `bystanders` keep their
/// sessions going meanwhile.
fn both_ways(
    alice: &mut VorsMember,
    bob: &mut VorsMember,
    bystanders: &mut [&mut VorsMember],
    what: &str,
) {
    let (heard_by_alice, heard_by_bob) = (alice.received(), bob.received());
    let mut others: Vec<&mut VorsMember> = vec![&mut *alice];
    others.extend(bystanders.iter_mut().map(|m| &mut **m));
    talk(bob, &mut others, 25, || {});
    alice.run_until(LINE, &format!("bob's audio {what}"), |a| {
        a.received() >= heard_by_alice + 25
    });
    let mut others: Vec<&mut VorsMember> = vec![&mut *bob];
    others.extend(bystanders.iter_mut().map(|m| &mut **m));
    talk(alice, &mut others, 25, || {});
    bob.run_until(LINE, &format!("alice's audio {what}"), |b| {
        b.received() >= heard_by_bob + 25
    });
}

#[test]
fn a_cookie_from_another_ip_reflects_nothing() {
    let relay = Relay::start(&[], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let room = "reflection";
    let mut alice = VorsMember::join(relay.vors, &relay.vors_pubkey, "alice", room);
    let mut bob = VorsMember::join(relay.vors, &relay.vors_pubkey, "bob", room);
    let mut mallory =
        VorsMember::handshake_holding_udp(relay.vors, &relay.vors_pubkey, "mallory", room, None);
    let cookie = mallory.held[0].clone();
    let victim = UdpSocket::bind(SocketAddr::new(IpAddr::from([127, 0, 0, 66]), 0)).expect("bind");
    victim.set_nonblocking(true).expect("nonblocking");
    let base = Metrics::read(&relay);

    // 16 bytes from the victim's address, then not a byte more from it: no keepalives.
    victim.send_to(&cookie, relay.vors).expect("send");
    let (mut reflected, mut reflected_bytes) = (0, 0);
    let before = bob.received();
    talk(&mut alice, &mut [&mut bob, &mut mallory], 100, || {
        let (n, b) = drain(&victim);
        reflected += n;
        reflected_bytes += b;
    });
    settle(
        &mut [&mut alice, &mut bob, &mut mallory],
        LINE,
        "bob hearing alice",
        |m| m[1].received() >= before + 100,
    );
    let (n, b) = drain(&victim);
    reflected += n;
    reflected_bytes += b;
    assert_eq!(
        (reflected, reflected_bytes),
        (0, 0),
        "the victim's address received datagrams (count, bytes) for a 16-byte cookie"
    );
    assert!(
        !mallory.has_sid(),
        "a cookie from another IP registered mallory"
    );
    let m = wait_metrics(
        &relay,
        LINE,
        "wrong_address counted",
        || {},
        |m| m.dropped("wrong_address") > base.dropped("wrong_address"),
    );
    assert_eq!(
        m.dropped("wrong_address") - base.dropped("wrong_address"),
        1,
        "{}",
        m.vors()
    );

    // The member itself, from the IP of its control connection, still gets in.
    mallory.hold_udp = false;
    mallory.held.clear();
    mallory.run_until(LINE, "SID from its own address", VorsMember::has_sid);
    let before = mallory.received();
    talk(&mut alice, &mut [&mut bob, &mut mallory], 25, || {});
    mallory.run_until(LINE, "alice's audio", |m| m.received() >= before + 25);
    assert_eq!(drain(&victim), (0, 0), "nothing for the victim");
}

#[test]
fn an_impostor_cookie_from_a_taken_address_is_refused() {
    // One core, so that both rooms share the core's table of registered addresses.
    let relay = Relay::start(&["--cores", "1"], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let mut alice = VorsMember::join(relay.vors, &relay.vors_pubkey, "alice", "call");
    let mut bob = VorsMember::join(relay.vors, &relay.vors_pubkey, "bob", "call");
    settle(&mut [&mut alice, &mut bob], LINE, "ADDs", |m| {
        m[0].peers() == 1 && m[1].peers() == 1
    });
    let mut mallory = VorsMember::handshake_holding_udp(
        relay.vors,
        &relay.vors_pubkey,
        "mallory",
        "elsewhere",
        None,
    );
    let base = Metrics::read(&relay);

    // Mallory's cookie from bob's registered address.
    bob.send_raw(&mallory.held[0]);
    both_ways(
        &mut alice,
        &mut bob,
        &mut [&mut mallory],
        "while the impostor is in",
    );
    assert!(!mallory.has_sid(), "the impostor registered bob's address");

    // The impostor leaves (its connection closes): bob's route must stay.
    drop(mallory);
    wait_metrics(
        &relay,
        LINE,
        "the impostor gone",
        || {
            alice.step();
            bob.step();
        },
        |m| m.sum("moose_vors_members") == 2,
    );
    both_ways(&mut alice, &mut bob, &mut [], "after the impostor left");

    let m = Metrics::read(&relay);
    assert_eq!(
        m.dropped("address_taken") - base.dropped("address_taken"),
        1,
        "{}",
        m.vors()
    );
    assert_eq!(
        m.dropped("unknown_source"),
        base.dropped("unknown_source"),
        "bob's datagrams all found his room: {}",
        m.vors()
    );
}
