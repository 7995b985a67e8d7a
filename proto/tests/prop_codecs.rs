//! Round trips of every codec over generated values: WebSocket frames at any split of the
//! byte stream, netstrings and nested lists, every control message (plain and through a real
//! Noise transport), the hello, media packets, and HTTP upgrade requests.
#![allow(clippy::unwrap_used)]

mod prop_support;

use moose_proto::http::{Parse, Upgrade, parse_request, query_param};
use moose_proto::vors::Sid;
use moose_proto::vors::control::{Control, ControlOwned, MAX_CHAT_LEN, MAX_ERR_LEN};
use moose_proto::vors::freshness::UnixTime;
use moose_proto::vors::handshake::{
    ClientHandshake, ServerHandshake, ServerReply, generate_keypair,
};
use moose_proto::vors::hello::{Hello, HelloOwned, MAX_ROOM_LEN, MAX_USERNAME_LEN};
use moose_proto::vors::keys::{KEY_WIRE_LEN, SessionKeys};
use moose_proto::vors::netstring;
use moose_proto::vors::packet::{
    MAX_COUNTER, MAX_OPUS_LEN, MediaPacket, PacketError, check_tag, open, seal,
};
use moose_proto::ws::{
    Fragments, FrameHeader, MessagePart, Opcode, apply_mask, decode_client_header,
    decode_server_header, encode_client_frame, encode_server_frame,
};
use prop_support::config;
use proptest::prelude::*;

// --- WebSocket frames ----------------------------------------------------------------------

/// Above three fragments of 64 KiB, so that every generated message is within it.
const WS_LIMIT: usize = 1 << 18;

/// One frame on the wire: header fields and the (unmasked) payload.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    fin: bool,
    opcode: Opcode,
    payload: Vec<u8>,
}

fn payload(max: usize) -> impl Strategy<Value = Vec<u8>> {
    // Mostly short; sometimes around the 16-bit length boundary (125/126, 65535/65536).
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..=max.min(130)),
        1 => (65_530..65_540usize).prop_map(|n| vec![0x5a; n]),
    ]
    .prop_filter("within the limit", move |p| p.len() <= max)
}

/// A data message in fragments with control frames between them: a legal frame sequence.
fn message() -> impl Strategy<Value = Vec<Frame>> {
    (
        prop_oneof![Just(Opcode::Text), Just(Opcode::Binary)],
        proptest::collection::vec(payload(WS_LIMIT), 1..4),
        proptest::collection::vec(
            prop_oneof![Just(Opcode::Ping), Just(Opcode::Pong), Just(Opcode::Close)],
            0..3,
        ),
    )
        .prop_map(|(opcode, fragments, controls)| {
            let count = fragments.len();
            let mut frames = Vec::new();
            for (i, payload) in fragments.into_iter().enumerate() {
                frames.push(Frame {
                    fin: i + 1 == count,
                    opcode: if i == 0 { opcode } else { Opcode::Continuation },
                    payload,
                });
                if let Some(&control) = controls.get(i) {
                    frames.push(Frame {
                        fin: true,
                        opcode: control,
                        payload: vec![0x11; i * 40],
                    });
                }
            }
            frames
        })
}

