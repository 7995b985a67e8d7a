//! `/metrics` moves by exactly what a line call and a VoRS exchange sent, and every line of it
//! is well-formed Prometheus text with no secret in it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use moose_proto::ws::Opcode;
use moose_testkit::relay::Relay;
use moose_testkit::vors_member::VorsMember;
use moose_testkit::ws::WsClient;

const KEY: &str = "metrics-move-key-0123456789";
const ROOM_PASSWORD: &str = "metrics-room-password-42";
/// Messages each line peer sends.
const MESSAGES: usize = 40;
const MESSAGE_LEN: usize = 1024;
/// Media packets the first VoRS member sends.
const PACKETS: usize = 25;

/// One scrape: every sample by its full name (labels included).
struct Scrape(HashMap<String, f64>);

impl Scrape {
    fn of(relay: &Relay) -> Scrape {
        Scrape(
            relay
                .metrics()
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .map(|l| {
                    let (name, value) = l.rsplit_once(' ').expect("name value");
                    (name.to_owned(), value.parse().expect("a number"))
                })
                .collect(),
        )
    }

    fn get(&self, name: &str) -> f64 {
        *self
            .0
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not exported"))
    }

    /// A sample summed over its `core` label.
    fn per_core_sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{name}{{core=")))
            .map(|(_, v)| v)
            .sum()
    }
}

fn histogram_count(protocol: &str) -> String {
    format!("moose_forward_latency_seconds_count{{protocol=\"{protocol}\"}}")
}

/// Polls until `name` reaches `want` (the relay records a send after the kernel took it,
/// which may be after the receiver has read it).
fn wait_for(relay: &Relay, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let have = Scrape::of(relay).get(name);
        if have >= want {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {have}, want {want}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn counters_move_by_what_was_sent() {
    let relay = Relay::start(&["--apikey", KEY], &[]);
    let before = Scrape::of(&relay);

    // A line call: two peers, each sends MESSAGES, each receives the other's.
    let mut a = WsClient::connect(relay.http, KEY);
    let mut b = WsClient::connect(relay.http, KEY);
    for i in 0..MESSAGES {
        a.send_binary(&[i as u8; MESSAGE_LEN]);
        b.send_binary(&[!(i as u8); MESSAGE_LEN]);
        let from_a = b.recv();
        let from_b = a.recv();
        assert_eq!(from_a.opcode, Opcode::Binary);
        assert_eq!(from_a.payload, vec![i as u8; MESSAGE_LEN]);
        assert_eq!(from_b.payload, vec![!(i as u8); MESSAGE_LEN]);
    }
    let ws_count = before.get(&histogram_count("ws")) + (2 * MESSAGES) as f64;
    wait_for(&relay, &histogram_count("ws"), ws_count);

    // A VoRS exchange: two members, the first sends PACKETS, the second accepts them all.
    let join = |name| {
        VorsMember::join_with_password(
            relay.vors,
            &relay.vors_pubkey,
            name,
            "metrics",
            ROOM_PASSWORD,
        )
    };
    let mut ann = join("ann");
    let mut bob = join("bob");
    let within = Duration::from_secs(10);
    let deadline = Instant::now() + within;
    while ann.peers() < 1 || bob.peers() < 1 {
        assert!(Instant::now() < deadline, "the members never met");
        ann.step();
        bob.step();
    }
    let mut datagram_len = 0;
    for i in 0..PACKETS {
        datagram_len = ann.send_media(&[i as u8; 60]).len();
        bob.step();
    }
    while bob.received() < PACKETS as u64 {
        assert!(
            Instant::now() < deadline,
            "bob got {} of {PACKETS}",
            bob.received()
        );
        ann.step();
        bob.step();
    }
    let vors_count = before.get(&histogram_count("vors")) + PACKETS as f64;
    wait_for(&relay, &histogram_count("vors"), vors_count);

    let after = Scrape::of(&relay);
    let moved = |name: &str| after.get(name) - before.get(name);
    // Exact where the relay's own traffic cannot add to it.
    assert_eq!(moved("moose_ws_messages_in_total"), (2 * MESSAGES) as f64);
    assert_eq!(
        moved("moose_ws_bytes_in_total"),
        (2 * MESSAGES * MESSAGE_LEN) as f64
    );
    assert_eq!(moved("moose_ws_upgrades_total"), 2.0);
    assert_eq!(
        moved("moose_ws_dropped_total{reason=\"slow_receiver\"}"),
        0.0
    );
    assert_eq!(moved(&histogram_count("ws")), (2 * MESSAGES) as f64);
    // Pings may add frames of their own: at least the messages, each with a 4-byte header.
    assert!(moved("moose_ws_frames_out_total") >= (2 * MESSAGES) as f64);
    assert!(moved("moose_ws_bytes_out_total") >= (2 * MESSAGES * (MESSAGE_LEN + 4)) as f64);
    assert_eq!(after.per_core_sum("moose_line_peers"), 2.0);
    assert_eq!(after.per_core_sum("moose_lines"), 1.0);

    assert_eq!(moved("moose_vors_handshakes_total"), 2.0);
    assert_eq!(moved("moose_vors_joins_total"), 2.0);
    assert_eq!(moved("moose_vors_packets_forwarded_total"), PACKETS as f64);
    assert_eq!(moved("moose_vors_datagrams_out_total"), PACKETS as f64);
    assert_eq!(
        moved("moose_vors_bytes_out_total"),
        (PACKETS * datagram_len) as f64
    );
    assert_eq!(moved(&histogram_count("vors")), PACKETS as f64);
    assert_eq!(moved("moose_vors_dropped_total{reason=\"bad_tag\"}"), 0.0);
    assert_eq!(moved("moose_vors_dropped_total{reason=\"replayed\"}"), 0.0);
    assert_eq!(after.per_core_sum("moose_vors_rooms"), 1.0);
    assert_eq!(after.per_core_sum("moose_vors_members"), 2.0);
    // Handoffs: each connection either stayed on its accepting core or moved, never more.
    assert!(moved("moose_vors_handoffs_total") <= 2.0);
    // The executors report in every second.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Scrape::of(&relay).per_core_sum("moose_executor_tasks_total") == 0.0 {
        assert!(Instant::now() < deadline, "no executor figures");
        std::thread::sleep(Duration::from_millis(100));
    }

    assert_well_formed(&relay.metrics());
    a.send_frame(true, Opcode::Close, &1000u16.to_be_bytes());
    drop(b);
}

/// Every line is a comment or `name{labels} value`; names start with `moose_`, counters end
/// in `_total`, histogram buckets are cumulative; neither the apikey nor the room password
/// (nor its hash) appears.
fn assert_well_formed(text: &str) {
    assert!(!text.contains(KEY), "the apikey appears in /metrics");
    assert!(
        !text.contains(ROOM_PASSWORD),
        "the room password appears in /metrics"
    );
    let hash = hex::encode(moose_proto::vors::keys::hash_password(ROOM_PASSWORD));
    assert!(
        !text.contains(&hash),
        "the password hash appears in /metrics"
    );
    let mut types: HashMap<String, String> = HashMap::new();
    let mut last_bucket: HashMap<String, f64> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter without _total: {line}");
            }
            if kind == "histogram" {
                assert!(
                    name.ends_with("_seconds"),
                    "histogram not in seconds: {line}"
                );
            }
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let (sample, value) = line.rsplit_once(' ').expect("a value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(value >= 0.0, "{line}");
        let (name, labels) = match sample.split_once('{') {
            Some((name, labels)) => (name, Some(labels)),
            None => (sample, None),
        };
        assert!(name.starts_with("moose_"), "{line}");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        if let Some(labels) = labels {
            let labels = labels.strip_suffix('}').expect("labels end with }");
            for pair in labels.split(',') {
                let (key, quoted) = pair.split_once('=').expect("key=value");
                assert!(
                    key.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                    "{line}"
                );
                assert!(
                    quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'),
                    "{line}"
                );
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| types.get(*base).is_some_and(|t| t == "histogram"))
            .unwrap_or(name);
        assert!(types.contains_key(family), "no # TYPE for {line}");
        if name.ends_with("_bucket") {
            let series = labels
                .and_then(|l| l.split(",le=").next())
                .unwrap_or_default()
                .to_owned();
            let previous = last_bucket.insert(series, value).unwrap_or(0.0);
            assert!(value >= previous, "buckets not cumulative: {line}");
        }
    }
}
