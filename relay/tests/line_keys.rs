//! Where line keys come from and what they admit: several keys in `APIKEY` are separate lines,
//! `--apikey-file` skips comments and blank lines, `--open` lets any well-formed key open its
//! own line, a bad configured key stops the relay (exit 78) without echoing it, and with no key
//! configured the relay makes one and prints its join URL before it is ready.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use moose_testkit::relay::Relay;
use moose_testkit::ws::{WsClient, try_connect};

const K1: &str = "first-line-key-0123456789";
const K2: &str = "second_line_key_ABCDEFGHIJ";

/// The status of a refused upgrade with `apikey=key`.
fn refusal_status(relay: &Relay, key: &str) -> u16 {
    match try_connect(relay.http, &format!("apikey={key}"), &[]) {
        Ok(_) => panic!("a key that must be refused was admitted"),
        Err(refusal) => refusal.status,
    }
}

/// Checks that two pairs of peers on two keys form two lines that never hear each other.
fn lines_are_apart(relay: &Relay, k1: &str, k2: &str) {
    let mut a1 = WsClient::connect(relay.http, k1);
    let mut b1 = WsClient::connect(relay.http, k1);
    let mut a2 = WsClient::connect(relay.http, k2);
    let mut b2 = WsClient::connect(relay.http, k2);
    a1.send_binary(b"on line one");
    a2.send_binary(b"on line two");
    assert_eq!(b1.recv().payload, b"on line one");
    assert_eq!(b2.recv().payload, b"on line two");
    for (name, peer) in [
        ("a1", &mut a1),
        ("b1", &mut b1),
        ("a2", &mut a2),
        ("b2", &mut b2),
    ] {
        assert!(
            peer.is_quiet_for(Duration::from_millis(100)),
            "{name} heard more"
        );
    }
}

/// A file in the system temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(text: &str) -> TempFile {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "moose-line-keys-{}-{nanos}.txt",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn each_key_in_apikey_is_its_own_line() {
    // Whitespace around items is trimmed.
    let relay = Relay::start(&[], &[("APIKEY", &format!("{K1}, {K2}"))]);
    lines_are_apart(&relay, K1, K2);
    assert_eq!(refusal_status(&relay, "third-key-not-configured"), 403);
    assert_eq!(relay.metric("moose_ws_upgrades_total"), 4);
}

#[test]
fn apikey_file_skips_comments_and_blank_lines_and_adds_to_apikey() {
    let file = TempFile::new(&format!("# keys for the test lines\n\n{K2}\n   \n# {K1}\n"));
    let relay = Relay::start(
        &["--apikey-file", file.0.to_str().unwrap()],
        &[("APIKEY", K1)],
    );
    lines_are_apart(&relay, K1, K2);
    // The commented-out line is not a key (K1 works only because APIKEY names it).
    let file_only = TempFile::new(&format!("# {K1}\n\n{K2}\n"));
    let relay = Relay::start(&["--apikey-file", file_only.0.to_str().unwrap()], &[]);
    let _b = WsClient::connect(relay.http, K2);
    assert_eq!(refusal_status(&relay, K1), 403);
    assert!(
        relay.preamble.iter().all(|l| !l.contains("apikey=")),
        "keys come from the file, none is generated: {:?}",
        relay.preamble
    );
}

#[test]
fn open_relay_gives_any_well_formed_key_its_own_line() {
    let relay = Relay::start(&["--open"], &[]);
    lines_are_apart(&relay, "any-key-at-all-00001", "any-key-at-all-00002");
    assert_eq!(refusal_status(&relay, "short-key"), 401);
    assert_eq!(refusal_status(&relay, "has.a.dot.in.it.0123"), 401);
    assert_eq!(
        relay.metric("moose_ws_dropped_total{reason=\"refused_key\"}"),
        2
    );
}

#[test]
fn bad_key_in_apikey_stops_the_relay_without_echoing_it() {
    for (list, secret) in [
        (format!("{K1},secret.key.text.0042"), "secret.key.text"),
        (format!("{K1},,shortsecret"), "shortsecret"),
    ] {
        let mut child = Command::new(moose_testkit::binary::moose_relay())
            .args(["--listen", "127.0.0.1:0", "--vors-listen", "127.0.0.1:0"])
            .args(["--admin-listen", "127.0.0.1:0", "--cores", "1"])
            .env("APIKEY", &list)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the relay kept running with a bad key");
            }
            thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        let mut stderr = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(78), "stderr: {stderr}");
        assert!(stderr.contains("APIKEY"), "the setting is named: {stderr}");
        assert!(stderr.contains("key #"), "the position is named: {stderr}");
        for text in [secret, K1] {
            assert!(!stderr.contains(text), "a key was echoed: {stderr}");
            assert!(!stdout.contains(text), "a key was echoed: {stdout}");
        }
        assert!(!stdout.contains("listening"), "{stdout}");
    }
}

#[test]
fn without_keys_the_relay_makes_one_and_prints_its_join_url_first() {
    let relay = Relay::start(&[], &[]);
    let url = relay
        .preamble
        .iter()
        .find(|l| l.contains("#generate_leaf"))
        .unwrap_or_else(|| panic!("no join URL before the ready line: {:?}", relay.preamble));
    let key = url
        .split_once("?apikey=")
        .and_then(|(_, rest)| rest.split_once("#generate_leaf"))
        .map(|(key, _)| key)
        .unwrap_or_else(|| panic!("no ?apikey=KEY#generate_leaf in {url:?}"));
    assert_eq!(key.len(), 64, "{key}");
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "not lowercase hex: {key}"
    );
    let mut a = WsClient::connect(relay.http, key);
    let mut b = WsClient::connect(relay.http, key);
    a.send_binary(b"generated line");
    assert_eq!(b.recv().payload, b"generated line");
    // Only the generated key: any other well-formed key is unknown, the empty one malformed.
    assert_eq!(refusal_status(&relay, &"0".repeat(64)), 403);
    assert_eq!(refusal_status(&relay, ""), 401);
}
