//! A receiver that stops reading loses its own oldest audio; the sender never waits for it,
//! the other receivers get every message in order, and the relay's memory stays bounded.
//! (The original Go server let one stalled receiver block both directions.)
#![allow(clippy::unwrap_used)]

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use moose_proto::ws::Opcode;
use moose_testkit::relay::Relay;
use moose_testkit::ws::{WsClient, connect_stalled};

const KEY: &str = "slow-receiver-key-0123456789";
/// PCM-sized messages: about 30 MiB in all, far more than any bounded queue may hold.
const MESSAGES: u32 = 30_000;
const SIZE: usize = 1024;
/// The sender stays at most this many messages ahead of what B has read. 32 frames of 1028
/// bytes are well under the relay's per-receiver queue (200 ms of PCM, 80 000 bytes), so B can
/// never be the slow receiver however the machine schedules its thread: every loss B sees is a
/// relay fault. C, which reads nothing, is not part of this flow control.
const WINDOW: u32 = 32;
/// Peak relay memory growth allowed over the run: about half of what A sends, so a relay that
/// kept everything for C would fail.
const MAX_GROWTH_KIB: u64 = 16 * 1024;

fn message(seq: u32) -> Vec<u8> {
    let mut m: Vec<u8> = (0..SIZE).map(|i| (i as u32 ^ seq) as u8).collect();
    m[..4].copy_from_slice(&seq.to_be_bytes());
    m
}

/// Peers on lines, summed over cores.
fn line_peers(relay: &Relay) -> u64 {
    relay
        .metrics()
        .lines()
        .filter(|l| l.starts_with("moose_line_peers{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn stalled_receiver_loses_oldest_audio_while_others_get_everything() {
    // A sends as fast as B reads, far above a live PCM stream: no rate cap here.
    let relay = Relay::start(
        &["--max-peers", "3", "--line-rate-cap", "0"],
        &[("APIKEY", KEY)],
    );
    let mut a = WsClient::connect(relay.http, KEY);
    let mut b = WsClient::connect(relay.http, KEY);
    let c = connect_stalled(relay.http, KEY, 4096);
    assert_eq!(line_peers(&relay), 3);
    relay.reset_peak_rss();
    let rss_before = relay.rss_kib();

    // B reads continuously and reports each message it got, in order, to A.
    let (read_tx, read_rx) = mpsc::channel::<u32>();
    let reader = thread::spawn(move || {
        for seq in 0..MESSAGES {
            let frame = b.recv();
            assert_eq!(frame.opcode, Opcode::Binary);
            assert!(
                frame.payload == message(seq),
                "B expected message {seq}, got {:?} ({} bytes)",
                frame.payload.get(..4),
                frame.payload.len()
            );
            if read_tx.send(seq).is_err() {
                break;
            }
        }
        b
    });

    // A sends as fast as B reads; it must never wait for C. A write that blocks means the
    // relay stopped reading A, so bound it instead of hanging.
    a.stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let mut slowest_send = Duration::ZERO;
    let mut read_by_b = 0;
    for seq in 0..MESSAGES {
        while seq >= read_by_b + WINDOW {
            match read_rx.recv_timeout(Duration::from_secs(10)) {
                Ok(got) => read_by_b = got + 1,
                // B panicked (its message says why) or stopped hearing A.
                Err(_) => match reader.join() {
                    Err(panic) => std::panic::resume_unwind(panic),
                    Ok(_) => panic!("B heard nothing for 10 s after message {read_by_b}"),
                },
            }
        }
        let before = Instant::now();
        a.send_binary(&message(seq));
        slowest_send = slowest_send.max(before.elapsed());
    }
    let mut b = reader
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    let elapsed = started.elapsed();

    assert!(
        slowest_send < Duration::from_secs(1),
        "A's send blocked for {slowest_send:?}"
    );
    // Well inside the relay's 30 s write-stall limit, so C was dropped from, never cut off.
    assert!(
        elapsed < Duration::from_secs(20),
        "the run took {elapsed:?}"
    );
    let dropped = relay.metric("moose_ws_dropped_total{reason=\"slow_receiver\"}");
    assert!(
        dropped >= u64::from(MESSAGES) / 2,
        "C's queue must be bounded: only {dropped} of {MESSAGES} messages dropped for it"
    );
    let growth = relay.peak_rss_kib().saturating_sub(rss_before);
    assert!(
        growth < MAX_GROWTH_KIB,
        "relay peak RSS grew by {growth} KiB while relaying {} KiB",
        u64::from(MESSAGES) * SIZE as u64 / 1024
    );
    assert_eq!(line_peers(&relay), 3, "C is still on the line");
    eprintln!(
        "{MESSAGES} messages in {elapsed:?}, slowest send {slowest_send:?}, \
         {dropped} dropped for C, peak RSS growth {growth} KiB"
    );

    // C leaves (with unread data, so its kernel resets the connection).
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(10);
    while line_peers(&relay) != 2 {
        assert!(Instant::now() < deadline, "the relay never noticed C leave");
        thread::sleep(Duration::from_millis(20));
    }
    // A and B carry on.
    a.send_binary(&message(MESSAGES));
    assert_eq!(b.recv().payload, message(MESSAGES));
}
