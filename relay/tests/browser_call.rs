//! A real call through the relay in real browsers.
//!
//! Two headless Chromium pages join one Moose line; both fake microphones play a 1 kHz tone.
//! Page B must decrypt A's stream and hear 1 kHz. A raw WebSocket peer on the same line (what
//! the relay, or anyone holding the apikey, sees) must get only ciphertext. Then the raw peer
//! forges and replays messages, and the pages must drop and count them without losing the call.
//!
//! Needs Debian's chromium: `scripts/install-browser.sh`. The test fails without it.

use std::collections::BTreeMap;
use std::time::Duration;

use moose_testkit::browser::raw_peer::RawPeer;
use moose_testkit::browser::signal::{
    TONE_HZ, byte_chi_square, int16_le, rms, tone_share, write_tone_wav, zero_crossing_hz,
};
use moose_testkit::browser::{self, Page, describe, wait_for};
use moose_testkit::relay::Relay;
use moose_testkit::temp::TempDir;
use serde_json::Value;

/// The line's key: 16+ characters of A-Z a-z 0-9 - _.
const APIKEY: &str = "browser-call-test_0123456789abcdef";
/// The wire rate of a Moose line.
const RATE: f64 = 200_000.0;
/// One web-client message: IV(12) || AES-GCM(1024 bytes of PCM) || tag(16).
const MESSAGE_BYTES: usize = 12 + 1024 + 16;
/// Decoded samples B's playback is judged on: 200 ms, 200 whole cycles of the tone.
const JUDGED_SAMPLES: usize = 40_000;

