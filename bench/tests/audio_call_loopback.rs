//! Calls over loopback through a stand-in relay: `moose_proto`'s own server session and room
//! machines behind plain std sockets (one thread, one channel), so moose-call's audio, chat,
//! mute and exit codes are tested without the glommio relay. The relay's own end-to-end
//! tests run the same scenarios against `moose-relay`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::thread;
use std::time::{Duration, Instant};

use moose_bench::audio::{SAMPLE_RATE, read_wav, scan_tone, sine, write_wav};
use moose_bench::vors_client::{Call, CallConfig, CallEvent, CallSummary, Command};
use moose_proto::vors::Sid;
use moose_proto::vors::handshake::generate_keypair;
use moose_proto::vors::room::{EdgeVerdict, Room, RoomConfig};
use moose_proto::vors::server::{ServerEvent, ServerSession};

// ---------------------------------------------------------------------------------------
// The stand-in relay.

enum RelayInput {
    Accepted(u64, TcpStream),
    Tcp(u64, Vec<u8>),
    TcpClosed(u64),
    Datagram(SocketAddr, Vec<u8>),
}

struct Conn {
    session: ServerSession,
    stream: TcpStream,
    member: Option<(String, Sid)>,
}

/// A one-room-per-name VoRS relay on 127.0.0.1, dropping every `lose_every`-th media packet
/// it would forward (0: none).
struct TestRelay {
    addr: SocketAddr,
    public_hex: String,
    stop: Arc<AtomicBool>,
}

