//! WebSocket frames as a stream: header decoding (client and server side), message
//! boundaries, the in-place client-to-server reframing, close payloads. The stream is fed
//! whole and in chunks; both must decode to the same frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moose_proto::ws::{
    Fragments, FrameError, FrameHeader, MAX_HEADER, MessagePart, Opcode, decode_client_header,
    decode_server_header, parse_close, reframe_in_place,
};
use moose_proto_fuzz::WS_MAX_MESSAGE;

/// What one decoded frame looked like, for comparing two runs.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Frame(FrameHeader, Result<MessagePart, FrameError>),
    Error(FrameError),
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let from_client = control & 0x80 == 0;
    let max = match control & 0x60 {
        0x00 => WS_MAX_MESSAGE,
        0x20 => 125,
        0x40 => 0,
        _ => usize::MAX,
    };
    let chunk = usize::from(control & 0x1f).max(1);
    let whole = decode_stream(stream, stream.len().max(1), from_client, max);
    let chunked = decode_stream(stream, chunk, from_client, max);
    assert_eq!(whole, chunked);
});

/// Decodes frames the way the relay does, reading `chunk` bytes at a time.
fn decode_stream(stream: &[u8], chunk: usize, from_client: bool, max: usize) -> Vec<Seen> {
    let mut seen = Vec::new();
    let mut fragments = Fragments::new(max);
    let mut buf: Vec<u8> = Vec::new();
    let mut rest = stream;
    loop {
        let decoded = if from_client {
            decode_client_header(&buf, max)
        } else {
            decode_server_header(&buf, max)
        };
        let header = match decoded {
            Err(e) => {
                seen.push(Seen::Error(e));
                return seen;
            }
            Ok(Some(h)) if buf.len() >= h.frame_len() => h,
            // Need more bytes: a header or a payload is incomplete.
            Ok(_) => {
                if rest.is_empty() {
                    return seen;
                }
                let n = chunk.min(rest.len());
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                continue;
            }
        };
        assert!(header.header_len <= MAX_HEADER);
        assert!(header.payload_len <= max);
        assert_eq!(header.mask.is_some(), from_client);
        let part = fragments.on_data_frame(&header);
        seen.push(Seen::Frame(header, part));
        if part.is_err() {
            return seen;
        }
        let frame_len = header.frame_len();
        let payload = if from_client {
            let server = reframe_in_place(&mut buf[..frame_len], &header);
            assert_eq!(server.end, frame_len);
            let again = decode_server_header(&buf[server.clone()], max)
                .expect("a reframed frame decodes")
                .expect("a reframed frame is complete");
            assert_eq!(
                (again.fin, again.opcode, again.payload_len, again.mask),
                (header.fin, header.opcode, header.payload_len, None)
            );
            server.start + again.header_len..server.end
        } else {
            header.payload_range()
        };
        if header.opcode == Opcode::Close {
            let _ = parse_close(&buf[payload]);
        }
        buf.drain(..frame_len);
    }
}
