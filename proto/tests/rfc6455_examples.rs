//! The worked examples of RFC 6455, byte for byte: the opening handshake of §1.2/§1.3 and
//! the framing examples of §5.7. These are published vectors; if one fails, the codec is
//! wrong, not the test.

use moose_proto::http::{self, Parse, Upgrade};
use moose_proto::ws::{
    self, Fragments, FrameHeader, MessagePart, Opcode, decode_client_header, decode_server_header,
};

/// §5.7: "A single-frame unmasked text message".
const UNMASKED_HELLO: &[u8] = &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
/// §5.7: "A single-frame masked text message".
const MASKED_HELLO: &[u8] = &[
    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];
/// §5.7: "A fragmented unmasked text message", first and second fragment.
const HEL: &[u8] = &[0x01, 0x03, 0x48, 0x65, 0x6c];
const LO: &[u8] = &[0x80, 0x02, 0x6c, 0x6f];
/// §5.7: "Unmasked Ping request and masked Ping response" (the response is a Pong).
const UNMASKED_PING: &[u8] = &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
const MASKED_PONG: &[u8] = &[
    0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];
/// §5.7: 256 bytes / 64 KiB of binary data in a single unmasked frame: the headers.
const BINARY_256_HEADER: &[u8] = &[0x82, 0x7e, 0x01, 0x00];
const BINARY_64K_HEADER: &[u8] = &[0x82, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00];

const LIMIT: usize = 1 << 20;

fn server(buf: &[u8]) -> FrameHeader {
    decode_server_header(buf, LIMIT)
        .expect("valid server frame")
        .expect("complete header")
}

fn client(buf: &[u8]) -> FrameHeader {
    decode_client_header(buf, LIMIT)
        .expect("valid client frame")
        .expect("complete header")
}

/// Every strict prefix of the header is "need more", never an error.
fn assert_prefixes_partial(frame: &[u8], header_len: usize, from_client: bool) {
    for n in 0..header_len {
        let got = if from_client {
            decode_client_header(&frame[..n], LIMIT)
        } else {
            decode_server_header(&frame[..n], LIMIT)
        };
        assert_eq!(got, Ok(None), "prefix of {n} bytes");
    }
}