impl TestRelay {
    fn start(lose_every: u64) -> TestRelay {
        let (private, public) = generate_keypair().expect("keypair");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let addr = listener.local_addr().expect("addr");
        let udp = UdpSocket::bind(addr).expect("bind udp");
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("udp timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();

        thread::spawn({
            let tx = tx.clone();
            move || accept_loop(listener, tx)
        });
        thread::spawn({
            let (udp, tx, stop) = (udp.try_clone().expect("clone"), tx, Arc::clone(&stop));
            move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = udp.recv_from(&mut buf) {
                        let _ = tx.send(RelayInput::Datagram(from, buf[..n].to_vec()));
                    }
                }
            }
        });
        let stop2 = Arc::clone(&stop);
        thread::spawn(move || {
            let mut conns: HashMap<u64, Conn> = HashMap::new();
            let mut rooms: HashMap<String, Room> = HashMap::new();
            let mut forwarded = 0u64;
            let mut next_cookie = 0u128;
            while !stop2.load(Ordering::Relaxed) {
                let input = rx.recv_timeout(Duration::from_millis(50));
                let now = Instant::now();
                match input {
                    Ok(RelayInput::Accepted(id, stream)) => {
                        let session = ServerSession::new(now, &private);
                        conns.insert(
                            id,
                            Conn {
                                session,
                                stream,
                                member: None,
                            },
                        );
                    }
                    Ok(RelayInput::Tcp(id, bytes)) => {
                        if let Some(c) = conns.get_mut(&id) {
                            c.session.handle_tcp(now, &bytes);
                        }
                    }
                    Ok(RelayInput::TcpClosed(id)) => {
                        if let Some(c) = conns.get_mut(&id) {
                            c.session.handle_tcp_closed(now);
                        }
                    }
                    Ok(RelayInput::Datagram(from, d)) => {
                        for room in rooms.values_mut() {
                            match room.verify_datagram(from, &d) {
                                EdgeVerdict::Forward { recipients, .. } => {
                                    forwarded += 1;
                                    if lose_every > 0 && forwarded % lose_every == 0 {
                                        break;
                                    }
                                    for r in recipients {
                                        if let Some(to) = room.udp_addr(r) {
                                            let _ = udp.send_to(&d, to);
                                        }
                                    }
                                    break;
                                }
                                EdgeVerdict::Registered(_) | EdgeVerdict::Keepalive(_) => break,
                                _ => {}
                            }
                        }
                    }
                    Err(_) => {}
                }
                for c in conns.values_mut() {
                    if c.session.poll_timeout().is_some_and(|t| now >= t) {
                        c.session.handle_timeout(now);
                    }
                }
                pump(now, &mut conns, &mut rooms, &mut next_cookie);
            }
        });
        TestRelay {
            addr,
            public_hex: hex::encode(public),
            stop,
        }
    }

    fn config(&self, name: &str, room: &str) -> CallConfig {
        let key = moose_bench::vors_client::parse_public_key(&self.public_hex).expect("key");
        CallConfig::new(&self.addr.to_string(), key, name, room)
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn accept_loop(listener: TcpListener, tx: Sender<RelayInput>) {
    for (id, stream) in (0u64..).zip(listener.incoming()) {
        let Ok(stream) = stream else { continue };
        let Ok(mut reader) = stream.try_clone() else {
            continue;
        };
        if tx.send(RelayInput::Accepted(id, stream)).is_err() {
            return;
        }
        let tx = tx.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(RelayInput::Tcp(id, buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tx.send(RelayInput::TcpClosed(id));
        });
    }
}

/// Drains every session and room until nothing moves, as their drain rules say.
fn pump(
    now: Instant,
    conns: &mut HashMap<u64, Conn>,
    rooms: &mut HashMap<String, Room>,
    next_cookie: &mut u128,
) {
    let mut closed = Vec::new();
    let ids: Vec<u64> = conns.keys().copied().collect();
    for id in ids {
        let Some(c) = conns.get_mut(&id) else {
            continue;
        };
        while let Some(bytes) = c.session.poll_transmit() {
            let _ = c.stream.write_all(&bytes);
        }
        while let Some(event) = c.session.poll_event() {
            match event {
                ServerEvent::Hello(hello) => {
                    let room = rooms
                        .entry(hello.room.clone())
                        .or_insert_with(|| Room::new(&hello.room, RoomConfig::default()));
                    *next_cookie += 1;
                    let cookie = next_cookie.to_le_bytes();
                    match room.join(&hello.username, hello.password_hash.as_ref(), cookie) {
                        Ok(sid) => {
                            let keys = c.session.accept(now, &cookie).expect("accept");
                            room.set_keys(sid, keys);
                            c.member = Some((hello.room.clone(), sid));
                        }
                        Err(reject) => {
                            c.session.reject(now, reject.reason()).expect("reject");
                        }
                    }
                }
                ServerEvent::Muted | ServerEvent::Unmuted | ServerEvent::Chat(_) => {
                    if let Some((room, sid)) = &c.member {
                        if let Some(room) = rooms.get_mut(room) {
                            match event {
                                ServerEvent::Muted => room.set_muted(*sid, true),
                                ServerEvent::Unmuted => room.set_muted(*sid, false),
                                ServerEvent::Chat(msg) => room.chat(*sid, &msg),
                                _ => {}
                            }
                        }
                    }
                }
                ServerEvent::Closed(_) => closed.push(id),
            }
        }
        while let Some(bytes) = c.session.poll_transmit() {
            let _ = c.stream.write_all(&bytes);
        }
    }
    for id in closed {
        if let Some(c) = conns.remove(&id) {
            let _ = c.stream.shutdown(Shutdown::Both);
            if let Some((room, sid)) = c.member {
                if let Some(r) = rooms.get_mut(&room) {
                    r.leave(sid);
                }
            }
        }
    }
    for (name, room) in rooms.iter_mut() {
        while let Some((to, msg)) = room.poll_message() {
            let target = conns
                .values_mut()
                .find(|c| c.member.as_ref() == Some(&(name.clone(), to)));
            if let Some(c) = target {
                let _ = c.session.send_control(now, &msg.as_control());
                while let Some(bytes) = c.session.poll_transmit() {
                    let _ = c.stream.write_all(&bytes);
                }
            }
        }
    }
    rooms.retain(|_, room| !room.is_empty());
}

// ---------------------------------------------------------------------------------------
// Helpers.

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moose-call-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn tone_wav(dir: &Path, freq: f64, seconds: f64) -> PathBuf {
    let path = dir.join(format!("tone-{freq}.wav"));
    let samples = (seconds * f64::from(SAMPLE_RATE)) as usize;
    write_wav(&path, &sine(freq, 8_000.0, samples)).expect("write tone");
    path
}

/// Runs a call on a thread; its stdout lines arrive on the returned channel.
fn spawn_call(config: CallConfig) -> (mpsc::Receiver<String>, thread::JoinHandle<CallSummary>) {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let call = Call::connect(config).expect("connect");
        call.run(&AtomicBool::new(false), |event| {
            if let Some(line) = event.stdout_line() {
                let _ = tx.send(line);
            }
        })
        .expect("call")
    });
    (rx, handle)
}

