//! Writes the seed corpora, `fuzz/seeds/<target>/<name>`, from valid inputs made with
//! moose-proto's own encoders. Run from the repository root when a decoder or an input
//! layout changes:
//!
//! ```sh
//! cargo +nightly run --manifest-path fuzz/Cargo.toml --example make_seeds [TARGET...]
//! ```
//!
//! Everything is deterministic except the Noise messages (`noise_msg1` mode 0 and
//! `noise_msg2` mode 0), whose ephemeral keys `snow` draws from the operating system.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use moose_proto::vors::Sid;
use moose_proto::vors::control::Control;
use moose_proto::vors::handshake::{ClientHandshake, ServerHandshake};
use moose_proto::vors::hello::{Hello, HelloOwned};
use moose_proto::vors::keys::hash_password;
use moose_proto::vors::netstring;
use moose_proto::vors::packet::seal;
use moose_proto::ws::{CloseCode, Opcode, close_payload, encode_client_frame, encode_server_frame};
use moose_proto::cluster::link::{LinkHeader, MAX_LINK_LEN, encode};
use moose_proto::cluster::{RelayId, RoomId};
use moose_proto::vors::freshness::UnixTime;
use moose_proto_fuzz::{
    LINK_KEY, LINK_TO, SERVER_PRIVATE, WALL, cookie, edge_room, media_keys, record, server_public,
};

const BROWSER: &[u8] = b"GET /ws?apikey=0123456789abcdef0123 HTTP/1.1\r\n\
    Host: relay.example\r\n\
    Upgrade: websocket\r\n\
    Connection: keep-alive, Upgrade\r\n\
    Origin: https://relay.example\r\n\
    Sec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

struct Seeds {
    dir: PathBuf,
    count: usize,
}

impl Seeds {
    fn target(root: &Path, name: &str) -> Seeds {
        let dir = root.join(name);
        // Start clean, so that a renamed seed does not linger.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create seed directory");
        Seeds { dir, count: 0 }
    }

    fn add(&mut self, name: &str, bytes: &[u8]) {
        fs::write(self.dir.join(name), bytes).expect("write seed");
        self.count += 1;
    }
}

impl Drop for Seeds {
    fn drop(&mut self) {
        println!("{}: {} seeds", self.dir.display(), self.count);
    }
}

fn with_prefix(prefix: u8, bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![prefix];
    v.extend_from_slice(bytes);
    v
}

/// Writes one target's seeds under the given root.
type Maker<'a> = dyn Fn(&Path) + 'a;

/// Regenerates the seeds of the targets named on the command line, or of all.
fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let only: Vec<String> = std::env::args().skip(1).collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let messages = control_messages();
    let makers: [(&str, &Maker<'_>); 11] = [
        ("http_request", &http_request),
        ("ws_frames", &ws_frames),
        ("netstring", &netstrings),
        ("vors_control", &|r| vors_control(r, &messages)),
        ("vors_hello", &vors_hello),
        ("noise_msg1", &noise_msg1),
        ("noise_msg2", &|r| noise_msg2(r, &messages)),
        ("vors_sessions", &|r| vors_sessions(r, &messages)),
        ("media_open", &media_open),
        ("media_edge", &media_edge),
        ("cluster_link", &cluster_link),
    ];
    for (name, make) in makers {
        if wanted(name) {
            make(&root);
        }
    }
}

