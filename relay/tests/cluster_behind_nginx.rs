//! A cluster behind a real L4 balancer, as docs/operations.md ("Scaling out") runs it: nginx's
//! stream proxy with deploy/nginx/moose-cluster-stream.conf in front of three relays of one
//! cluster. Clients dial nginx from different loopback source addresses (`moose-call --bind
//! 127.0.0.x`), and nginx's hash of the source address puts them on different relays. The room
//! is whole all the same: a member joining on any relay is heard joining by every other, and
//! its 1 kHz tone arrives whole at every other member, on its own relay or on another.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use moose_testkit::call::CallProc;
use moose_testkit::cluster::Cluster;
use moose_testkit::nginx::Nginx;
use moose_testkit::relay::PER_CLIENT_LIMITS_OFF;
use moose_testkit::temp::temp_dir;
use moose_testkit::tone::{assert_tone, tone_wav};

const ROOM: &str = "behind-the-balancer";
const LINE: Duration = Duration::from_secs(15);
const TONE_HZ: f64 = 1000.0;
/// Source addresses tried for listeners, 127.0.0.10 on: listeners join until each relay has
/// one. nginx's consistent hash is fixed for given relay addresses, but they are free ports,
/// so which source lands where changes from run to run; 20 sources all missing one of three
/// relays has a chance of (2/3)^20, about 1 in 3 300.
const SOURCES: u8 = 20;

/// A listener: its call and the directory it records into.
struct Listener {
    name: String,
    call: CallProc,
    recorded: PathBuf,
}

/// Each relay's established VoRS control connections (from nginx: one per member there).
fn connections(cluster: &Cluster) -> Vec<usize> {
    cluster
        .relays
        .iter()
        .map(|relay| relay.vors_tcp_peers().len())
        .collect()
}

/// Waits until the relays hold `members` control connections in all (a connection nginx
/// opened only to check a port closes at the relay's 2 s deadline for the magic); returns how
/// many each holds.
fn spread(cluster: &Cluster, members: usize) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = connections(cluster);
        if now.iter().sum::<usize>() == members {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{members} members, but the relays hold {now:?} connections"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_room_stays_whole_behind_nginx() {
    let dir = temp_dir("cluster-nginx");
    let vors_key = dir.join("vors.key");
    // The relays behind one address share its VoRS key (clients pin the key of the address
    // they dial; the first relay makes it). nginx is every client's address as the relays see
    // it, so the per-client limits are off, as deploy/moose-relay.service.d/behind-nginx.conf
    // turns them off.
    let key = ["--vors-key", vors_key.to_str().expect("utf-8")];
    let cluster = Cluster::start(3, &[&key[..], &PER_CLIENT_LIMITS_OFF].concat());
    let prefix = dir.join("nginx");
    let logs = prefix.join("logs").display().to_string();
    let (_nginx, port) = Nginx::start_stream(&prefix, "moose-cluster-stream.conf", |port| {
        vec![
            ("VORS_LISTEN", format!("127.0.0.1:{port}")),
            ("LOG_DIR", logs.clone()),
            ("RELAY_1_VORS", cluster.relays[0].vors.to_string()),
            ("RELAY_2_VORS", cluster.relays[1].vors.to_string()),
            ("RELAY_3_VORS", cluster.relays[2].vors.to_string()),
        ]
    });
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    let call_from = |name: &str, source: u8, extra: &[&str]| {
        let bind = format!("127.0.0.{source}");
        let args = [&["--bind", bind.as_str()][..], extra].concat();
        let mut call = CallProc::start_via(server, &cluster.relays[0], name, ROOM, &args);
        call.expect_line(&format!("joined {name}"), LINE);
        call
    };

    // Listeners join from one source address after another until every relay has one.
    let mut listeners: Vec<Listener> = Vec::new();
    let mut per_relay = Vec::new();
    for source in 10..10 + SOURCES {
        let name = format!("l{source}");
        let recorded = dir.join(format!("rec-{name}"));
        let call = call_from(
            &name,
            source,
            &["--record", recorded.to_str().expect("utf-8")],
        );
        listeners.push(Listener {
            name,
            call,
            recorded,
        });
        per_relay = spread(&cluster, listeners.len());
        if per_relay.iter().all(|&n| n > 0) {
            break;
        }
    }
    assert!(
        per_relay.iter().all(|&n| n > 0),
        "{SOURCES} source addresses never reached every relay: {per_relay:?}"
    );
    eprintln!("{} listeners, per relay {per_relay:?}", listeners.len());

    // Alice joins from the next address, on whichever relay nginx picks, and talks.
    let tone = tone_wav(&dir, TONE_HZ, 3.0);
    let before = per_relay.clone();
    let alice_source = 10 + u8::try_from(listeners.len()).expect("few listeners");
    let alice = call_from(
        "alice",
        alice_source,
        &["--input", tone.to_str().expect("utf-8")],
    );
    let after = spread(&cluster, listeners.len() + 1);
    let home = (0..3)
        .find(|&r| after[r] == before[r] + 1)
        .expect("alice's relay");
    eprintln!("alice is on relay {home}");
    for listener in &mut listeners {
        listener.call.expect_line("joined alice", LINE);
    }
    // 3 s of tone is 150 packets from alice's relay's edge; she leaves once 145 went through.
    let deadline = Instant::now() + LINE;
    while cluster.relays[home].metric("moose_vors_packets_forwarded_total") < 145 {
        assert!(Instant::now() < deadline, "alice's tone did not go through");
        thread::sleep(Duration::from_millis(50));
    }
    let alice = alice.hang_up(LINE);
    let sent = alice.summary().sent;
    for Listener {
        name,
        mut call,
        recorded,
    } in listeners
    {
        call.expect_line("left alice", LINE);
        let done = call.hang_up(LINE);
        let heard = done.summary();
        assert_eq!(heard.lost, 0, "{name}: {heard:?}");
        // Alice's last frame may lose the race with her DEL (which comes through Redis while
        // the frame crosses the link): a client drops a packet of a member it was told left.
        assert!(
            heard.received <= sent && heard.received + 1 >= sent,
            "{name} received {} of the {sent} alice sent",
            heard.received
        );
        assert_tone(&recorded.join("alice.wav"), TONE_HZ, 2.5, 2.5);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
