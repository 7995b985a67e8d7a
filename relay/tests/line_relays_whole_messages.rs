//! Every binary message of a peer reaches every other peer of its line whole and in order, and
//! never comes back to its sender.
#![allow(clippy::unwrap_used)]

use std::thread;
use std::time::Duration;

use moose_proto::ws::Opcode;
use moose_testkit::relay::Relay;
use moose_testkit::ws::WsClient;

const KEY: &str = "line-key-0123456789abcdef";

/// A PCM-sized message whose content names its sender and sequence number.
fn message(sender: u8, seq: u32) -> Vec<u8> {
    let mut m = vec![sender; 1024];
    m[..4].copy_from_slice(&seq.to_be_bytes());
    m
}

#[test]
fn three_peers_get_every_message_in_order_never_back() {
    let relay = Relay::start(&["--max-peers", "3"], &[("APIKEY", KEY)]);
    let mut a = WsClient::connect(relay.http, KEY);
    let mut b = WsClient::connect(relay.http, KEY);
    let c = WsClient::connect(relay.http, KEY);
    b.send_binary(&message(b'b', 7));
    // Readers run while a sends, as real peers do (a peer that stops reading loses its oldest
    // audio by design, see slow_receiver tests).
    // b sent the extra message so it must not hear it; c must hear it exactly once.
    let readers: Vec<_> = [(b, 0), (c, 1)]
        .into_iter()
        .map(|(mut peer, expect_b)| {
            thread::spawn(move || {
                let mut next = 0;
                let mut heard_b = 0;
                while next < 300 || heard_b < expect_b {
                    let frame = peer.recv();
                    assert_eq!(frame.opcode, Opcode::Binary);
                    assert!(frame.fin);
                    if frame.payload[4] == b'b' {
                        assert_eq!(frame.payload, message(b'b', 7));
                        heard_b += 1;
                        continue;
                    }
                    assert_eq!(frame.payload, message(b'a', next), "message {next}");
                    next += 1;
                }
                (peer, heard_b)
            })
        })
        .collect();
    for seq in 0..300 {
        a.send_binary(&message(b'a', seq));
    }
    let mut results: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let (_c, c_heard_b) = results.pop().unwrap();
    let (mut b, b_heard_b) = results.pop().unwrap();
    assert_eq!(c_heard_b, 1);
    assert_eq!(b_heard_b, 0, "b never hears itself");
    let to_a = a.recv();
    assert_eq!(to_a.payload, message(b'b', 7), "a hears b, never itself");
    assert!(a.is_quiet_for(Duration::from_millis(300)));
    assert!(
        b.is_quiet_for(Duration::from_millis(100)),
        "b never hears itself"
    );
    assert_eq!(relay.metric("moose_ws_messages_in_total"), 301);
}

#[test]
fn fragmented_message_arrives_whole_with_a_ping_between_fragments() {
    let relay = Relay::start(&[], &[("APIKEY", KEY)]);
    let mut a = WsClient::connect(relay.http, KEY);
    let mut b = WsClient::connect(relay.http, KEY);
    a.send_frame(false, Opcode::Binary, b"Hel");
    a.send_frame(true, Opcode::Ping, b"still here");
    a.send_frame(false, Opcode::Continuation, b"lo, ");
    a.send_frame(true, Opcode::Continuation, b"line");
    let pong = a.recv();
    assert_eq!(pong.opcode, Opcode::Pong);
    assert_eq!(pong.payload, b"still here");
    let whole = b.recv();
    assert_eq!(whole.opcode, Opcode::Binary);
    assert!(whole.fin);
    assert_eq!(whole.payload, b"Hello, line");
}

#[test]
fn message_dribbled_in_tiny_writes_arrives_whole() {
    let relay = Relay::start(&[], &[("APIKEY", KEY)]);
    let mut a = WsClient::connect(relay.http, KEY);
    let mut b = WsClient::connect(relay.http, KEY);
    // The original server forwarded whatever one read returned: split messages. Write a frame
    // 7 bytes at a time with pauses so the relay sees many partial reads.
    let frame = a.frame_bytes(true, Opcode::Binary, &message(b'a', 42));
    for chunk in frame.chunks(7) {
        a.send_raw(chunk);
        thread::sleep(Duration::from_micros(200));
    }
    let got = b.recv();
    assert_eq!(got.payload, message(b'a', 42));
    assert!(
        b.is_quiet_for(Duration::from_millis(200)),
        "exactly one message"
    );
}

#[test]
fn open_relay_keeps_lines_apart_across_cores() {
    let relay = Relay::start(&["--open", "--cores", "2"], &[]);
    // Enough lines that both cores own some and most peers are handed over to the owner core.
    let mut lines: Vec<(String, WsClient, WsClient)> = (0..12)
        .map(|i| {
            let key = format!("open-line-{i:04}-abcdefgh");
            let a = WsClient::connect(relay.http, &key);
            let b = WsClient::connect(relay.http, &key);
            (key, a, b)
        })
        .collect();
    for (i, (_, a, _)) in lines.iter_mut().enumerate() {
        a.send_binary(&message(i as u8, i as u32));
    }
    for (i, (_, _, b)) in lines.iter_mut().enumerate() {
        let got = b.recv();
        assert_eq!(
            got.payload,
            message(i as u8, i as u32),
            "line {i} got another line's audio"
        );
        assert!(b.is_quiet_for(Duration::from_millis(50)));
    }
    let handoffs = relay.metric("moose_ws_handoffs_total");
    assert!(
        handoffs > 0,
        "with 2 cores some peers must move to their owner core"
    );
}
