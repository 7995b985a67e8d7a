//! Two relays behind a real nginx running the configs of deploy/nginx/: TLS 1.3 in front of the
//! web page and the WebSocket lines, lines pinned to a relay by their apikey, and VoRS calls
//! through the stream proxy whose TCP and UDP reach the same relay, before and after that
//! relay dies.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use moose_testkit::call::CallProc;
use moose_testkit::metrics::{Metrics, wait_metrics};
use moose_testkit::nginx::tls::{self, TlsStream};
use moose_testkit::nginx::{DEBIAN_MODULES, Nginx, self_signed_cert};
use moose_testkit::relay::Relay;
use moose_testkit::temp::temp_dir;
use moose_testkit::tone::{assert_tone, tone_wav};
use rustls::ClientConfig;
use tungstenite::{Message, WebSocket};

const LINE: Duration = Duration::from_secs(15);
const TONE_HZ: f64 = 440.0;
/// Lines opened to see them spread: with two relays on a consistent-hash ring, all of them
/// landing on one relay is a chance below 1 in 10^6 even for a lopsided ring.
const SPREAD_LINES: usize = 32;

#[test]
fn relays_behind_nginx() {
    let dir = temp_dir("behind-nginx");
    // Every relay behind one VoRS address needs the same key (deploy/README.md): the first
    // relay makes it, the second reads it.
    let key = dir.join("vors.key");
    let key = key.to_str().expect("utf-8 path");
    let relays = [
        Relay::start(&["--open", "--vors-key", key], &[]),
        Relay::start(&["--open", "--vors-key", key], &[]),
    ];
    assert_eq!(relays[0].vors_pubkey, relays[1].vors_pubkey, "one VoRS key");

    let (cert, tls_key) = self_signed_cert(&dir);
    let prefix = dir.join("nginx");
    let (nginx, https_port, vors_port) = Nginx::start(&prefix, |https, vors| {
        vec![
            ("NGINX_MODULES", DEBIAN_MODULES.to_owned()),
            // The workers run unprivileged, as in production; the master (root here) reads
            // the key and opens logs and sockets.
            ("NGINX_USER", "nobody nogroup".to_owned()),
            ("HTTPS_LISTEN", format!("127.0.0.1:{https}")),
            ("SERVER_NAME", "localhost".to_owned()),
            ("TLS_CERT", cert.display().to_string()),
            ("TLS_KEY", tls_key.display().to_string()),
            ("LOG_DIR", prefix.join("logs").display().to_string()),
            ("RELAY_1_HTTP", relays[0].http.to_string()),
            ("RELAY_2_HTTP", relays[1].http.to_string()),
            ("VORS_LISTEN", format!("127.0.0.1:{vors}")),
            ("RELAY_1_VORS", relays[0].vors.to_string()),
            ("RELAY_2_VORS", relays[1].vors.to_string()),
        ]
    });
    let tls = tls::client_config(&cert);

    web_page_over_tls_13(https_port, &tls);
    let line = one_line_talks_on_one_relay(https_port, &tls, &relays);
    lines_spread_over_both_relays(https_port, &tls, &relays, line);
    apikeys_stay_out_of_the_access_log(&nginx);
    let owner = vors_call_through_the_stream_proxy(vors_port, &relays, &dir, 0);
    // The relay that held the call dies: the next client's TCP finds it refusing, nginx marks
    // it failed in the shared zone, and the client's UDP follows its TCP to the other relay.
    relays[owner].signal("KILL");
    wait_refused(relays[owner].vors);
    let survivor = vors_call_through_the_stream_proxy(vors_port, &relays, &dir, 1);
    assert_eq!(
        survivor,
        1 - owner,
        "the second call went to the surviving relay"
    );

    drop(nginx);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `GET /` through nginx is the relay's web client, over TLS 1.3.
fn web_page_over_tls_13(port: u16, tls: &Arc<ClientConfig>) {
    let (_, version) = tls::connect(port, tls);
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);
    let (status, body) = tls::https_get(port, tls, "/");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<title>Moose call"),
        "not the web client: {body}"
    );
}