/// Decodes `stream` fed in the pieces `cuts` makes, like a connection reading.
fn decode_all(stream: &[u8], cuts: &[usize], from_client: bool) -> Vec<(Frame, MessagePart)> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.push(stream.len());
    points.sort_unstable();
    let mut fed = 0;
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut fragments = Fragments::new(WS_LIMIT);
    for point in points {
        buf.extend_from_slice(&stream[fed..point]);
        fed = point;
        loop {
            let h: FrameHeader = match if from_client {
                decode_client_header(&buf, WS_LIMIT)
            } else {
                decode_server_header(&buf, WS_LIMIT)
            } {
                Ok(Some(h)) if buf.len() >= h.frame_len() => h,
                Ok(_) => break,
                Err(e) => panic!("valid stream refused: {e:?}"),
            };
            let part = fragments.on_data_frame(&h).unwrap();
            let mut payload = buf[h.payload_range()].to_vec();
            if let Some(mask) = h.mask {
                apply_mask(&mut payload, mask, 0);
            }
            let frame = Frame {
                fin: h.fin,
                opcode: h.opcode,
                payload,
            };
            out.push((frame, part));
            buf.drain(..h.frame_len());
        }
    }
    assert!(buf.is_empty(), "bytes left over");
    out
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn ws_frames_decode_at_any_split(
        messages in proptest::collection::vec(message(), 1..4),
        masks in proptest::collection::vec(any::<[u8; 4]>(), 16),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        from_client in any::<bool>(),
    ) {
        let frames: Vec<Frame> = messages.into_iter().flatten().collect();
        let mut stream = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            if from_client {
                encode_client_frame(f.fin, f.opcode, masks[i % masks.len()], &f.payload, &mut stream);
            } else {
                encode_server_frame(f.fin, f.opcode, &f.payload, &mut stream);
            }
        }
        let decoded = decode_all(&stream, &cuts, from_client);
        let got: Vec<Frame> = decoded.iter().map(|(f, _)| f.clone()).collect();
        prop_assert_eq!(&got, &frames);
        // The fragment tracker agrees with how the messages were cut.
        for (frame, part) in &decoded {
            let want = match (frame.opcode, frame.fin) {
                (op, _) if op.is_control() => MessagePart::Whole(op),
                (Opcode::Continuation, false) => MessagePart::Middle,
                (Opcode::Continuation, true) => match *part {
                    MessagePart::Last(op) => MessagePart::Last(op),
                    other => return Err(TestCaseError::fail(format!("{other:?}"))),
                },
                (op, true) => MessagePart::Whole(op),
                (op, false) => MessagePart::First(op),
            };
            prop_assert_eq!(*part, want);
        }
    }
}

// --- Netstrings ----------------------------------------------------------------------------

/// A value of a VoRS message: bytes, or a list of values.
#[derive(Debug, Clone)]
enum Tree {
    Leaf(Vec<u8>),
    List(Vec<Tree>),
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = proptest::collection::vec(any::<u8>(), 0..40).prop_map(Tree::Leaf);
    leaf.prop_recursive(4, 32, 5, |inner| {
        proptest::collection::vec(inner, 0..5).prop_map(Tree::List)
    })
}

/// The payload a value's netstring holds: the bytes, or the items' netstrings back to back.
fn payload_of(t: &Tree) -> Vec<u8> {
    match t {
        Tree::Leaf(bytes) => bytes.clone(),
        Tree::List(items) => {
            let mut out = Vec::new();
            for item in items {
                netstring::encode(&payload_of(item), &mut out);
            }
            out
        }
    }
}

