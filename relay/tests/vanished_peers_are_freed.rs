//! Peers that vanish without a WebSocket close, round after round: half just close TCP
//! (FIN), half reset it (RST, as a crashed host's kernel would on the next packet). Their
//! partners see them go, the lines disappear, and the relay's descriptors and memory come
//! back to where they were: nothing is kept for a peer that is gone.
#![allow(clippy::unwrap_used)]

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use moose_testkit::relay::Relay;
use moose_testkit::wait::wait_for;
use moose_testkit::ws::WsClient;
use socket2::Socket;

const LINES: usize = 50;
const ROUNDS: usize = 20;
/// Rounds in which the allocator settles; the highest memory seen in them is the yardstick.
const WARM_UP: usize = 5;
/// Growth of resident memory allowed from the warm-up's peak to the end. The allocator's
/// caches move resident memory by a few MiB from round to round (seen: 36 to 42 MiB), so
/// the test looks for growth across rounds: keeping even 4 KiB per vanished peer would
/// add 10 MiB over the rounds after the warm-up.
const MAX_GROWTH_KIB: u64 = 4096;
/// How long memory freed in the last round may take to be handed back: a few of the cores'
/// once-a-second collections.
const SETTLE: Duration = Duration::from_secs(5);

/// Drops the connection with a reset instead of a FIN.
fn reset(stream: TcpStream) {
    let socket = Socket::from(stream);
    socket.set_linger(Some(Duration::ZERO)).unwrap();
    drop(socket);
}

#[test]
fn vanished_peers_are_freed() {
    // A hundred peers from one address: no per-address limit here.
    let relay = Relay::start(&["--open", "--max-connections-per-address", "0"], &[]);
    // The admin connection of the first scrape and the executors' own descriptors settle
    // before the baseline is taken.
    assert_eq!(relay.metric_sum("moose_lines"), 0);
    let baseline_fds = relay.open_fds();
    let mut warm_peak = 0;

    for round in 0..ROUNDS {
        let mut pairs: Vec<(WsClient, WsClient)> = (0..LINES)
            .map(|i| {
                let key = format!("vanishing-line-{round}-{i:08}");
                (
                    WsClient::connect(relay.http, &key),
                    WsClient::connect(relay.http, &key),
                )
            })
            .collect();
        for (a, b) in &mut pairs {
            a.send_binary(&[round as u8; 1024]);
            assert_eq!(b.recv().payload, [round as u8; 1024]);
        }
        assert_eq!(relay.metric_sum("moose_line_peers"), 2 * LINES as u64);

        // Every `a` vanishes, half with a FIN and half with a reset; each `b` stays.
        let mut partners = Vec::with_capacity(LINES);
        for (i, (a, b)) in pairs.into_iter().enumerate() {
            if i % 2 == 0 {
                drop(a.stream);
            } else {
                reset(a.stream);
            }
            partners.push(b);
        }
        wait_for(Duration::from_secs(10), "the vanished peers gone", || {
            relay.metric_sum("moose_line_peers") == LINES as u64
        });
        // The partners are alone on working lines: a newcomer reaches each of them.
        for (i, b) in partners.iter_mut().enumerate().take(4) {
            let mut c = WsClient::connect(relay.http, &format!("vanishing-line-{round}-{i:08}"));
            c.send_binary(b"anyone there?");
            assert_eq!(b.recv().payload, b"anyone there?");
        }
        drop(partners);
        wait_for(Duration::from_secs(10), "every line gone", || {
            relay.metric_sum("moose_lines") == 0 && relay.metric_sum("moose_line_peers") == 0
        });
        wait_for(
            Duration::from_secs(10),
            "descriptors back to the baseline",
            || relay.open_fds() <= baseline_fds,
        );
        if round < WARM_UP {
            warm_peak = warm_peak.max(relay.rss_kib());
        }
    }
    // Each core hands freed pages back to the OS once a second (mi_collect,
    // docs/architecture.md "Memory"), and the last round's were freed just now: what is kept
    // shows as growth that stays, what is merely not handed back yet goes within a few turns.
    let deadline = Instant::now() + SETTLE;
    let mut rss = relay.rss_kib();
    while rss > warm_peak + MAX_GROWTH_KIB && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
        rss = relay.rss_kib();
    }
    assert!(
        rss <= warm_peak + MAX_GROWTH_KIB,
        "resident memory grew from {warm_peak} KiB to {rss} KiB over {} rounds and stayed \
         there for {SETTLE:?}",
        ROUNDS - WARM_UP
    );
}
