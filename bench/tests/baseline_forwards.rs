//! `moose-baseline` forwards VoRS datagrams by its table and WebSocket messages by apikey, and
//! exits 0 when its stdin closes. Real process, real sockets on loopback.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tungstenite::{Message, WebSocket};

/// Bound on every wait: generous for a loaded CI machine, never reached when things work.
const DEADLINE: Duration = Duration::from_secs(10);

struct Baseline {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    ws: SocketAddr,
    vors: SocketAddr,
}

impl Baseline {
    fn start(cores: usize, table: Option<&str>) -> Baseline {
        Baseline::start_with(cores, table, &[])
    }

    fn start_with(cores: usize, table: Option<&str>, extra: &[&str]) -> Baseline {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_moose-baseline"));
        cmd.args(["--cores", &cores.to_string()])
            .args(extra)
            .args(["--ws-listen", "127.0.0.1:0", "--vors-listen", "127.0.0.1:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let table_file = table.map(|text| {
            let path = std::env::temp_dir().join(format!(
                "moose-baseline-table-{}-{}",
                std::process::id(),
                text.len()
            ));
            std::fs::write(&path, text).expect("write table");
            path
        });
        if let Some(path) = &table_file {
            cmd.arg("--vors-table").arg(path);
        }
        let mut child = cmd.spawn().expect("start moose-baseline");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        let line = with_deadline("the listening line", move || {
            let mut line = String::new();
            BufReader::new(stdout)
                .read_line(&mut line)
                .expect("read stdout");
            line
        });
        if let Some(path) = table_file {
            let _ = std::fs::remove_file(path);
        }
        let rest = line
            .strip_prefix("listening ws=")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let (ws, vors) = rest.trim_end().split_once(" vors=").expect("two addresses");
        Baseline {
            child: Some(child),
            stdin,
            ws: ws.parse().expect("ws address"),
            vors: vors.parse().expect("vors address"),
        }
    }

    /// Closes stdin and returns the exit status.
    fn close_stdin_and_wait(mut self) -> ExitStatus {
        drop(self.stdin.take());
        let mut child = self.child.take().expect("running");
        with_deadline("exit after stdin closed", move || {
            child.wait().expect("wait")
        })
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `f` on a thread and panics if it has not finished within [`DEADLINE`].
fn with_deadline<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn udp() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s
}

fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = s
        .recv_from(&mut buf)
        .expect("a datagram before the deadline");
    (buf[..n].to_vec(), from)
}

#[test]
fn datagrams_reach_the_other_members_of_their_table_line_only() {
    let (a, b, c) = (udp(), udp(), udp());
    let (stranger, loner) = (udp(), udp());
    let addr = |s: &UdpSocket| s.local_addr().expect("addr").to_string();
    let table = format!(
        "# one room of three, and one member alone\n{} {}  {}\n\n{}\n",
        addr(&a),
        addr(&b),
        addr(&c),
        addr(&loner)
    );
    // One worker, so that everything passes through one socket in order and a later datagram
    // that arrives proves an earlier one was dropped, not delayed.
    let baseline = Baseline::start(1, Some(&table));

    let voice: Vec<u8> = (0..=255u8).cycle().take(700).collect();
    a.send_to(&voice, baseline.vors).expect("send");
    for member in [&b, &c] {
        assert_eq!(
            recv(member),
            (voice.clone(), baseline.vors),
            "byte-exact copy"
        );
    }

    stranger.send_to(b"unlisted", baseline.vors).expect("send");
    loner.send_to(b"alone", baseline.vors).expect("send");
    b.send_to(b"from b", baseline.vors).expect("send");
    // A's next datagram is B's: neither its own, the stranger's nor the loner's came back.
    assert_eq!(recv(&a).0, b"from b");
    assert_eq!(recv(&c).0, b"from b", "C got nothing else in between");
    c.send_to(b"from c", baseline.vors).expect("send");
    assert_eq!(recv(&b).0, b"from c", "B did not get its own datagram back");
    assert_eq!(recv(&a).0, b"from c");

    assert!(baseline.close_stdin_and_wait().success());
}