/// Reads `payload` back along the shape of `t`, asserting every item.
fn check_tree(t: &Tree, payload: &[u8]) -> Result<(), TestCaseError> {
    match t {
        Tree::Leaf(bytes) => prop_assert_eq!(payload, &bytes[..]),
        Tree::List(items) => {
            let got: Vec<&[u8]> = netstring::list_items(payload)
                .collect::<Result<_, _>>()
                .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(got.len(), items.len());
            for (item, bytes) in items.iter().zip(got) {
                check_tree(item, bytes)?;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn netstring_round_trip_every_prefix_needs_more(
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        trailing in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut wire = Vec::new();
        netstring::encode(&payload, &mut wire);
        prop_assert_eq!(wire.len(), netstring::encoded_len(payload.len()));
        for cut in 0..wire.len() {
            prop_assert_eq!(netstring::decode(&wire[..cut], payload.len()), Ok(None));
        }
        let whole = wire.len();
        wire.extend_from_slice(&trailing);
        prop_assert_eq!(netstring::decode(&wire, payload.len()), Ok(Some((&payload[..], whole))));
        if !payload.is_empty() {
            prop_assert!(netstring::decode(&wire, payload.len() - 1).is_err());
        }
    }

    #[test]
    fn nested_netstring_lists_round_trip(t in tree()) {
        let mut wire = Vec::new();
        netstring::encode(&payload_of(&t), &mut wire);
        let (payload, used) = netstring::decode(&wire, wire.len()).unwrap().unwrap();
        prop_assert_eq!(used, wire.len());
        check_tree(&t, payload)?;
        if let Tree::List(items) = &t {
            let payloads: Vec<Vec<u8>> = items.iter().map(payload_of).collect();
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let mut listed = Vec::new();
            netstring::encode_list(&refs, &mut listed);
            prop_assert_eq!(listed, wire);
        }
    }
}

// --- Control messages and the hello --------------------------------------------------------

/// Text without control characters, 1..=`max` bytes of UTF-8.
fn name(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        any::<char>().prop_filter("printable", |c| !c.is_control()),
        1..20,
    )
    .prop_map(String::from_iter)
    .prop_filter("within the limit", move |s| s.len() <= max)
}

/// Any text up to `max` bytes, control characters included (chat and ERR allow them).
fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::collection::vec(any::<char>(), 0..40).prop_map(String::from_iter),
        1 => Just("x".repeat(max)),
    ]
    .prop_filter("within the limit", move |s| s.len() <= max)
}

fn sid() -> impl Strategy<Value = Sid> {
    any::<u8>().prop_map(Sid)
}

fn control() -> impl Strategy<Value = ControlOwned> {
    prop_oneof![
        any::<[u8; 16]>().prop_map(ControlOwned::Cookie),
        text(MAX_ERR_LEN).prop_map(ControlOwned::Err),
        sid().prop_map(ControlOwned::Sid),
        Just(ControlOwned::Ping),
        Just(ControlOwned::Pong),
        (
            sid(),
            name(MAX_USERNAME_LEN),
            proptest::collection::vec(any::<u8>(), KEY_WIRE_LEN)
        )
            .prop_map(|(sid, username, key)| ControlOwned::Add {
                sid,
                username,
                key: key.try_into().unwrap(),
            }),
        sid().prop_map(ControlOwned::Del),
        proptest::option::of(sid()).prop_map(ControlOwned::Muted),
        proptest::option::of(sid()).prop_map(ControlOwned::Unmuted),
        (proptest::option::of(sid()), text(MAX_CHAT_LEN))
            .prop_map(|(sid, msg)| ControlOwned::Chat { sid, msg }),
    ]
}

fn hello() -> impl Strategy<Value = HelloOwned> {
    (
        name(MAX_USERNAME_LEN),
        name(MAX_ROOM_LEN),
        proptest::option::of(any::<[u8; 32]>()),
    )
        .prop_map(|(username, room, password_hash)| HelloOwned {
            username,
            room,
            password_hash,
        })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn every_control_message_round_trips(msg in control()) {
        let mut wire = Vec::new();
        msg.as_control().encode(&mut wire).unwrap();
        prop_assert_eq!(Control::decode(&wire).map(|m| m.to_owned()), Ok(msg));
    }

    #[test]
    fn hello_round_trips(hello in hello(), sent_at in proptest::option::of(any::<u64>())) {
        let sent_at = sent_at.map(UnixTime);
        let mut wire = Vec::new();
        hello.as_hello().encode(sent_at, &mut wire).unwrap();
        let decoded = Hello::decode(&wire).map(|(h, sent_at)| (h.to_owned(), sent_at));
        prop_assert_eq!(decoded, Ok((hello, sent_at)));
    }
}