/// Two peers of one apikey through nginx reach the same relay and hear each other; returns
/// them so the line stays open for the spread check.
fn one_line_talks_on_one_relay(
    port: u16,
    tls: &Arc<ClientConfig>,
    relays: &[Relay; 2],
) -> [WebSocket<TlsStream>; 2] {
    let key = "nginx-pinned-line-0001";
    let mut alice = tls::ws_connect(port, tls, key);
    let mut bob = tls::ws_connect(port, tls, key);
    let hello: Vec<u8> = (0..1024).map(|i| (i % 251) as u8).collect();
    alice
        .send(Message::binary(hello.clone()))
        .expect("alice sends");
    assert_eq!(next_binary(&mut bob), hello, "bob hears alice");
    let reply: Vec<u8> = hello.iter().rev().copied().collect();
    bob.send(Message::binary(reply.clone())).expect("bob sends");
    assert_eq!(next_binary(&mut alice), reply, "alice hears bob");

    let peers = wait_gauges(relays, "moose_line_peers", |p| p.iter().sum::<u64>() == 2);
    assert!(
        peers.contains(&2) && peers.contains(&0),
        "both peers on one relay: {peers:?}"
    );
    [alice, bob]
}

/// Many lines, two peers each: every line's peers share a relay, and both relays hold lines.
fn lines_spread_over_both_relays(
    port: u16,
    tls: &Arc<ClientConfig>,
    relays: &[Relay; 2],
    first: [WebSocket<TlsStream>; 2],
) {
    let mut peers = Vec::from(first);
    for i in 0..SPREAD_LINES {
        let key = format!("nginx-spread-line-{i:04}");
        peers.push(tls::ws_connect(port, tls, &key));
        peers.push(tls::ws_connect(port, tls, &key));
    }
    let lines_total = SPREAD_LINES as u64 + 1;
    let per_relay = wait_gauges(relays, "moose_line_peers", |p| {
        p.iter().sum::<u64>() == 2 * lines_total
    });
    let lines = [0, 1].map(|i| Metrics::read(&relays[i]).sum("moose_lines"));
    // A line whose two peers were split would count once on each relay.
    assert_eq!(lines.iter().sum::<u64>(), lines_total, "lines {lines:?}");
    for i in 0..2 {
        assert_eq!(
            per_relay[i],
            2 * lines[i],
            "relay {i}: every line has both its peers (peers {per_relay:?}, lines {lines:?})"
        );
        assert!(lines[i] > 0, "relay {i} holds no line: {lines:?}");
    }
    for mut ws in peers {
        let _ = ws.close(None);
        let _ = ws.flush();
    }
}