#[test]
fn opening_handshake_section_1_2() {
    let request = b"GET /chat HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";
    let Ok(Parse::Complete {
        value: req,
        head_len,
    }) = http::parse_request(request)
    else {
        panic!("the RFC's request must parse");
    };
    assert_eq!(head_len, request.len());
    assert_eq!(
        (req.path, req.host, req.origin),
        (
            "/chat",
            Some("server.example.com"),
            Some("http://example.com")
        )
    );
    let Upgrade::WebSocket { key } = req.upgrade else {
        panic!("the RFC's request is a valid upgrade: {:?}", req.upgrade);
    };
    // §1.3: the accept value for this key.
    assert_eq!(http::accept_key(key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    let mut response = Vec::new();
    http::write_switching_protocols(key, &mut response);
    assert_eq!(
        response,
        b"HTTP/1.1 101 Switching Protocols\r\n\
          Upgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
}

#[test]
fn unmasked_hello() {
    let h = server(UNMASKED_HELLO);
    assert_eq!(
        h,
        FrameHeader {
            fin: true,
            opcode: Opcode::Text,
            mask: None,
            payload_len: 5,
            header_len: 2
        }
    );
    assert_eq!(&UNMASKED_HELLO[h.payload_range()], b"Hello");
    assert_prefixes_partial(UNMASKED_HELLO, 2, false);
    let mut out = Vec::new();
    ws::encode_server_frame(true, Opcode::Text, b"Hello", &mut out);
    assert_eq!(out, UNMASKED_HELLO);
    // The relay refuses this frame from a client: 1002.
    assert_eq!(
        decode_client_header(UNMASKED_HELLO, LIMIT),
        Err(ws::FrameError::Unmasked)
    );
    assert_eq!(
        ws::FrameError::Unmasked.close_code(),
        ws::CloseCode::PROTOCOL_ERROR
    );
}

#[test]
fn masked_hello() {
    let h = client(MASKED_HELLO);
    assert_eq!(
        h,
        FrameHeader {
            fin: true,
            opcode: Opcode::Text,
            mask: Some([0x37, 0xfa, 0x21, 0x3d]),
            payload_len: 5,
            header_len: 6
        }
    );
    assert_prefixes_partial(MASKED_HELLO, 6, true);
    let mut out = Vec::new();
    ws::encode_client_frame(
        true,
        Opcode::Text,
        [0x37, 0xfa, 0x21, 0x3d],
        b"Hello",
        &mut out,
    );
    assert_eq!(out, MASKED_HELLO);
    // The relay's hot path turns the masked example into the unmasked one, in place.
    let mut frame = MASKED_HELLO.to_vec();
    let range = ws::reframe_in_place(&mut frame, &h);
    assert_eq!(&frame[range], UNMASKED_HELLO);
    assert_eq!(
        decode_server_header(MASKED_HELLO, LIMIT),
        Err(ws::FrameError::Masked)
    );
}

#[test]
fn fragmented_hello() {
    let first = server(HEL);
    let last = server(LO);
    assert_eq!(
        (first.fin, first.opcode, &HEL[first.payload_range()]),
        (false, Opcode::Text, &b"Hel"[..])
    );
    assert_eq!(
        (last.fin, last.opcode, &LO[last.payload_range()]),
        (true, Opcode::Continuation, &b"lo"[..])
    );
    let mut fragments = Fragments::new(5);
    assert_eq!(
        fragments.on_data_frame(&first),
        Ok(MessagePart::First(Opcode::Text))
    );
    assert_eq!(
        fragments.on_data_frame(&last),
        Ok(MessagePart::Last(Opcode::Text))
    );
    // One byte less of budget and the second fragment crosses the limit.
    let mut tight = Fragments::new(4);
    assert!(tight.on_data_frame(&first).is_ok());
    assert_eq!(tight.on_data_frame(&last), Err(ws::FrameError::TooLarge));
    let mut out = Vec::new();
    ws::encode_server_frame(false, Opcode::Text, b"Hel", &mut out);
    ws::encode_server_frame(true, Opcode::Continuation, b"lo", &mut out);
    assert_eq!(out, [HEL, LO].concat());
}

#[test]
fn ping_and_pong() {
    let ping = server(UNMASKED_PING);
    assert_eq!(
        (ping.opcode, &UNMASKED_PING[ping.payload_range()]),
        (Opcode::Ping, &b"Hello"[..])
    );
    let pong = client(MASKED_PONG);
    assert_eq!(
        (pong.opcode, pong.payload_len, pong.mask),
        (Opcode::Pong, 5, Some([0x37, 0xfa, 0x21, 0x3d]))
    );
    let mut payload = MASKED_PONG[pong.payload_range()].to_vec();
    ws::apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
    assert_eq!(payload, b"Hello");
    let mut out = Vec::new();
    ws::encode_client_frame(
        true,
        Opcode::Pong,
        [0x37, 0xfa, 0x21, 0x3d],
        b"Hello",
        &mut out,
    );
    assert_eq!(out, MASKED_PONG);
}

#[test]
fn binary_256_and_64k_length_encodings() {
    for (header, len) in [(BINARY_256_HEADER, 256usize), (BINARY_64K_HEADER, 65536)] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut frame = header.to_vec();
        frame.extend_from_slice(&payload);
        let h = server(&frame);
        assert_eq!(
            (h.fin, h.opcode, h.payload_len, h.header_len),
            (true, Opcode::Binary, len, header.len())
        );
        assert_prefixes_partial(&frame, header.len(), false);
        let mut out = Vec::new();
        ws::encode_server_frame(true, Opcode::Binary, &payload, &mut out);
        assert_eq!(out, frame, "{len}-byte encoding");
        // Over the limit, the header alone is enough to refuse it.
        assert_eq!(
            decode_server_header(header, len - 1),
            Err(ws::FrameError::TooLarge)
        );
    }
}