fn http_request(root: &Path) {
    let mut s = Seeds::target(root, "http_request");
    s.add("browser_upgrade", BROWSER);
    let mut trailing = BROWSER.to_vec();
    trailing.extend_from_slice(&[0x82, 0x85, 1, 2, 3, 4, 0x69, 0x67, 0x6f, 0x68, 0x6e]);
    s.add("upgrade_then_frame", &trailing);
    s.add(
        "page",
        b"GET /?apikey=0123456789abcdef0123 HTTP/1.1\r\nHost: r\r\n\r\n",
    );
    s.add(
        "percent_query",
        b"GET /ws?x=1&apikey=ab%2Dcd_0123456789ab HTTP/1.1\r\n\r\n",
    );
    s.add("http10", b"GET / HTTP/1.0\r\n\r\n");
    s.add(
        "bad_version",
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
          Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    s.add(
        "metrics",
        b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9477\r\n\r\n",
    );
}

fn ws_frames(root: &Path) {
    let mut s = Seeds::target(root, "ws_frames");
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    // Control byte: bit 7 = server frames, bits 5-6 = limit (0: 64 KiB), bits 0-4 = chunk.
    let mut client = Vec::new();
    encode_client_frame(true, Opcode::Binary, mask, &[0x55; 1024], &mut client);
    s.add("client_binary_1024", &with_prefix(0x07, &client));
    let mut frag = Vec::new();
    encode_client_frame(false, Opcode::Text, mask, b"Hel", &mut frag);
    encode_client_frame(true, Opcode::Ping, mask, b"ping", &mut frag);
    encode_client_frame(true, Opcode::Continuation, mask, b"lo", &mut frag);
    encode_client_frame(
        true,
        Opcode::Close,
        mask,
        &close_payload(CloseCode::NORMAL, "bye"),
        &mut frag,
    );
    s.add("client_fragmented_ping_close", &with_prefix(0x03, &frag));
    let mut long = Vec::new();
    encode_client_frame(true, Opcode::Binary, mask, &[1; 70_000], &mut long);
    s.add(
        "client_64bit_length_too_big",
        &with_prefix(0x1f, &long[..64]),
    );
    let mut server = Vec::new();
    encode_server_frame(true, Opcode::Binary, &[0xaa; 300], &mut server);
    encode_server_frame(true, Opcode::Pong, b"ping", &mut server);
    encode_server_frame(
        true,
        Opcode::Close,
        &close_payload(CloseCode::MESSAGE_TOO_BIG, ""),
        &mut server,
    );
    s.add("server_frames", &with_prefix(0x85, &server));
}

fn netstrings(root: &Path) {
    let mut s = Seeds::target(root, "netstring");
    s.add("hello", b"\x05\x05:hello,");
    s.add("empty", b"\x010:,");
    let mut list = vec![3u8];
    netstring::encode_list(&[b"alice", b"lobby", b""], &mut list);
    s.add("list", &list);
    let mut inner = Vec::new();
    netstring::encode_list(&[b"a", b"bc"], &mut inner);
    let mut nested = vec![5u8];
    netstring::encode_list(&[b"CHAT", &inner, b""], &mut nested);
    s.add("nested_list", &nested);
    s.add("two_in_a_row", b"\x045:hello,3:abc,");
}

fn control_messages() -> Vec<(&'static str, Vec<u8>)> {
    let key = media_keys(0).to_wire();
    let cookie = cookie(0);
    let messages: [(&str, Control<'_>); 14] = [
        ("cookie", Control::Cookie(&cookie)),
        ("err", Control::Err("room is full")),
        // As servers send it: padded to the length of a COOKIE reply.
        ("err_padded", Control::Err("room is full       ")),
        ("sid", Control::Sid(Sid(3))),
        ("ping", Control::Ping),
        ("pong", Control::Pong),
        (
            "add",
            Control::Add {
                sid: Sid(4),
                username: "alice",
                key: &key,
            },
        ),
        ("del", Control::Del(Sid(4))),
        ("muted", Control::Muted(None)),
        ("muted_sid", Control::Muted(Some(Sid(4)))),
        ("unmuted", Control::Unmuted(None)),
        ("unmuted_sid", Control::Unmuted(Some(Sid(4)))),
        (
            "chat",
            Control::Chat {
                sid: None,
                msg: "hi",
            },
        ),
        (
            "chat_sid",
            Control::Chat {
                sid: Some(Sid(4)),
                msg: "hi all",
            },
        ),
    ];
    messages
        .iter()
        .map(|(name, msg)| {
            let mut bytes = Vec::new();
            msg.encode(&mut bytes).expect("encode");
            (*name, bytes)
        })
        .collect()
}

fn vors_control(root: &Path, messages: &[(&str, Vec<u8>)]) {
    let mut s = Seeds::target(root, "vors_control");
    for (name, bytes) in messages {
        s.add(name, bytes);
    }
    // The bare form (items without the list's own netstring), which decoding also accepts.
    s.add("bare_ping", b"4:PING,");
}

/// Seeds need no `--cfg fuzzing`: message 1 comes from the public `ClientHandshake::start`.
fn vors_sessions(root: &Path, messages: &[(&str, Vec<u8>)]) {
    let mut s = Seeds::target(root, "vors_sessions");
    // Flags 3: both sessions joined; 0: both waiting for the cookie or SID.
    for flags in [0u8, 3] {
        let mut all = vec![flags];
        for (direction, (name, plaintext)) in (0u8..).zip(messages) {
            let mut one = vec![flags];
            record(0, plaintext, &mut one);
            record(1, plaintext, &mut one);
            s.add(&format!("{name}_flags{flags}"), &one);
            record(direction % 4, plaintext, &mut all);
        }
        s.add(&format!("all_flags{flags}"), &all);
    }
}

fn hellos() -> Vec<(&'static str, HelloOwned)> {
    let hash = hash_password("secret");
    let hellos = [
        (
            "no_password",
            Hello {
                username: "alice",
                room: "lobby",
                password_hash: None,
            },
        ),
        (
            "password",
            Hello {
                username: "bob",
                room: "the room",
                password_hash: Some(&hash),
            },
        ),
    ];
    hellos
        .iter()
        .map(|(name, hello)| (*name, hello.to_owned()))
        .collect()
}

fn encoded(hello: &HelloOwned, sent_at: Option<UnixTime>) -> Vec<u8> {
    let mut bytes = Vec::new();
    hello.as_hello().encode(sent_at, &mut bytes).expect("encode");
    bytes
}

fn vors_hello(root: &Path) {
    let mut s = Seeds::target(root, "vors_hello");
    for (name, hello) in hellos() {
        s.add(name, &encoded(&hello, Some(WALL)));
        s.add(&format!("{name}_untimed"), &encoded(&hello, None));
    }
}

fn noise_msg1(root: &Path) {
    let mut s = Seeds::target(root, "noise_msg1");
    for (name, hello) in hellos() {
        let payload = encoded(&hello, Some(WALL));
        // Mode 0: the message itself, valid for the target's fixed server key.
        let (_, msg1) = ClientHandshake::start(&server_public(), &hello.as_hello(), Some(WALL))
            .expect("start");
        s.add(&format!("message_{name}"), &with_prefix(0, &msg1));
        // Odd modes: the payload, cut after the magic (mode 15) or inside message 1.
        s.add(&format!("payload_{name}"), &with_prefix(15, &payload));
        s.add(&format!("payload_{name}_cut"), &with_prefix(201, &payload));
        // Stale (a day before the target's clock) and untimed: decrypted, then refused.
        let stale = encoded(&hello, Some(UnixTime(WALL.0 - 86_400)));
        s.add(&format!("payload_{name}_stale"), &with_prefix(15, &stale));
        let untimed = encoded(&hello, None);
        s.add(&format!("payload_{name}_untimed"), &with_prefix(15, &untimed));
    }
}

fn noise_msg2(root: &Path, messages: &[(&str, Vec<u8>)]) {
    let mut s = Seeds::target(root, "noise_msg2");
    for (name, payload) in messages {
        if *name == "cookie" || name.starts_with("err") {
            s.add(&format!("payload_{name}"), &with_prefix(1, payload));
            s.add(&format!("payload_{name}_cut"), &with_prefix(41, payload));
        }
    }
    s.add("payload_ping", &with_prefix(1, b"7:4:PING,,"));
    // Mode 0: a real message 2 (to another client, so it must be refused).
    let (hello_name, hello) = &hellos()[0];
    let (_client, msg1) =
        ClientHandshake::start(&server_public(), &hello.as_hello(), Some(WALL)).expect("start");
    let (server, _, _) = ServerHandshake::respond_to(&SERVER_PRIVATE, &msg1).expect("msg1");
    let (msg2, _, _) = server.accept(&cookie(0)).expect("accept");
    s.add(&format!("message_{hello_name}"), &with_prefix(0, &msg2));
}

fn media_open(root: &Path) {
    let mut s = Seeds::target(root, "media_open");
    for (pick, sid, pkt, frame, opus) in [
        (0u8, 1u8, 1u32, 0u32, &b"\xfc\xff\xfe"[..]),
        (1, 7, 0x12_3456, 0x12_3460, &[0x78; 160][..]),
        (0, 0, 0xff_ffff, 0xff_ffff, &[][..]),
        (1, 255, 2, 2, &[0x01][..]),
    ] {
        let mut packet = vec![pick];
        seal(&media_keys(pick), Sid(sid), pkt, frame, opus, &mut packet).expect("seal");
        s.add(&format!("keys{pick}_sid{sid}_pkt{pkt}"), &packet);
    }
    s.add("too_short", b"\x00\x01\x00\x00\x01\x00\x00\x01");
}

fn media_edge(root: &Path) {
    let mut s = Seeds::target(root, "media_edge");
    let (_, sids) = edge_room(Instant::now());
    let media = |n: u8, pkt: u32, opus: &[u8]| {
        let mut packet = Vec::new();
        seal(
            &media_keys(n),
            sids[usize::from(n)],
            pkt,
            pkt,
            opus,
            &mut packet,
        )
        .expect("seal");
        packet
    };
    // Sources are addr(n) for n = source % 6: members 0..=3, then strangers 4 and 5.
    let mut talk = Vec::new();
    record(0, &media(0, 1, b"frame one"), &mut talk);
    record(1, &media(1, 1, b"other"), &mut talk);
    record(0, &media(0, 2, b"frame two"), &mut talk);
    record(0, &[sids[0].0], &mut talk);
    s.add("two_members_talk", &talk);

    let mut join = Vec::new();
    record(2, &cookie(2), &mut join);
    record(2, &media(2, 1, b"newcomer"), &mut join);
    record(2, &cookie(2), &mut join);
    record(2, &[sids[2].0], &mut join);
    s.add("joining_member_registers", &join);

    let mut bad = Vec::new();
    let replay = media(0, 5, b"x");
    record(0, &replay, &mut bad);
    record(0, &replay, &mut bad);
    record(0, &media(0, 4, b"late"), &mut bad);
    record(4, &media(1, 9, b"wrong source"), &mut bad);
    record(3, &cookie(3), &mut bad);
    record(5, &cookie(5), &mut bad);
    let mut forged = media(1, 10, b"forged");
    let last = forged.len() - 1;
    forged[last] ^= 1;
    record(1, &forged, &mut bad);
    record(0, &[0; 7], &mut bad);
    s.add("drops", &bad);

    // Source bytes also carry time (byte / 8 steps of 40 ms) and the sweep (byte % 8 == 7):
    // 240 is member 0 after 1.2 s, 247 member 1 after 1.2 s with a sweep before it.
    let mut silence = Vec::new();
    for _ in 0..5 {
        record(240, &[sids[0].0], &mut silence);
    }
    record(247, &media(1, 1, b"back"), &mut silence);
    record(0, &media(0, 1, b"heard again"), &mut silence);
    s.add("silent_member_paused_and_resumed", &silence);
}

fn cluster_link(root: &Path) {
    let mut s = Seeds::target(root, "cluster_link");
    let datagram = |seq: u64, opus: &[u8]| {
        let mut packet = Vec::new();
        seal(&media_keys(0), Sid(3), seq as u32, seq as u32, opus, &mut packet).expect("seal");
        let header = LinkHeader {
            dest_core: 1,
            origin_core: 0,
            origin: RelayId([0x0a; 8]),
            seq,
            room: RoomId([0x5e; 16]),
        };
        let mut out = vec![0u8; MAX_LINK_LEN];
        let n = encode(&LINK_KEY, LINK_TO, &header, &packet, &mut out).expect("encode");
        out.truncate(n);
        out
    };
    let mut in_order = Vec::new();
    for seq in 1..=3 {
        record(0, &datagram(seq, &[0x78; 20]), &mut in_order);
    }
    s.add("in_order", &in_order);
    let mut replayed = Vec::new();
    record(0, &datagram(5, &[]), &mut replayed);
    record(0, &datagram(5, &[]), &mut replayed);
    record(2, &datagram(4, &[0x01]), &mut replayed);
    s.add("replayed_and_late", &replayed);
    let mut forged = datagram(9, &[0x10; 8]);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let mut one = Vec::new();
    record(0, &forged, &mut one);
    s.add("forged_tag", &one);
}
