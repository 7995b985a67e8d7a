//! A real `moose-relay` process, started for a test and killed when the test drops it.
//!
//! The relay prints one line on stdout once every core has bound its sockets:
//! `listening http=ADDR vors=ADDR admin=ADDR vors_pubkey=HEX`. Tests pass `127.0.0.1:0` and
//! read the real ports from that line, so they never race for a port.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::binary;

/// The per-client limits lifted, for relays whose clients all come from one address (nginx in
/// front, or one load generator), as deploy/moose-relay.service.d/behind-nginx.conf lifts them.
pub const PER_CLIENT_LIMITS_OFF: [&str; 8] = [
    "--max-connections-per-address",
    "0",
    "--max-handshakes-per-address",
    "0",
    "--handshakes-per-minute",
    "0",
    "--max-rooms-per-address",
    "0",
];

/// A running relay, killed on drop.
#[derive(Debug)]
pub struct Relay {
    /// Where the relay serves HTTP and the WebSocket lines.
    pub http: SocketAddr,
    /// Where the relay serves VoRS: TCP for control, UDP for media.
    pub vors: SocketAddr,
    /// Where the relay serves `/metrics`, `/healthz` and `/readyz`.
    pub admin: SocketAddr,
    /// The VoRS server public key, 64 hex digits.
    pub vors_pubkey: String,
    child: Child,
    /// Lines the relay printed on stdout after the ready line.
    pub stdout: mpsc::Receiver<String>,
    /// Lines the relay printed on stdout before the ready line (e.g. the generated-key URL).
    pub preamble: Vec<String>,
    /// The relay's stderr lines, when started with [`Relay::start_capturing_stderr`]
    /// (otherwise stderr is the test's own).
    pub stderr: Option<mpsc::Receiver<String>>,
}

