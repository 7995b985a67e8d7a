//! A captured message 1, replayed from another address, is refused before any handshake work:
//! it holds no name in the room and gets no message 2 to measure. And message 2 has one length
//! whatever the room decided (cookie, name taken, wrong password, room full, server full), so
//! its length tells an eavesdropper nothing about the room.
#![allow(clippy::unwrap_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use moose_proto::vors::freshness::UnixTime;
use moose_proto::vors::handshake::{ClientHandshake, MAX_HANDSHAKE_LEN, ServerReply};
use moose_proto::vors::hello::Hello;
use moose_proto::vors::netstring;
use moose_proto::vors::server::MAGIC;
use moose_testkit::metrics::{Metrics, OnPanic, wait_metrics};
use moose_testkit::relay::Relay;
use moose_testkit::vors_member::{VorsMember, connect_from, wall_clock};

const ROOM: &str = "studio";
const WAIT: Duration = Duration::from_secs(10);

/// A TCP connection to the relay's VoRS port from the loopback address `from`, reading in
/// short slices.
fn connect(relay: &Relay, from: Ipv4Addr) -> TcpStream {
    let stream = connect_from(relay.vors, IpAddr::V4(from));
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    stream
}

/// What came back for bytes sent on a fresh connection. The connection stays open (unless
/// the relay closed it) until the answer is dropped, as an attacker would hold it.
#[derive(Debug)]
struct Answer {
    bytes: Vec<u8>,
    /// The relay closed the connection (EOF or reset) within the wait.
    closed: bool,
    _stream: TcpStream,
}

/// Sends `bytes` from `from` and reads until the relay closes the connection or `within`
/// passes.
fn replay(relay: &Relay, from: Ipv4Addr, bytes: &[u8], within: Duration) -> Answer {
    let mut stream = connect(relay, from);
    stream.write_all(bytes).unwrap();
    let deadline = Instant::now() + within;
    let mut bytes = Vec::new();
    let mut closed = false;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    Answer {
        bytes,
        closed,
        _stream: stream,
    }
}

/// A client's handshake with message 1 sent at `sent_at` (`None`: the untimed form of older
/// clients): message 2's length on the wire (its netstring) and the relay's answer, or `None`
/// when the relay closed the connection without one. The connection is closed right after.
fn handshake(
    relay: &Relay,
    name: &str,
    room: &str,
    password: &str,
    sent_at: Option<UnixTime>,
) -> Option<(usize, ServerReply)> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(&relay.vors_pubkey, &mut key).unwrap();
    let password_hash = moose_proto::vors::keys::password_field(password);
    let hello = Hello {
        username: name,
        room,
        password_hash: password_hash.as_ref(),
    };
    let (client, msg1) = ClientHandshake::start(&key, &hello, sent_at).unwrap();
    let mut first = MAGIC.to_vec();
    netstring::encode(&msg1, &mut first);
    let mut stream = connect(relay, Ipv4Addr::LOCALHOST);
    stream.write_all(&first).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let used = loop {
        if let Some((_, used)) = netstring::decode(&got, MAX_HANDSHAKE_LEN).unwrap() {
            break used;
        }
        assert!(Instant::now() < deadline, "{name}: no message 2");
        match stream.read(&mut buf) {
            Ok(0) => {
                assert!(got.is_empty(), "{name}: closed within message 2");
                return None;
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{name}: {e}"),
        }
    };
    let (msg2, _) = netstring::decode(&got, MAX_HANDSHAKE_LEN).unwrap().unwrap();
    let (reply, _, _) = client.finish(msg2).unwrap();
    Some((used, reply))
}

/// An honest client's message 2, sent now: its length and the relay's verdict (`Ok` for a
/// cookie, the ERR reason otherwise).
fn message_2(relay: &Relay, name: &str, room: &str, password: &str) -> (usize, Result<(), String>) {
    let (len, reply) = handshake(relay, name, room, password, Some(wall_clock()))
        .unwrap_or_else(|| panic!("{name}: closed without message 2"));
    let verdict = match reply {
        ServerReply::Cookie(_) => Ok(()),
        ServerReply::Err(reason) => Err(reason),
    };
    (len, verdict)
}

fn wait_members(relay: &Relay, members: u64) {
    wait_metrics(
        relay,
        WAIT,
        &format!("{members} members"),
        || {},
        |m| m.sum("moose_vors_members") == members,
    );
}