fn wait_for_line(rx: &mpsc::Receiver<String>, want: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            let done = line == want;
            seen.push(line);
            if done {
                return seen;
            }
        }
    }
    panic!("no line {want:?}; saw {seen:?}");
}

fn moose_call(relay: &TestRelay, args: &[&str]) -> Process {
    let mut p = Process::new(env!("CARGO_BIN_EXE_moose-call"));
    p.args([
        "--server",
        &relay.addr.to_string(),
        "--pubkey",
        &relay.public_hex,
    ])
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    p
}

// ---------------------------------------------------------------------------------------
// Scenarios.

fn tone_reaches_the_other_member(lose_every: u64, name: &str) {
    let relay = TestRelay::start(lose_every);
    let dir = temp_dir(name);
    let mut bob = relay.config("bob", name);
    bob.record_dir = Some(dir.join("rec"));
    bob.duration = Some(Duration::from_millis(6_500));
    let (bob_lines, bob_call) = spawn_call(bob);
    wait_for_line(&bob_lines, "joined bob");

    let mut alice = relay.config("alice", name);
    alice.input = Some(tone_wav(&dir, 440.0, 3.0));
    alice.duration = Some(Duration::from_secs(4));
    let (_alice_lines, alice_call) = spawn_call(alice);
    let alice_summary = alice_call.join().expect("alice");
    assert_eq!(alice_summary.stats.packets_sent, 150, "3 s of tone, no DTX");

    let bob_summary = bob_call.join().expect("bob");
    let lines: Vec<String> = bob_lines.try_iter().collect();
    assert_eq!(lines, ["joined alice", "left alice"]);
    let rec = bob_summary
        .recordings
        .iter()
        .find(|r| r.username == "alice")
        .expect("alice recorded");
    assert_eq!(rec.path, dir.join("rec").join("alice.wav"));
    let pcm = read_wav(&rec.path).expect("recording");
    let seconds = pcm.len() as f64 / f64::from(SAMPLE_RATE);
    assert!(
        (2.8..=3.05).contains(&seconds),
        "{seconds} s recorded, {:?}",
        rec.stats
    );
    let scan = scan_tone(&pcm, 440.0);
    assert!(scan.tone_share() > 0.9, "{scan:?} {:?}", rec.stats);
    if lose_every > 0 {
        assert!(rec.stats.concealed > 0, "{:?}", rec.stats);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tone_sent_by_one_call_is_recorded_by_another() {
    tone_reaches_the_other_member(0, "clean");
}

#[test]
fn tone_survives_a_lossy_relay() {
    // Every 10th forwarded packet lost: PLC fills each one.
    tone_reaches_the_other_member(10, "lossy");
}

#[test]
fn chat_and_mute_from_stdin_reach_the_room() {
    let relay = TestRelay::start(0);
    let mut bob = relay.config("bob", "chat");
    bob.duration = Some(Duration::from_secs(4));
    let (bob_lines, bob_call) = spawn_call(bob);
    wait_for_line(&bob_lines, "joined bob");

    let mut alice = moose_call(&relay, &["--name", "alice", "--room", "chat"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn moose-call");
    let mut stdin = alice.stdin.take().expect("stdin");
    stdin
        .write_all(b"hello there\n/mute\n/unmute\n")
        .expect("type");
    drop(stdin); // EOF without --seconds: alice leaves.
    let out = alice.wait_with_output().expect("alice exits");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    // "joined bob" (the ADD for a member present) may come before or after alice's own
    // mute lines: the server's SID and ADD can arrive in separate reads, and typed commands
    // are applied as soon as we have our SID.
    let mine: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| *l != "joined bob")
        .collect();
    assert_eq!(
        mine,
        ["joined alice", "muted alice", "unmuted alice"],
        "{lines:?}"
    );
    assert!(lines.contains(&"joined bob"), "{lines:?}");

    let seen = wait_for_line(&bob_lines, "left alice");
    assert_eq!(
        seen,
        [
            "joined alice",
            "chat alice: hello there",
            "muted alice",
            "unmuted alice",
            "left alice"
        ]
    );
    bob_call.join().expect("bob");
}

#[test]
fn a_taken_name_is_refused_with_exit_3() {
    let relay = TestRelay::start(0);
    let mut bob = relay.config("bob", "names");
    bob.duration = Some(Duration::from_secs(3));
    let (bob_lines, bob_call) = spawn_call(bob);
    wait_for_line(&bob_lines, "joined bob");

    let out = moose_call(
        &relay,
        &["--name", "bob", "--room", "names", "--seconds", "1"],
    )
    .output()
    .expect("run moose-call");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "moose-call: refused: name is taken"
    );
    assert!(out.stdout.is_empty());
    bob_call.join().expect("bob");
}

#[test]
fn a_wrong_password_is_refused_with_exit_3() {
    let relay = TestRelay::start(0);
    let mut bob = relay.config("bob", "locked");
    bob.password = Some("secret".to_owned());
    bob.duration = Some(Duration::from_secs(3));
    let (bob_lines, bob_call) = spawn_call(bob);
    wait_for_line(&bob_lines, "joined bob");

    let args = [
        "--name",
        "eve",
        "--room",
        "locked",
        "--password",
        "guess",
        "--seconds",
        "1",
    ];
    let out = moose_call(&relay, &args).output().expect("run moose-call");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused: wrong password"));

    let args = [
        "--name",
        "amy",
        "--room",
        "locked",
        "--password",
        "secret",
        "--seconds",
        "0.5",
    ];
    let out = moose_call(&relay, &args).output().expect("run moose-call");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bob_call.join().expect("bob");
}

#[test]
fn other_failures_exit_1() {
    let relay = TestRelay::start(0);
    // Not hex.
    let out = Process::new(env!("CARGO_BIN_EXE_moose-call"))
        .args(["--server", &relay.addr.to_string(), "--pubkey", "xyz"])
        .args(["--name", "a", "--room", "r", "--seconds", "1"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("64 hex digits"));

    // Wrong server key: the handshake fails.
    let other = "11".repeat(32);
    let out = Process::new(env!("CARGO_BIN_EXE_moose-call"))
        .args(["--server", &relay.addr.to_string(), "--pubkey", &other])
        .args(["--name", "a", "--room", "r", "--seconds", "1"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Nobody listening.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let out = Process::new(env!("CARGO_BIN_EXE_moose-call"))
        .args([
            "--server",
            &closed.to_string(),
            "--pubkey",
            &relay.public_hex,
        ])
        .args(["--name", "a", "--room", "r", "--seconds", "1"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));

    // A usage error is 1 too, not clap's 2.
    let out = Process::new(env!("CARGO_BIN_EXE_moose-call"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn commands_can_drive_a_call_in_process() {
    let relay = TestRelay::start(0);
    let call = Call::connect(relay.config("solo", "quiet")).expect("connect");
    let commands = call.commands();
    // Queued before the call is in the room: applied once it is.
    assert!(commands.send(Command::Mute));
    assert!(commands.send(Command::Chat("x".repeat(2_000))));
    assert!(commands.send(Command::Leave));
    let mut events = Vec::new();
    let summary = call
        .run(&AtomicBool::new(false), |e| events.push(e))
        .expect("run");
    assert!(summary.sid.is_some());
    assert_eq!(summary.stats.packets_sent, 0);
    assert_eq!(events.first(), Some(&CallEvent::Joined("solo".to_owned())));
    assert_eq!(events.get(1), Some(&CallEvent::Muted("solo".to_owned())));
    // Over the 1024-byte chat limit: not sent, and said so (the call goes on).
    assert!(
        matches!(events.get(2), Some(CallEvent::Notice(n)) if n.starts_with("chat not sent")),
        "{events:?}"
    );
}

#[test]
fn ctrl_c_leaves_cleanly() {
    use std::io::BufRead;
    let relay = TestRelay::start(0);
    let mut bob = relay.config("bob", "sig");
    bob.duration = Some(Duration::from_secs(5));
    let (bob_lines, bob_call) = spawn_call(bob);
    wait_for_line(&bob_lines, "joined bob");

    // No --seconds, and stdin held open: only the signal ends this call.
    let mut alice = moose_call(&relay, &["--name", "alice", "--room", "sig"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn moose-call");
    let stdout = alice.stdout.take().expect("stdout");
    let mut first = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .expect("read");
    assert_eq!(first, "joined alice\n");
    let killed = Process::new("kill")
        .args(["-INT", &alice.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = alice.wait_with_output().expect("alice exits");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for_line(&bob_lines, "left alice");
    bob_call.join().expect("bob");
}