type Client = WebSocket<TcpStream>;

fn upgrade(ws: SocketAddr, apikey: &str) -> Result<Client, tungstenite::Error> {
    let stream = TcpStream::connect(ws).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let url = format!("ws://{ws}/ws?apikey={apikey}");
    match tungstenite::client::client(url, stream) {
        Ok((client, response)) => {
            assert_eq!(response.status(), 101);
            Ok(client)
        }
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
        Err(tungstenite::HandshakeError::Interrupted(_)) => panic!("blocking handshake"),
    }
}

fn join(ws: SocketAddr, apikey: &str) -> Client {
    upgrade(ws, apikey).expect("upgrade")
}

fn next_binary(client: &mut Client) -> Vec<u8> {
    loop {
        match client.read().expect("a message before the deadline") {
            Message::Binary(b) => return b.to_vec(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn websocket_messages_reach_the_other_peers_of_their_line_whole() {
    const LINE: &str = "0123456789abcdef0123456789abcdef";
    const OTHER: &str = "another-line-key-fedcba9876543210";
    // Two workers, so peers of one line may be accepted on different threads and handed over.
    let baseline = Baseline::start(2, None);
    let mut first = join(baseline.ws, LINE);
    let mut second = join(baseline.ws, LINE);
    let mut outsider = join(baseline.ws, OTHER);

    // One Moose audio message each way (1024 bytes), then a few of every length form.
    let pcm: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
    first.send(Message::binary(pcm.clone())).expect("send");
    assert_eq!(next_binary(&mut second), pcm);
    second
        .send(Message::binary(b"back".to_vec()))
        .expect("send");
    assert_eq!(next_binary(&mut first), b"back");
    let sizes = [0usize, 125, 126, 65_535, 65_536];
    for (i, &n) in sizes.iter().enumerate() {
        let message: Vec<u8> = (0..n).map(|j| (i + j) as u8).collect();
        first.send(Message::binary(message)).expect("send");
    }
    for (i, &n) in sizes.iter().enumerate() {
        let want: Vec<u8> = (0..n).map(|j| (i + j) as u8).collect();
        assert_eq!(
            next_binary(&mut second),
            want,
            "message {i} whole and in order"
        );
    }

    // The outsider's first message is its own line's, so nothing of the other line reached it.
    let mut outsider_peer = join(baseline.ws, OTHER);
    outsider_peer
        .send(Message::binary(b"other line".to_vec()))
        .expect("send");
    assert_eq!(next_binary(&mut outsider), b"other line");

    // Ping gets pong; close gets close.
    first
        .send(Message::Ping(b"are you there".to_vec().into()))
        .expect("ping");
    match first.read().expect("pong") {
        Message::Pong(p) => assert_eq!(&p[..], b"are you there"),
        other => panic!("expected the pong, got {other:?}"),
    }
    first.close(None).expect("close");
    loop {
        match first.read() {
            Ok(Message::Close(_)) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            other => panic!("expected the close handshake to finish, got {other:?}"),
        }
    }

    drop((second, outsider, outsider_peer));
    assert!(baseline.close_stdin_and_wait().success());
}

/// Each `baseline-N` thread of process `pid` with its allowed CPUs, sorted by name.
fn worker_cpus(pid: u32) -> Vec<(String, Option<String>)> {
    let mut workers = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let task = task.expect("task").path();
        let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if name.starts_with("baseline-") {
            let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
            let cpus = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_owned());
            workers.push((name.trim().to_owned(), cpus));
        }
    }
    workers.sort();
    workers
}

#[test]
fn cpus_pins_every_worker_to_the_cpus_named() {
    // The first CPU this test may use: the one the workers are asked to share.
    let status = std::fs::read_to_string("/proc/self/status").expect("own status");
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list");
    let first = allowed
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .expect("a CPU")
        .to_owned();
    let baseline = Baseline::start_with(2, None, &["--cpus", &first]);
    let pid = baseline.child.as_ref().expect("child").id();
    let pinned = Some(first.clone());
    let expected = vec![
        ("baseline-0".to_owned(), pinned.clone()),
        ("baseline-1".to_owned(), pinned),
    ];
    // Each worker names and pins itself when it starts: look until both have.
    let deadline = std::time::Instant::now() + DEADLINE;
    let workers = loop {
        let workers = worker_cpus(pid);
        if workers == expected || std::time::Instant::now() > deadline {
            break workers;
        }
        std::thread::yield_now();
    };
    assert_eq!(workers, expected);
    assert!(baseline.close_stdin_and_wait().success());
}

#[test]
fn exits_zero_when_stdin_closes() {
    let baseline = Baseline::start(2, None);
    // It answers before stdin closes...
    TcpStream::connect(baseline.ws).expect("listening");
    let status = baseline.close_stdin_and_wait();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn refuses_a_malformed_apikey_before_upgrading() {
    let baseline = Baseline::start(1, None);
    let err = upgrade(baseline.ws, "short").expect_err("refused");
    match err {
        tungstenite::Error::Http(response) => assert_eq!(response.status(), 401),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
    // Lines written to stdin are ignored; only its end stops the forwarder.
    let mut stdin = baseline.stdin.as_ref().expect("stdin");
    stdin.write_all(b"ignored\n").expect("stdin still open");
    join(baseline.ws, "0123456789abcdef0123456789abcdef");
    assert!(baseline.close_stdin_and_wait().success());
}

#[test]
fn frames_sent_with_the_upgrade_request_and_fragments_arrive_whole() {
    use moose_proto::ws::{self, Opcode};
    use std::io::Read;
    const LINE: &str = "fragments-and-early-frames-0123";
    let baseline = Baseline::start(2, None);
    let mut listener = join(baseline.ws, LINE);

    // Request head, then a message in three fragments with a ping between them, all in one
    // write: the accepting worker reads them all and must pass the frames on with the socket.
    let mut bytes = format!(
        "GET /ws?apikey={LINE} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .into_bytes();
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    ws::encode_client_frame(false, Opcode::Binary, mask, b"whole ", &mut bytes);
    ws::encode_client_frame(true, Opcode::Ping, mask, b"p", &mut bytes);
    ws::encode_client_frame(false, Opcode::Continuation, mask, b"in ", &mut bytes);
    ws::encode_client_frame(true, Opcode::Continuation, mask, b"order", &mut bytes);
    let mut raw = TcpStream::connect(baseline.ws).expect("connect");
    raw.set_read_timeout(Some(DEADLINE)).expect("timeout");
    raw.write_all(&bytes).expect("write");

    assert_eq!(next_binary(&mut listener), b"whole in order");

    // The raw client gets the 101, then the pong.
    let mut got = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 512];
        let n = raw.read(&mut chunk).expect("response");
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&chunk[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    assert!(
        got.starts_with(b"HTTP/1.1 101 "),
        "{:?}",
        got.escape_ascii().to_string()
    );
    let mut rest = got.split_off(head_end);
    while rest.len() < 3 {
        let mut chunk = [0u8; 16];
        let n = raw.read(&mut chunk).expect("pong");
        assert!(n > 0, "closed before the pong");
        rest.extend_from_slice(&chunk[..n]);
    }
    let h = ws::decode_server_header(&rest, 125)
        .expect("valid frame")
        .expect("complete header");
    assert_eq!(
        (h.opcode, &rest[h.payload_range()]),
        (Opcode::Pong, &b"p"[..])
    );

    drop(raw);
    drop(listener);
    assert!(baseline.close_stdin_and_wait().success());
}