#[test]
fn browser_call_carries_an_encrypted_tone() {
    browser::chromium(); // fail first, and clearly, when the browser is missing
    let relay = Relay::start(&["--max-peers", "3"], &[("APIKEY", APIKEY)]);
    let dir = TempDir::new("browser-call");
    let wav = dir.path().join("tone.wav");
    write_tone_wav(&wav, 2).expect("write the tone WAV");
    let base = format!("http://{}/?apikey={APIKEY}", relay.http);

    // A starts the call with a fresh leaf key and shows the invite link.
    let a = Page::open(
        "A",
        &dir.path().join("a"),
        &wav,
        &format!("{base}#generate_leaf"),
    );
    let invite = wait_for("A to connect, send and show its invite link", &[&a], || {
        let d = a.diag();
        let sending = d["state"] == "open" && d["sent"].as_u64()? > 100;
        sending.then(|| d["inviteLink"].as_str().map(String::from))?
    });
    let leaf = invite
        .strip_prefix(&format!("{base}#leaf_"))
        .unwrap_or_else(|| panic!("invite link {invite:?} is not {base}#leaf_<key>"));
    assert_eq!(
        leaf.len(),
        43,
        "leaf key is 32 bytes of unpadded base64url: {leaf:?}"
    );
    assert!(
        leaf.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    assert_eq!(
        a.eval("location.hash"),
        Ok(Value::from(format!("#leaf_{leaf}")))
    );

    // B joins through the invite link; each must see the other on the line.
    let b = Page::open("B", &dir.path().join("b"), &wav, &invite);
    let (a_id, b_id) = wait_for("A and B to hear each other", &[&a, &b], || {
        let (da, db) = (a.diag(), b.diag());
        let a_id = da["self"].as_str()?.to_owned();
        let b_id = db["self"].as_str()?.to_owned();
        let both = hears(&da, &b_id) && hears(&db, &a_id);
        (both && db["received"].as_u64()? >= 1000).then_some((a_id, b_id))
    });

    // B decrypted A's stream: it is the tone.
    let heard = b.recent_playback(JUDGED_SAMPLES);
    let pages = describe(&[&a, &b]);
    assert_eq!(
        heard.len(),
        JUDGED_SAMPLES,
        "B kept too few samples\n{pages}"
    );
    assert!(
        rms(&heard) > 0.1,
        "B hears near silence: rms {}\n{pages}",
        rms(&heard)
    );
    let hz = zero_crossing_hz(&heard, RATE).unwrap_or(0.0);
    assert!(
        (hz / TONE_HZ - 1.0).abs() < 0.03,
        "B hears {hz:.1} Hz, not {TONE_HZ} Hz\n{pages}"
    );
    let share = tone_share(&heard, RATE, TONE_HZ);
    assert!(
        share > 0.5,
        "only {share:.2} of B's power is at {TONE_HZ} Hz\n{pages}"
    );
    for page in [&a, &b] {
        for counter in ["decryptFailures", "replays"] {
            assert_eq!(page.count(counter), 0, "{} {counter}\n{pages}", page.name);
        }
    }

    // A third, raw peer sees what the relay sees: ciphertext of both senders, in order.
    let mut raw = RawPeer::connect(relay.http, APIKEY);
    let seen = raw.collect(Duration::from_secs(1));
    assert!(
        seen.len() >= 100,
        "raw peer got {} messages in 1 s\n{}",
        seen.len(),
        describe(&[&a, &b])
    );
    let mut streams: BTreeMap<String, Vec<&[u8]>> = BTreeMap::new();
    for message in &seen {
        assert_eq!(
            message.len(),
            MESSAGE_BYTES,
            "a message that is no sealed PCM chunk"
        );
        streams.entry(hex(&message[..4])).or_default().push(message);
    }
    let mut expected = vec![a_id.clone(), b_id.clone()];
    expected.sort();
    assert_eq!(
        streams.keys().cloned().collect::<Vec<_>>(),
        expected,
        "senders by IV prefix"
    );
    for (id, messages) in &streams {
        let counters: Vec<u64> = messages.iter().map(|m| iv_counter(m)).collect();
        assert!(
            counters.windows(2).all(|w| w[0] < w[1]),
            "{id}: counters not increasing"
        );
    }
    let from_a: Vec<u8> = streams[&a_id]
        .iter()
        .flat_map(|m| &m[12..12 + 1024])
        .copied()
        .collect();
    let share = tone_share(&int16_le(&from_a), RATE, TONE_HZ);
    assert!(
        share < 0.05,
        "the relay can hear the tone: {share:.3} of the power at {TONE_HZ} Hz"
    );
    let chi = byte_chi_square(&from_a);
    assert!(
        chi < 400.0,
        "ciphertext bytes are not uniform: chi-square {chi:.0} (255 expected)"
    );

    // A forgery under B's prefix with a far-future counter: both pages count a decrypt
    // failure, and A keeps accepting B's real messages (the forgery moved no replay counter).
    let mut forged = streams[&b_id].last().expect("a message from B").to_vec();
    forged[4..12].copy_from_slice(&(1u64 << 62).to_be_bytes());
    forged[100] ^= 1;
    let a_before = a.count("received");
    raw.send(&forged);
    wait_for("both pages to count the forgery", &[&a, &b], || {
        (a.count("decryptFailures") == 1 && b.count("decryptFailures") == 1).then_some(())
    });
    wait_for("A to keep hearing B after the forgery", &[&a, &b], || {
        let d = a.diag();
        (hears(&d, &b_id) && d["received"].as_u64()? > a_before + 300).then_some(())
    });
    assert_eq!(
        b.diag()["self"],
        Value::from(b_id.as_str()),
        "a forgery made B change prefix"
    );

    // A replay of A's own message: B drops it as a replay; A sees an authentic message under
    // its own prefix, counts it and moves to a fresh prefix. The call goes on.
    let replayed = streams[&a_id].first().expect("a message from A").to_vec();
    raw.send(&replayed);
    let new_a_id = wait_for("both pages to count the replay", &[&a, &b], || {
        let id = a.diag()["self"].as_str()?.to_owned();
        let counted = a.count("replays") == 1 && b.count("replays") == 1;
        (counted && id != a_id).then_some(id)
    });
    let b_before = b.count("received");
    wait_for("B to hear A under its new prefix", &[&a, &b], || {
        let d = b.diag();
        (hears(&d, &new_a_id) && d["received"].as_u64()? > b_before + 300).then_some(())
    });
    // The same replay again: A retired its old prefix with its counter, so this time it is a
    // plain replay for both pages and A keeps its new prefix.
    raw.send(&replayed);
    wait_for("both pages to count the second replay", &[&a, &b], || {
        (a.count("replays") == 2 && b.count("replays") == 2).then_some(())
    });
    assert_eq!(
        a.diag()["self"],
        Value::from(new_a_id.as_str()),
        "A rotated again"
    );
    let pages = describe(&[&a, &b]);
    assert_eq!(a.count("decryptFailures"), 1, "\n{pages}");
    assert_eq!(b.count("decryptFailures"), 1, "\n{pages}");
}

/// Whether the diagnostics list `id` among the peers on the line.
fn hears(diag: &Value, id: &str) -> bool {
    diag["peers"]
        .as_array()
        .is_some_and(|peers| peers.iter().any(|p| p == id))
}

/// The IV's 8-byte big-endian counter (bytes 4..12 of a message).
fn iv_counter(message: &[u8]) -> u64 {
    let mut counter = [0u8; 8];
    counter.copy_from_slice(&message[4..12]);
    u64::from_be_bytes(counter)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
