//! A line receiver whose socket takes no byte for the write-stall timeout
//! (`--write-stall-timeout`, 30 s by default; 2 s here) is cut: its connection is reset and its
//! descriptor freed, while the others carry on. Until then it only loses its oldest audio.

use std::thread;
use std::time::{Duration, Instant};

use moose_testkit::relay::Relay;
use moose_testkit::ws::{WsClient, connect_stalled};

const KEY: &str = "stalled-receiver-key-0123456789";
const STALL_SECONDS: u64 = 2;
/// How long filling the stalled receiver's buffers may take.
const FILL_WITHIN: Duration = Duration::from_secs(30);

#[test]
fn a_receiver_that_takes_nothing_is_cut_after_the_write_stall_timeout() {
    let stall = STALL_SECONDS.to_string();
    let relay = Relay::start(
        // No rate cap: the sender fills the kernel's buffers towards the stalled peer (up to
        // tcp_wmem's 4 MiB) in a few rounds even on a loaded machine.
        &[
            "--max-peers",
            "3",
            "--write-stall-timeout",
            &stall,
            "--line-rate-cap",
            "0",
        ],
        &[("APIKEY", KEY)],
    );
    let mut sender = WsClient::connect(relay.http, KEY);
    let mut reader = WsClient::connect(relay.http, KEY);
    let stalled = connect_stalled(relay.http, KEY, 4096);
    let stalled_port = stalled.local_addr().expect("addr").port();
    let fds_before = relay.open_fds();

    // Messages of 16 KiB, 128 KiB a round, until the kernel buffers towards the stalled peer
    // are full (the relay's unacknowledged bytes stand still), then on until it is cut.
    let pcm = [0x33u8; 16 << 10];
    let mut send_round = || {
        for _ in 0..8 {
            sender.send_binary(&pcm);
        }
        for _ in 0..8 {
            assert_eq!(reader.recv().payload.len(), pcm.len());
        }
        thread::sleep(Duration::from_millis(10));
    };
    let full = Relay::fill_towards(
        relay.http.port(),
        stalled_port,
        FILL_WITHIN,
        &mut send_round,
    );
    let deadline = full + Duration::from_secs(STALL_SECONDS + 5);
    while relay.metric_sum("moose_line_peers") != 2 {
        assert!(
            Instant::now() < deadline,
            "the stalled receiver is still on the line {:?} after its buffers filled",
            full.elapsed()
        );
        send_round();
    }
    let cut_after = full.elapsed();
    eprintln!("cut {cut_after:?} after its buffers filled");
    assert!(
        cut_after >= Duration::from_secs(STALL_SECONDS) - Duration::from_millis(300),
        "cut before the stall timeout"
    );
    assert_eq!(
        Relay::unacked(relay.http.port(), stalled_port),
        None,
        "the connection is gone from the kernel too"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.open_fds() != fds_before - 1 {
        assert!(Instant::now() < deadline, "the descriptor was not freed");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        relay.metric("moose_connections_cut_total{reason=\"write_stall\"}"),
        1
    );
    // The others carry on.
    send_round();
    drop(stalled);
}