#[test]
fn a_replayed_hello_is_refused_and_holds_no_name() {
    let relay = Relay::start(&[], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let victim = VorsMember::join(relay.vors, &relay.vors_pubkey, "vic", ROOM);
    let captured = victim.sent_hello().to_vec();
    assert!(
        captured.starts_with(b"VoRS v4"),
        "the magic, then message 1"
    );

    // While the victim is in the room: nothing comes back, not even "name is taken".
    let answer = replay(&relay, Ipv4Addr::new(127, 0, 0, 2), &captured, WAIT);
    assert!(
        answer.closed && answer.bytes.is_empty(),
        "replay while the victim is in: {} bytes, closed {}",
        answer.bytes.len(),
        answer.closed
    );

    // Once the victim has left, a replay must not take its name either: the attacker holds
    // its connection open while the victim comes back under its own name.
    drop(victim);
    wait_members(&relay, 0);
    let held = replay(
        &relay,
        Ipv4Addr::new(127, 0, 0, 3),
        &captured,
        Duration::from_secs(2),
    );
    let back = VorsMember::try_join(relay.vors, &relay.vors_pubkey, "vic", ROOM, "", None);
    assert!(
        held.closed && held.bytes.is_empty(),
        "replay after the victim left: {} bytes, closed {}",
        held.bytes.len(),
        held.closed
    );
    assert!(back.is_ok(), "the victim's name was held: {:?}", back.err());
    let m = Metrics::read(&relay);
    let vors = m.vors();
    assert_eq!(
        m.get("moose_vors_hellos_refused_total{reason=\"replay\"}"),
        2,
        "{vors}"
    );
    // Refused before the handshake: only the victim's own two hellos reached a room.
    assert_eq!(m.get("moose_vors_handshakes_total"), 2, "{vors}");
    assert_eq!(m.sum("moose_vors_members"), 1, "{vors}");
}

#[test]
fn message_2_has_one_length_whatever_the_room_decides() {
    let relay = Relay::start(&["--max-members", "2", "--max-rooms", "1"], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let bob = VorsMember::join_with_password(relay.vors, &relay.vors_pubkey, "bob", ROOM, "pw");

    let mut lengths = Vec::new();
    let mut expect = |name: &str, room: &str, password: &str, verdict: Result<(), &str>| {
        let (len, got) = message_2(&relay, name, room, password);
        assert_eq!(got, verdict.map_err(str::to_owned), "{name} in {room}");
        lengths.push((verdict.err().unwrap_or("cookie").to_owned(), len));
    };
    expect("eve", ROOM, "guess", Err("wrong password"));
    expect("bob", ROOM, "pw", Err("name is taken"));
    expect("zed", "elsewhere", "", Err("server full"));
    let alice = VorsMember::join_with_password(relay.vors, &relay.vors_pubkey, "alice", ROOM, "pw");
    expect("dave", ROOM, "pw", Err("room is full"));
    drop(alice);
    wait_members(&relay, 1);
    expect("carol", ROOM, "pw", Ok(()));
    drop(bob);

    let first = lengths[0].1;
    assert!(
        lengths.iter().all(|(_, len)| *len == first),
        "message 2 lengths differ by outcome: {lengths:?}"
    );
}

#[test]
fn stale_and_untimed_hellos_are_closed_unanswered() {
    let relay = Relay::start(&[], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let now = wall_clock();
    // Two minutes old (a copy the cache has long forgotten, or a clock that is off), two
    // minutes ahead, and without a time at all.
    for sent_at in [
        Some(UnixTime(now.0 - 120)),
        Some(UnixTime(now.0 + 120)),
        None,
    ] {
        let answer = handshake(&relay, "ann", ROOM, "", sent_at);
        assert!(answer.is_none(), "{sent_at:?}: answered {answer:?}");
    }
    let m = Metrics::read(&relay);
    let vors = m.vors();
    assert_eq!(
        m.get("moose_vors_hellos_refused_total{reason=\"stale\"}"),
        2,
        "{vors}"
    );
    assert_eq!(
        m.get("moose_vors_hellos_refused_total{reason=\"untimed\"}"),
        1,
        "{vors}"
    );
    assert_eq!(m.get("moose_vors_handshakes_total"), 0, "{vors}");
    assert_eq!(m.get("moose_vors_handshake_failures_total"), 3, "{vors}");
    // A hello of now gets in.
    assert_eq!(message_2(&relay, "ann", ROOM, "").1, Ok(()));

    // An operator still upgrading old clients may let untimed hellos in.
    let lenient = Relay::start(&["--accept-untimed-hellos"], &[]);
    let answer = handshake(&lenient, "old", ROOM, "", None);
    assert!(
        matches!(answer, Some((_, ServerReply::Cookie(_)))),
        "{answer:?}"
    );
}