proptest! {
    // A real handshake per case (X25519 and Kyber1024): fewer cases.
    #![proptest_config(config(32))]

    #[test]
    fn control_messages_round_trip_through_the_noise_transport(
        hello in hello(),
        cookie in any::<[u8; 16]>(),
        msgs in proptest::collection::vec(control(), 1..8),
    ) {
        let (private, public) = generate_keypair().unwrap();
        let sent_at = Some(UnixTime(1_800_000_000));
        let (client, msg1) = ClientHandshake::start(&public, &hello.as_hello(), sent_at).unwrap();
        let (server, got, got_sent_at) = ServerHandshake::respond_to(&private, &msg1).unwrap();
        prop_assert_eq!(&got, &hello);
        prop_assert_eq!(got_sent_at, sent_at);
        let (msg2, mut server_tx, server_keys) = server.accept(&cookie).unwrap();
        let (reply, mut client_tx, client_keys) = client.finish(&msg2).unwrap();
        prop_assert_eq!(reply, ServerReply::Cookie(cookie));
        prop_assert_eq!(server_keys.to_wire(), client_keys.to_wire());
        for (i, msg) in msgs.iter().enumerate() {
            // Alternate directions: each side's nonces advance independently.
            let (tx, rx) = if i % 2 == 0 {
                (&mut client_tx, &mut server_tx)
            } else {
                (&mut server_tx, &mut client_tx)
            };
            let mut frame = Vec::new();
            tx.encrypt_control(&msg.as_control(), &mut frame).unwrap();
            let (ciphertext, used) = netstring::decode(&frame, frame.len()).unwrap().unwrap();
            prop_assert_eq!(used, frame.len());
            prop_assert_eq!(&rx.decrypt_control(ciphertext).unwrap(), msg);
        }
    }
}

// --- Media packets -------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn media_packets_seal_then_open(
        wire in proptest::collection::vec(any::<u8>(), KEY_WIRE_LEN),
        other in proptest::collection::vec(any::<u8>(), KEY_WIRE_LEN),
        sid in sid(),
        pkt in 0..=MAX_COUNTER,
        frame in 0..=MAX_COUNTER,
        opus in proptest::collection::vec(any::<u8>(), 0..=MAX_OPUS_LEN),
        flip in any::<(usize, u8)>(),
    ) {
        let keys = SessionKeys::from_wire(&wire.try_into().unwrap());
        let mut packet = Vec::new();
        seal(&keys, sid, pkt, frame, &opus, &mut packet).unwrap();
        let view = MediaPacket::parse(&packet).unwrap();
        prop_assert_eq!((view.sid(), view.pkt(), view.frame()), (sid, pkt, frame));
        prop_assert!(check_tag(&packet, &keys.mac));
        let mut out = vec![0xee];
        prop_assert_eq!(open(&keys, &packet, &mut out), Ok((pkt, frame)));
        prop_assert_eq!(&out[1..], &opus[..]);

        // Any changed bit fails the tag; so do other keys (unless they share the MAC key).
        let mut forged = packet.clone();
        let (at, bit) = flip;
        forged[at % packet.len()] ^= 1 << (bit % 8);
        prop_assert_eq!(open(&keys, &forged, &mut Vec::new()), Err(PacketError::BadTag));
        let other = SessionKeys::from_wire(&other.try_into().unwrap());
        if other.mac != keys.mac {
            prop_assert!(!check_tag(&packet, &other.mac));
        }
    }

    #[test]
    fn media_counters_and_lengths_are_bounded(
        pkt in any::<u32>(),
        frame in any::<u32>(),
        len in 0..=MAX_OPUS_LEN + 10,
    ) {
        let keys = SessionKeys::from_wire(&[1; KEY_WIRE_LEN]);
        let result = seal(&keys, Sid(1), pkt, frame, &vec![0; len], &mut Vec::new());
        let want = if pkt > MAX_COUNTER || frame > MAX_COUNTER {
            Err(PacketError::CounterOverflow)
        } else if len > MAX_OPUS_LEN {
            Err(PacketError::PayloadTooLong)
        } else {
            Ok(())
        };
        prop_assert_eq!(result, want);
    }
}

