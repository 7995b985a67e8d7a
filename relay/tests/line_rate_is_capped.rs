//! A line peer may send at most a set multiple of a Moose PCM stream (`--line-rate-cap`, 4 by
//! default: 1 600 000 bytes a second, after a burst of a quarter second at that rate). What it
//! sends beyond is dropped and counted; a PCM stream never comes near the cap.

use std::thread;
use std::time::{Duration, Instant};

use moose_proto::ws::Opcode;
use moose_testkit::relay::Relay;
use moose_testkit::ws::WsClient;

const KEY: &str = "rate-capped-line-key-0123456789";
/// The default cap: 4 PCM streams of 400 000 bytes a second.
const CAP_BYTES_PER_SECOND: f64 = 4.0 * 400_000.0;
/// The default burst: a quarter second at the cap.
const BURST_BYTES: f64 = CAP_BYTES_PER_SECOND / 4.0;
/// The flood: 200 messages of 64 KiB, 13 MB, sent as fast as loopback takes them.
const FLOOD: usize = 200;
const BIG: usize = 64 * 1024;
/// One second of PCM: 390 messages of 1024 bytes, in 10 ms steps as a sound card gives them.
const PCM_MESSAGES: usize = 390;

fn dropped(relay: &Relay, reason: &str) -> u64 {
    relay.metric(&format!("moose_ws_dropped_total{{reason=\"{reason}\"}}"))
}

#[test]
fn a_flood_is_capped_and_a_pcm_stream_is_not() {
    let relay = Relay::start(&["--max-peers", "2"], &[("APIKEY", KEY)]);
    let mut sender = WsClient::connect(relay.http, KEY);
    let mut receiver = WsClient::connect(relay.http, KEY);

    // A PCM stream, paced as a client sends it, arrives whole.
    let pcm = [0x11u8; 1024];
    for chunk in 0..PCM_MESSAGES / 4 + 1 {
        for _ in 0..4.min(PCM_MESSAGES - 4 * chunk) {
            sender.send_binary(&pcm);
        }
        thread::sleep(Duration::from_millis(10));
    }
    for _ in 0..PCM_MESSAGES {
        assert_eq!(receiver.recv().payload.len(), pcm.len());
    }
    assert_eq!(dropped(&relay, "rate_capped"), 0);

    // A flood of the largest messages: the receiver reads all it is sent, as it comes.
    let counter = thread::spawn(move || {
        let mut bytes = 0usize;
        let mut messages = 0usize;
        while let Some(frame) = receiver.recv_within(Duration::from_secs(1)) {
            assert_eq!(frame.opcode, Opcode::Binary);
            bytes += frame.payload.len();
            messages += 1;
        }
        (messages, bytes, receiver)
    });
    let big = vec![0x22u8; BIG];
    let started = Instant::now();
    for _ in 0..FLOOD {
        sender.send_binary(&big);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (messages, bytes, _receiver) = counter
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    // The receiver stopped counting a second after the last message it got.
    let allowed = BURST_BYTES + CAP_BYTES_PER_SECOND * (elapsed + 1.0) + BIG as f64;
    eprintln!(
        "{messages} of {FLOOD} messages ({bytes} bytes) through in {elapsed:.2} s; {allowed} \
         bytes allowed"
    );
    assert!(
        (bytes as f64) <= allowed,
        "{bytes} bytes let through in {elapsed:.2} s"
    );
    let capped = dropped(&relay, "rate_capped");
    let slow = dropped(&relay, "slow_receiver");
    assert_eq!(
        capped + slow,
        (FLOOD - messages) as u64,
        "every message not received is counted"
    );
    assert!(capped > 0);
    // The sender stays on the line.
    assert_eq!(relay.metric_sum("moose_line_peers"), 2);
}
