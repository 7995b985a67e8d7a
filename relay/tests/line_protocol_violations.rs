//! A peer that breaks RFC 6455 or the line's rules is closed with the right code and then its
//! TCP connection is closed; the rest of its line is not affected. Ping gets pong, and a close
//! from the client is answered with the same code.
//!
//! Every violation test runs on a line limited to two peers: `stay` (well behaved) and the
//! offender. A newcomer can only join once the offender has left, and it must then exchange
//! messages with `stay`, which proves the line survived.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use moose_proto::ws::{CloseCode, Opcode};
use moose_testkit::relay::Relay;
use moose_testkit::ws::WsClient;

const KEY: &str = "protocol-key-0123456789";

const PROTOCOL: &str = "moose_ws_dropped_total{reason=\"protocol\"}";
const OVER_LIMIT: &str = "moose_ws_dropped_total{reason=\"over_limit\"}";

/// Receives the relay's close frame, checks its code, then checks the TCP connection closes.
fn expect_close_and_eof(peer: &mut WsClient, code: CloseCode) {
    let frame = peer.recv();
    assert_eq!(frame.opcode, Opcode::Close, "expected close, got {frame:?}");
    assert_eq!(frame.close_code(), Some(code), "{frame:?}");
    peer.expect_eof(Duration::from_secs(5));
}

/// Starts a relay (`extra` flags added), puts `stay` and an offender on one line, lets the
/// offender send what `offend` builds and expects the relay to close it with `code`. Then a
/// newcomer joins and exchanges a message each way with `stay`. Returns the relay for metric
/// checks.
fn offender_is_closed_and_line_survives(
    extra: &[&str],
    offend: impl FnOnce(&mut WsClient, &mut WsClient) -> Vec<u8>,
    code: CloseCode,
) -> Relay {
    let mut args = vec!["--max-peers", "2"];
    args.extend_from_slice(extra);
    let relay = Relay::start(&args, &[("APIKEY", KEY)]);
    let mut stay = WsClient::connect(relay.http, KEY);
    let mut offender = WsClient::connect(relay.http, KEY);
    let bytes = offend(&mut offender, &mut stay);
    offender.send_raw(&bytes);
    expect_close_and_eof(&mut offender, code);
    // Nothing of the offending frame reached the other peer.
    assert!(stay.is_quiet_for(Duration::from_millis(100)));
    // With two places on the line, this join proves the offender is gone.
    let mut newcomer = WsClient::connect(relay.http, KEY);
    newcomer.send_binary(b"newcomer to stay");
    assert_eq!(stay.recv().payload, b"newcomer to stay");
    stay.send_binary(b"stay to newcomer");
    assert_eq!(newcomer.recv().payload, b"stay to newcomer");
    relay
}

#[test]
fn unmasked_client_frame_closes_with_1002() {
    let relay = offender_is_closed_and_line_survives(
        &[],
        // FIN + binary, mask bit clear, 5-byte payload.
        |_, _| [&[0x82, 0x05][..], b"hello"].concat(),
        CloseCode::PROTOCOL_ERROR,
    );
    assert_eq!(relay.metric(PROTOCOL), 1);
    assert_eq!(relay.metric("moose_ws_messages_in_total"), 2);
}

#[test]
fn oversized_frame_closes_with_1009_on_its_header_alone() {
    let relay = offender_is_closed_and_line_survives(
        &["--max-message", "2048"],
        |offender, stay| {
            // A message exactly at the limit still goes through.
            offender.send_binary(&[7; 2048]);
            assert_eq!(stay.recv().payload, vec![7; 2048]);
            // Only the 14-byte header of a 1 MiB frame: FIN + binary, mask bit + 64-bit
            // length, mask key. The close must come without a byte of payload.
            let mut header = vec![0x82, 0x80 | 127];
            header.extend_from_slice(&(1u64 << 20).to_be_bytes());
            header.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]);
            header
        },
        CloseCode::MESSAGE_TOO_BIG,
    );
    assert_eq!(relay.metric(OVER_LIMIT), 1);
    assert_eq!(relay.metric(PROTOCOL), 0);
}

#[test]
fn text_message_closes_with_1003() {
    let relay = offender_is_closed_and_line_survives(
        &[],
        |offender, _| offender.frame_bytes(true, Opcode::Text, b"hello as text"),
        CloseCode::UNSUPPORTED_DATA,
    );
    assert_eq!(relay.metric(PROTOCOL), 1);
    assert_eq!(relay.metric("moose_ws_messages_in_total"), 2);
}

#[test]
fn reserved_opcode_closes_with_1002() {
    let relay = offender_is_closed_and_line_survives(
        &[],
        |offender, _| {
            let mut frame = offender.frame_bytes(true, Opcode::Binary, b"reserved");
            frame[0] = 0x80 | 0x3;
            frame
        },
        CloseCode::PROTOCOL_ERROR,
    );
    assert_eq!(relay.metric(PROTOCOL), 1);
}

#[test]
fn reserved_bit_closes_with_1002() {
    let relay = offender_is_closed_and_line_survives(
        &[],
        |offender, _| {
            // RSV1 is what permessage-deflate would set; no extension is negotiated.
            let mut frame = offender.frame_bytes(true, Opcode::Binary, b"compressed?");
            frame[0] |= 0x40;
            frame
        },
        CloseCode::PROTOCOL_ERROR,
    );
    assert_eq!(relay.metric(PROTOCOL), 1);
}

#[test]
fn client_close_is_answered_with_the_same_code_and_tcp_closes() {
    let relay = offender_is_closed_and_line_survives(
        &[],
        |leaver, _| leaver.frame_bytes(true, Opcode::Close, &[0x03, 0xe8, b'b', b'y', b'e']),
        CloseCode::NORMAL,
    );
    // A clean close is not a violation.
    assert_eq!(relay.metric(PROTOCOL), 0);
    assert_eq!(relay.metric(OVER_LIMIT), 0);
}

#[test]
fn ping_gets_pong_with_the_same_payload_and_is_not_forwarded() {
    let relay = Relay::start(&[], &[("APIKEY", KEY)]);
    let mut a = WsClient::connect(relay.http, KEY);
    let mut b = WsClient::connect(relay.http, KEY);
    let longest: Vec<u8> = (0..125u8).collect();
    for payload in [&b"moose ping 42"[..], &[], &longest] {
        a.send_frame(true, Opcode::Ping, payload);
        let pong = a.recv();
        assert_eq!(pong.opcode, Opcode::Pong);
        assert!(pong.fin);
        assert_eq!(pong.payload, payload);
    }
    assert!(
        b.is_quiet_for(Duration::from_millis(100)),
        "pings stay local"
    );
    // The connection carries on as usual after the pings.
    a.send_binary(b"after pings");
    assert_eq!(b.recv().payload, b"after pings");
    assert_eq!(relay.metric("moose_ws_messages_in_total"), 1);
}