impl Relay {
    /// Starts the relay with `args` (loopback, port 0 listeners are added unless given) and
    /// `envs`, and waits up to 30 s for the ready line.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Relay {
        Self::launch(args, envs, false)
    }

    /// As [`Relay::start`], with the relay's stderr lines in [`Relay::stderr`].
    pub fn start_capturing_stderr(args: &[&str], envs: &[(&str, &str)]) -> Relay {
        Self::launch(args, envs, true)
    }

    fn launch(args: &[&str], envs: &[(&str, &str)], capture_stderr: bool) -> Relay {
        let mut cmd = Command::new(binary::moose_relay());
        if !args.contains(&"--vors-key") {
            cmd.arg("--vors-key").arg(temp_key_path());
        }
        for (flag, default) in [
            ("--listen", "127.0.0.1:0"),
            ("--vors-listen", "127.0.0.1:0"),
            ("--admin-listen", "127.0.0.1:0"),
        ] {
            if !args.contains(&flag) {
                cmd.args([flag, default]);
            }
        }
        if !args.contains(&"--cores") {
            cmd.args(["--cores", "2"]);
        }
        cmd.args(args)
            .env_remove("APIKEY")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if capture_stderr {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        let mut child = cmd.spawn().expect("spawn moose-relay");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        forward_lines(stdout, tx);
        let stderr = child.stderr.take().map(|stderr| {
            let (tx, rx) = mpsc::channel();
            forward_lines(stderr, tx);
            rx
        });
        let deadline = Duration::from_secs(30);
        let mut preamble = Vec::new();
        loop {
            let line = match rx.recv_timeout(deadline) {
                Ok(line) => line,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("relay printed no ready line: {e}");
                }
            };
            if let Some(rest) = line.strip_prefix("listening ") {
                let addr = |name: &str| -> SocketAddr {
                    rest.split_whitespace()
                        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
                        .parse()
                        .unwrap()
                };
                return Relay {
                    http: addr("http"),
                    vors: addr("vors"),
                    admin: addr("admin"),
                    vors_pubkey: rest
                        .split_whitespace()
                        .find_map(|kv| kv.strip_prefix("vors_pubkey="))
                        .unwrap_or_else(|| panic!("no vors_pubkey= in {line:?}"))
                        .to_string(),
                    child,
                    stdout: rx,
                    preamble,
                    stderr,
                };
            }
            preamble.push(line);
        }
    }

    /// The relay's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (e.g. `libc::SIGTERM`) to the relay.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Resident memory of the relay process in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Peak resident memory of the relay process since it started (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Resets the peak (VmHWM) to the current resident memory, so that a start-up peak cannot
    /// hide growth; where the kernel refuses, the peak only over-states growth.
    pub fn reset_peak_rss(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5");
    }

    /// Bytes the relay has written on its TCP connection from port `relay_port` to port
    /// `peer_port` (on loopback) that the peer has not acknowledged yet, from /proc/net/tcp;
    /// `None` when there is no such connection. It stands still once a peer that does not
    /// read has a full receive buffer.
    pub fn unacked(relay_port: u16, peer_port: u16) -> Option<u64> {
        let port = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
        std::fs::read_to_string("/proc/net/tcp")
            .ok()?
            .lines()
            .skip(1)
            .find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let ours =
                    port(fields.get(1)?)? == relay_port && port(fields.get(2)?)? == peer_port;
                let tx_queue = fields.get(4)?.split(':').next()?;
                ours.then(|| u64::from_str_radix(tx_queue, 16).ok())
                    .flatten()
            })
    }

    /// The remote addresses of the established IPv4 TCP connections to the relay's VoRS
    /// port, from /proc/net/tcp: the source addresses the relay sees its members come from.
    pub fn vors_tcp_peers(&self) -> Vec<SocketAddr> {
        // Each address is `AABBCCDD:PPPP`: the IPv4 address as the host's u32, in hex.
        let addr = |field: &str| -> Option<SocketAddr> {
            let (ip, port) = field.split_once(':')?;
            let ip = u32::from_str_radix(ip, 16).ok()?;
            let ip = std::net::Ipv4Addr::from(ip.to_ne_bytes());
            Some((ip, u16::from_str_radix(port, 16).ok()?).into())
        };
        const ESTABLISHED: &str = "01";
        std::fs::read_to_string("/proc/net/tcp")
            .expect("read /proc/net/tcp")
            .lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let local = addr(fields.get(1)?)?;
                let ours = local.port() == self.vors.port() && *fields.get(3)? == ESTABLISHED;
                ours.then(|| addr(fields.get(2)?)).flatten()
            })
            .collect()
    }

    /// Calls `step` (which sends something towards a peer that does not read) until the
    /// relay's bytes unacknowledged by that peer (see [`Relay::unacked`]) have stood still, above
    /// zero, for 200 ms: the kernel buffers towards it are full, and whatever the relay has for
    /// it from now on waits in the relay. (Zero standing still is a peer that takes everything
    /// so far.) Returns when they last moved; panics after `within`.
    pub fn fill_towards(
        relay_port: u16,
        peer_port: u16,
        within: Duration,
        mut step: impl FnMut(),
    ) -> std::time::Instant {
        let deadline = std::time::Instant::now() + within;
        let (mut last, mut moved) = (None, std::time::Instant::now());
        loop {
            step();
            let now = Self::unacked(relay_port, peer_port);
            if now != last {
                (last, moved) = (now, std::time::Instant::now());
            } else if now.is_some_and(|n| n > 0) && moved.elapsed() > Duration::from_millis(200) {
                return moved;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the buffers towards port {peer_port} did not fill within {within:?}: {now:?}"
            );
        }
    }

    /// The relay's open file descriptors, counted in /proc.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("the relay's fd table")
            .count()
    }

    /// A size in KiB from the `field` line of the relay's /proc status.
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Waits up to `within` for the relay to exit; its status, or `None` if it still runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every stderr line captured so far (see [`Relay::start_capturing_stderr`]).
    pub fn stderr_lines(&self) -> Vec<String> {
        let rx = self
            .stderr
            .as_ref()
            .expect("started with start_capturing_stderr");
        rx.try_iter().collect()
    }

    /// Every stderr line until the relay closed its stderr (it exited), waiting up to
    /// `within` for that; panics if stderr is still open then.
    pub fn stderr_until_closed(&self, within: Duration) -> Vec<String> {
        let rx = self
            .stderr
            .as_ref()
            .expect("started with start_capturing_stderr");
        let deadline = std::time::Instant::now() + within;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return lines,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("stderr still open after {within:?}; so far: {lines:?}")
                }
            }
        }
    }
}

/// Runs `moose-relay ARGS` to completion with `envs` (and no APIKEY from the test's own
/// environment): for `check-config` and start-up refusals.
pub fn run_relay(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(binary::moose_relay())
        .args(args)
        .env_remove("APIKEY")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A path for a fresh VoRS key in a directory of this test process.
fn temp_key_path() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("moose-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("vors-{}.key", NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// Sends each line `stdout` gives to `tx`, from a thread of its own, until the pipe closes.
fn forward_lines(stdout: impl Read + Send + 'static, tx: mpsc::Sender<String>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            let _ = tx.send(line.trim_end().to_string());
            line.clear();
        }
        // Drain anything left so the child never blocks on a full pipe.
        let _ = reader.read_to_end(&mut Vec::new());
    });
}
