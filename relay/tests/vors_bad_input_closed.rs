//! Raw TCP clients that are not VoRS clients: garbage, the wrong version, an oversized
//! netstring length, a message 1 that is no Noise message, and a client that sends the magic
//! and then nothing. The relay closes each one (the staller at the 4 s deadline for message 1),
//! counts them as handshake failures, and a real call in another room goes on unharmed.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use moose_testkit::call::CallProc;
use moose_testkit::metrics::{Metrics, OnPanic, wait_metrics};
use moose_testkit::relay::Relay;
use moose_testkit::temp::temp_dir;
use moose_testkit::tone::{assert_tone, tone_wav};

const LINE: Duration = Duration::from_secs(15);
/// The relay's deadline for message 1, from the accept (docs/wire-vors.md §8).
const HELLO_TIMEOUT: Duration = Duration::from_secs(4);

/// Sends `bytes`, then waits up to `within` for the relay to close the connection. Returns
/// how long the close took; panics if the relay answered with data or kept the connection.
fn closed_after(vors: SocketAddr, bytes: &[u8], within: Duration) -> Duration {
    let start = Instant::now();
    let mut stream = TcpStream::connect(vors).expect("connect to the vors port");
    stream.set_read_timeout(Some(within)).expect("read timeout");
    if let Err(e) = stream.write_all(bytes) {
        // The relay may already have reset the connection at the first bad byte.
        assert!(
            matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
            "writing {bytes:?}: {e}"
        );
    }
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("after {bytes:?} the relay sent {:?}", &buf[..n]),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "after {:?} the connection is still open after {:?} ({e})",
            String::from_utf8_lossy(bytes),
            start.elapsed()
        ),
    }
    start.elapsed()
}

#[test]
fn bad_input_closed() {
    let relay = Relay::start(&["--cores", "2"], &[]);
    let _metrics_on_failure = OnPanic(&relay);
    let vors = relay.vors;

    // The staller runs alongside everything else, so its 4 s wait is the test's only one.
    let staller = thread::spawn(move || {
        closed_after(vors, b"VoRS v4", HELLO_TIMEOUT + Duration::from_secs(5))
    });

    let dir = temp_dir("bad-input");
    let rec = dir.join("rec");
    let tone = tone_wav(&dir, 440.0, 3.0);
    let mut bob = CallProc::start(
        &relay,
        "bob",
        "unharmed",
        &["--record", rec.to_str().expect("utf-8")],
    );
    bob.expect_line("joined bob", LINE);
    let mut alice = CallProc::start(
        &relay,
        "alice",
        "unharmed",
        &["--input", tone.to_str().expect("utf-8")],
    );
    alice.expect_line("joined alice", LINE);
    bob.expect_line("joined alice", LINE);

    // While alice talks, the bad clients come in; each is closed at its first bad byte.
    let quick = Duration::from_secs(5);
    let mut garbage = b"\x00\xff\x13garbage that is not VoRS\r\n\r\n".to_vec();
    garbage.extend((0..2000u32).map(|i| (i * 7) as u8));
    closed_after(vors, &garbage, quick);
    closed_after(vors, b"VoRS v3", quick);
    // Too long for message 1 (4096 bytes at most): refused once the digits are read,
    // before any payload is sent.
    closed_after(vors, b"VoRS v499999999:", quick);
    // Well framed, but not a Noise message 1: the decryption fails.
    let mut not_noise = b"VoRS v4".to_vec();
    not_noise.extend_from_slice(b"1700:");
    not_noise.extend(std::iter::repeat_n(0x5a, 1700));
    not_noise.push(b',');
    closed_after(vors, &not_noise, quick);

    let stalled = staller.join().expect("staller thread");
    assert!(
        stalled >= HELLO_TIMEOUT - Duration::from_millis(500),
        "the staller was closed after {stalled:?}, before the hello timeout"
    );

    let m = Metrics::read(&relay);
    assert_eq!(
        m.get("moose_vors_handshake_failures_total"),
        5,
        "{}",
        m.vors()
    );
    assert_eq!(m.get("moose_vors_handshakes_total"), 2, "{}", m.vors());

    // The call went on: the whole tone arrived (the staller took longer than the tone).
    wait_metrics(
        &relay,
        LINE,
        "alice's 150 packets forwarded",
        || {},
        |m| m.get("moose_vors_packets_forwarded_total") >= 150,
    );
    let alice = alice.hang_up(LINE);
    bob.expect_line("left alice", LINE);
    let bob = bob.hang_up(LINE);
    let sent = alice.summary().sent;
    let heard = bob.summary();
    assert_eq!(
        (heard.received, heard.lost),
        (sent, 0),
        "bob heard {heard:?} of {sent}"
    );
    assert_tone(&rec.join("alice.wav"), 440.0, 2.8, 2.8);

    // And the relay still takes new calls.
    let mut carol = CallProc::start(&relay, "carol", "after", &[]);
    carol.expect_line("joined carol", LINE);
    carol.hang_up(LINE);
    let m = Metrics::read(&relay);
    assert_eq!(
        m.get("moose_vors_handshake_failures_total"),
        5,
        "{}",
        m.vors()
    );
    assert_eq!(
        m.get("moose_vors_packets_forwarded_total"),
        sent,
        "{}",
        m.vors()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