/// The apikey travels in the query string; nginx's access log must not keep it.
fn apikeys_stay_out_of_the_access_log(nginx: &Nginx) {
    // nginx writes an access log line when a proxied WebSocket ends; the lines above are
    // closing now.
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = nginx.access_log();
        if log.contains("GET /ws ") || Instant::now() > deadline {
            break log;
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert!(log.contains("GET /ws "), "no /ws request logged:\n{log}");
    assert!(
        !log.contains("apikey"),
        "the access log holds apikeys:\n{log}"
    );
    assert!(!log.contains("nginx-spread-line"), "an apikey in:\n{log}");
}

/// A VoRS call through nginx's stream proxy: bob records, alice sends a tone. Both reach the
/// same relay over TCP (the joins) and UDP (the media), and bob hears the tone. `earlier` is
/// how many calls the relays have seen before this one. Returns the relay that held it.
fn vors_call_through_the_stream_proxy(
    vors_port: u16,
    relays: &[Relay; 2],
    dir: &Path,
    earlier: u64,
) -> usize {
    let rec = dir.join(format!("rec-{earlier}"));
    let tone = tone_wav(dir, TONE_HZ, 3.0);
    let server = format!("127.0.0.1:{vors_port}");
    let call = |name: &str, extra: &[&str]| {
        let base = [
            "--server",
            &server,
            "--pubkey",
            &relays[0].vors_pubkey,
            "--name",
            name,
            "--room",
            "behind-nginx",
        ];
        CallProc::spawn(name, &[&base[..], extra].concat())
    };
    let mut bob = call("bob", &["--record", rec.to_str().expect("utf-8")]);
    bob.expect_line("joined bob", LINE);
    let mut alice = call("alice", &["--input", tone.to_str().expect("utf-8")]);
    alice.expect_line("joined alice", LINE);
    bob.expect_line("joined alice", LINE);

    // Both members are in one room, so on one relay: the one their address hashes to (and,
    // after a failure, the next live one). A dead relay's metrics cannot be read.
    let joins = [0, 1].map(|i| live_metrics(&relays[i]).get("moose_vors_joins_total"));
    let owner = match joins {
        [2, 0] => 0,
        [0, 2] => 1,
        other => panic!("the two joins of call {earlier} should be on one relay: {other:?}"),
    };
    // 3 s of tone is 150 packets; wait for most of them before leaving.
    wait_metrics(
        &relays[owner],
        LINE,
        "140 packets forwarded",
        || {},
        |m| m.get("moose_vors_packets_forwarded_total") >= 140,
    );
    let alice = alice.hang_up(LINE);
    bob.expect_line("left alice", LINE);
    let bob = bob.hang_up(LINE);

    let sent = alice.summary().sent;
    let heard = bob.summary();
    // No gap in what bob heard. Alice's last packets race her leaving: through the proxy the
    // DEL on TCP can overtake the UDP packets sent just before it, and bob ignores packets of
    // a member who has left. So bob may miss the last one or two; the relay (checked below)
    // forwarded every one.
    assert_eq!(heard.lost, 0, "bob: {heard:?}");
    assert!(
        heard.received <= sent && heard.received + 2 >= sent,
        "bob received all alice sent but the last ones: {heard:?}, sent {sent}"
    );
    assert_tone(&rec.join("alice.wav"), TONE_HZ, 2.5, 2.5);

    // The UDP went where the TCP went: the other relay saw no datagram at all.
    let other = live_metrics(&relays[1 - owner]);
    assert_eq!(
        other.get("moose_vors_datagrams_in_total"),
        0,
        "{}",
        other.vors()
    );
    let m = Metrics::read(&relays[owner]);
    assert_eq!(
        m.get("moose_vors_packets_forwarded_total"),
        sent,
        "{}",
        m.vors()
    );
    assert_eq!(m.drops_except(&["cookie_repeat"]), [], "{}", m.vors());
    owner
}

/// A relay's metrics, or none at all once it has been killed.
fn live_metrics(relay: &Relay) -> Metrics {
    if TcpStream::connect(relay.admin).is_ok() {
        Metrics::read(relay)
    } else {
        Metrics::default()
    }
}

/// Waits until nothing accepts TCP connections at `addr` any more (a killed relay is gone).
fn wait_refused(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts connections"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The next binary message, skipping control frames (tungstenite answers pings itself).
fn next_binary(ws: &mut WebSocket<TlsStream>) -> Vec<u8> {
    loop {
        match ws.read().expect("read a message through nginx") {
            Message::Binary(bytes) => return bytes.to_vec(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a binary message, got {other:?}"),
        }
    }
}

/// Polls a per-core gauge family on both relays until `done` holds for the per-relay sums.
fn wait_gauges(relays: &[Relay; 2], family: &str, done: impl Fn(&[u64; 2]) -> bool) -> [u64; 2] {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let values = [0, 1].map(|i| Metrics::read(&relays[i]).sum(family));
        if done(&values) {
            return values;
        }
        let all: BTreeMap<usize, u64> = values.iter().copied().enumerate().collect();
        assert!(
            Instant::now() < deadline,
            "{family} per relay never settled: {all:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}