// --- HTTP upgrade requests -----------------------------------------------------------------

/// A header name in some mix of upper and lower case.
fn cased(name: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<bool>(), name.len()).prop_map(move |upper| {
        name.chars()
            .zip(upper)
            .map(|(c, u)| {
                if u {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    })
}

fn token(min: usize, max: usize) -> impl Strategy<Value = String> {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    proptest::collection::vec(proptest::sample::select(CHARS), min..=max)
        .prop_map(|bytes| String::from_utf8(bytes).unwrap())
}

fn base64_16(bytes: [u8; 16]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out + "=="
}

#[derive(Debug, Clone)]
struct UpgradeRequest {
    path: String,
    apikey: String,
    before: Vec<(String, String)>,
    host: String,
    origin: Option<String>,
    key: String,
    names: [String; 4],
}

fn upgrade_request() -> impl Strategy<Value = UpgradeRequest> {
    (
        token(0, 12),
        token(16, 64),
        proptest::collection::vec((token(1, 10), token(0, 20)), 0..4),
        token(1, 20),
        proptest::option::of(token(1, 20)),
        any::<[u8; 16]>(),
        (
            cased("upgrade"),
            cased("connection"),
            cased("sec-websocket-version"),
            cased("sec-websocket-key"),
        ),
    )
        .prop_map(
            |(path, apikey, before, host, origin, nonce, (u, c, v, k))| UpgradeRequest {
                path: format!("/{path}"),
                apikey,
                // Extra headers named X-...: never one of the headers the parser looks for.
                before: before
                    .into_iter()
                    .map(|(n, v)| (format!("X-{n}"), v))
                    .collect(),
                host,
                origin,
                key: base64_16(nonce),
                names: [u, c, v, k],
            },
        )
}

impl UpgradeRequest {
    fn bytes(&self) -> Vec<u8> {
        let mut s = format!("GET {}?apikey={}&v=1 HTTP/1.1\r\n", self.path, self.apikey);
        for (name, value) in &self.before {
            s += &format!("{name}: {value}\r\n");
        }
        s += &format!("Host: {}\r\n", self.host);
        if let Some(origin) = &self.origin {
            s += &format!("Origin: https://{origin}\r\n");
        }
        let [u, c, v, k] = &self.names;
        s += &format!(
            "{u}: websocket\r\n{c}: keep-alive, Upgrade\r\n{v}: 13\r\n{k}: {}\r\n\r\n",
            self.key
        );
        s.into_bytes()
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn generated_upgrade_requests_parse(req in upgrade_request(), trailing in proptest::collection::vec(any::<u8>(), 0..16)) {
        let head = req.bytes();
        for cut in (0..head.len()).step_by(7) {
            prop_assert!(matches!(parse_request(&head[..cut]), Ok(Parse::Partial)));
        }
        let mut buf = head.clone();
        buf.extend_from_slice(&trailing);
        let Ok(Parse::Complete { value, head_len }) = parse_request(&buf) else {
            return Err(TestCaseError::fail("not complete"));
        };
        prop_assert_eq!(head_len, head.len());
        prop_assert_eq!(value.method, "GET");
        prop_assert_eq!(value.path, req.path.as_str());
        prop_assert_eq!(value.host, Some(req.host.as_str()));
        let origin = req.origin.as_ref().map(|o| format!("https://{o}"));
        prop_assert_eq!(value.origin, origin.as_deref());
        prop_assert_eq!(value.upgrade, Upgrade::WebSocket { key: &req.key });
        let apikey = query_param(value.query, "apikey").unwrap();
        prop_assert_eq!(apikey.as_deref(), Some(req.apikey.as_str()));
        prop_assert!(moose_proto::apikey::validate(req.apikey.as_bytes()).is_ok());
    }
}
