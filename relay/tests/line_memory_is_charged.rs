//! A line peer cannot make the relay hold more memory than its receivers' queues allow.
//!
//! A queued message is a slice of the receive block its sender's bytes were read into (64 KiB),
//! and keeps the whole block alive until every receiver wrote it. A message is therefore charged
//! what it pins (its bytes and those read before it that nothing forwarded), so tiny messages
//! between ignored frames fill a slow receiver's queue as fast as the memory they hold. And the
//! pongs the relay owes a peer that pings but never reads are capped.

use std::io::Write;
use std::thread;
use std::time::Duration;

use moose_proto::ws::{self, Opcode};
use moose_testkit::relay::Relay;
use moose_testkit::ws::{WsClient, connect_stalled};

const KEY: &str = "pinned-memory-key-0123456789";
/// The scenario of the issue (800 there, halved to bound the test's time): empty binary
/// messages, each followed by 465 pongs of the largest control payload (125 bytes), 61 KB of
/// frames the relay reads and ignores.
const MESSAGES: usize = 400;
const PONGS_EACH: usize = 465;
/// A slow receiver's queue at the default `--queue-ms 200`: 200 ms of PCM.
const QUEUE_BYTES: u64 = 80_000;
/// What the relay may grow by besides that: the blocks being read and written (a few of
/// 64 KiB) and allocator slack. The relay that charged only the frames' own bytes grew by
/// 47 MB with 800 messages.
const SLACK_KIB: u64 = 3 * 1024;
/// Pings sent by a peer that never reads.
const PINGS: u64 = 40_000;

fn masked(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    ws::encode_client_frame(true, opcode, [0x11, 0x22, 0x33, 0x44], payload, &mut frame);
    frame
}

#[test]
fn tiny_messages_between_ignored_pongs_pin_no_more_than_the_queue_allows() {
    // No rate cap: what bounds the memory here must be the accounting, not the cap. And no
    // write-stall cut of the slow receiver while the test runs.
    let relay = Relay::start(
        &[
            "--max-peers",
            "3",
            "--line-rate-cap",
            "0",
            "--write-stall-timeout",
            "600",
        ],
        &[("APIKEY", KEY)],
    );
    let mut sender = WsClient::connect(relay.http, KEY);
    let mut reader = WsClient::connect(relay.http, KEY);
    let slow = connect_stalled(relay.http, KEY, 4096);
    // The slow receiver's kernel buffers fill with PCM first, so what follows waits in its
    // queue in the relay.
    let pcm = [0x77u8; 16 << 10];
    Relay::fill_towards(
        relay.http.port(),
        slow.local_addr().expect("addr").port(),
        Duration::from_secs(40),
        || {
            // 256 KiB a round (there is no cap): the 4 MiB the kernel may buffer towards the
            // slow receiver fill in seconds even on a loaded machine.
            for _ in 0..16 {
                sender.send_binary(&pcm);
            }
            for _ in 0..16 {
                assert_eq!(reader.recv().payload, pcm);
            }
            thread::sleep(Duration::from_millis(10));
        },
    );
    relay.reset_peak_rss();
    let rss_before = relay.rss_kib();
    let messages_before = relay.metric("moose_ws_messages_in_total");

    // The reader counts what it gets until a second passes without anything.
    let counter = thread::spawn(move || {
        let mut got = 0;
        while let Some(frame) = reader.recv_within(Duration::from_secs(1)) {
            assert_eq!(frame.opcode, Opcode::Binary);
            assert!(frame.payload.is_empty());
            got += 1;
        }
        (got, reader)
    });
    let mut chunk = masked(Opcode::Binary, &[]);
    let pong = masked(Opcode::Pong, &[0x5a; 125]);
    for _ in 0..PONGS_EACH {
        chunk.extend_from_slice(&pong);
    }
    for _ in 0..MESSAGES {
        sender.stream.write_all(&chunk).expect("the relay reads");
    }
    let (got, _reader) = counter
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    // Every message was forwarded. Each is charged the 61 KB its block holds, so the
    // reader's queue, too, keeps only what its bound pays for when two arrive together.
    let forwarded = relay.metric("moose_ws_messages_in_total") - messages_before;
    eprintln!("the reader got {got} of {MESSAGES}");
    assert_eq!(forwarded, MESSAGES as u64);
    assert!(
        got > MESSAGES / 2,
        "the reader got only {got} of {MESSAGES}"
    );

    let growth = relay.peak_rss_kib().saturating_sub(rss_before);
    eprintln!(
        "{} MB of frames sent; relay peak RSS growth {growth} KiB",
        MESSAGES * chunk.len() / 1_000_000
    );
    assert!(
        growth < QUEUE_BYTES / 1024 + SLACK_KIB,
        "the relay grew by {growth} KiB; the slow receiver's queue allows {QUEUE_BYTES} bytes"
    );
}

#[test]
fn a_peer_that_pings_and_never_reads_gets_only_a_few_pongs_queued() {
    let relay = Relay::start(&[], &[("APIKEY", KEY)]);
    let mut pinger = connect_stalled(relay.http, KEY, 4096);
    relay.reset_peak_rss();
    let rss_before = relay.rss_kib();

    // 40 000 pings of 125 bytes: 5 MB of pongs owed, beyond the socket buffers (a relay
    // that queued every pong grew by about 7 MB).
    let ping = masked(Opcode::Ping, &[0xa5; 125]);
    let burst: Vec<u8> = ping.repeat(1000);
    for _ in 0..PINGS / 1000 {
        pinger.write_all(&burst).expect("the relay reads");
    }
    // The relay has read everything once every ping is answered (written) or counted as
    // ignored, but for the few pongs still queued.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let ignored = loop {
        let ignored = relay.metric("moose_ws_dropped_total{reason=\"unanswered_ping\"}");
        let answered_or_ignored = ignored + relay.metric("moose_ws_frames_out_total");
        if answered_or_ignored + 16 >= PINGS || std::time::Instant::now() > deadline {
            break ignored;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let growth = relay.peak_rss_kib().saturating_sub(rss_before);
    eprintln!("{ignored} of {PINGS} pings ignored; relay peak RSS growth {growth} KiB");
    assert!(
        growth < SLACK_KIB,
        "the relay grew by {growth} KiB for the pongs of a peer that never reads"
    );
    assert!(ignored > PINGS / 3, "only {ignored} pings ignored");
    assert_eq!(relay.metric_sum("moose_line_peers"), 1, "the pinger stays");
}
