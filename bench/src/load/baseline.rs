//! `moose-baseline`, the minimal forwarder the relay is compared with: found next to this
//! executable, started with the bench's own listeners and (for VoRS) a table of the rooms'
//! UDP addresses, stopped by closing its stdin.
//!
//! Its interface: `moose-baseline --cores N --ws-listen ADDR --vors-listen ADDR
//! [--vors-table FILE]` prints `listening ws=ADDR vors=ADDR` once ready and runs until its
//! stdin closes (or SIGTERM). The table has one line per room: the members' UDP source
//! addresses, separated by spaces.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::LoadError;

/// The binary's name.
pub const BINARY: &str = "moose-baseline";
/// How long it may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long it may take to exit once its stdin is closed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// A running `moose-baseline`, stopped on drop.
#[derive(Debug)]
pub struct Baseline {
    child: Child,
    /// Its WebSocket address.
    pub ws: SocketAddr,
    /// Its UDP address.
    pub vors: SocketAddr,
    table: Option<PathBuf>,
}

/// Where `moose-baseline` should be: next to the running executable.
pub fn binary() -> Result<PathBuf, LoadError> {
    let exe = std::env::current_exe().map_err(LoadError::io("find the moose-bench executable"))?;
    let path = exe
        .parent()
        .map(|dir| dir.join(BINARY))
        .unwrap_or_else(|| PathBuf::from(BINARY));
    if !path.is_file() {
        return Err(LoadError::Plan(format!(
            "--baseline needs {BINARY} next to moose-bench, and {} does not exist: build it \
             with `cargo build --release -p moose-bench` (it is part of the bench package)",
            path.display()
        )));
    }
    Ok(path)
}

/// Binds one loopback UDP socket per stream for a baseline run, and the table of their
/// addresses by room.
pub fn bind_members(
    streams: usize,
    room_size: usize,
) -> Result<(Vec<UdpSocket>, Vec<Vec<SocketAddr>>), LoadError> {
    let mut sockets = Vec::with_capacity(streams);
    let mut rooms = vec![Vec::new(); streams.div_ceil(room_size.max(1))];
    for i in 0..streams {
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(LoadError::io("bind a UDP socket"))?;
        let addr = socket
            .local_addr()
            .map_err(LoadError::io("read a UDP socket's address"))?;
        rooms[i / room_size].push(addr);
        sockets.push(socket);
    }
    Ok((sockets, rooms))
}

/// The `--vors-table` text: one line per room, addresses separated by spaces.
pub fn table_text(rooms: &[Vec<SocketAddr>]) -> String {
    rooms
        .iter()
        .map(|room| {
            let line: Vec<String> = room.iter().map(SocketAddr::to_string).collect();
            line.join(" ") + "\n"
        })
        .collect()
}

impl Baseline {
    /// Starts the forwarder on `cores` cores, loopback listeners on free ports, with the VoRS
    /// rooms of `rooms` when given; waits for its ready line.
    pub fn start(cores: usize, rooms: Option<&[Vec<SocketAddr>]>) -> Result<Baseline, LoadError> {
        Baseline::start_on(cores, &[], rooms)
    }

    /// As [`Baseline::start`], with the workers pinned to `cpus` in turn (empty: the CPUs
    /// this process may use).
    pub fn start_on(
        cores: usize,
        cpus: &[usize],
        rooms: Option<&[Vec<SocketAddr>]>,
    ) -> Result<Baseline, LoadError> {
        let path = binary()?;
        let mut cmd = Command::new(&path);
        cmd.args(["--cores", &cores.to_string()])
            .args(["--ws-listen", "127.0.0.1:0", "--vors-listen", "127.0.0.1:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if !cpus.is_empty() {
            let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
            cmd.arg("--cpus").arg(list.join(","));
        }
        let mut table = None;
        if let Some(rooms) = rooms {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let file = std::env::temp_dir().join(format!(
                "moose-bench-{}-{}.table",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::File::create(&file)
                .and_then(|mut f| f.write_all(table_text(rooms).as_bytes()))
                .map_err(LoadError::io("write the baseline's room table"))?;
            cmd.arg("--vors-table").arg(&file);
            table = Some(file);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| LoadError::Plan(format!("could not start {}: {e}", path.display())))?;
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut baseline = Baseline {
            child,
            ws: SocketAddr::from(([0, 0, 0, 0], 0)),
            vors: SocketAddr::from(([0, 0, 0, 0], 0)),
            table,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).map_err(|_| {
                LoadError::Plan(format!(
                    "{BINARY} printed no `listening ws=... vors=...` line within {} s",
                    READY_TIMEOUT.as_secs()
                ))
            })?;
            if let Some((ws, vors)) = parse_ready(&line) {
                baseline.ws = ws;
                baseline.vors = vors;
                return Ok(baseline);
            }
        }
    }

    /// Its process id, for its CPU time.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Parses `listening ws=ADDR vors=ADDR`.
fn parse_ready(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.strip_prefix("listening ")?;
    let field = |name: &str| {
        rest.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    Some((field("ws")?, field("vors")?))
}

impl Drop for Baseline {
    fn drop(&mut self) {
        // Closing stdin is the agreed way to stop it; kill it if it lingers.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + EXIT_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(table) = self.table.take() {
            let _ = std::fs::remove_file(table);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_names_both_addresses() {
        let (ws, vors) =
            parse_ready("listening ws=127.0.0.1:4001 vors=127.0.0.1:4002").expect("parse");
        assert_eq!(ws.port(), 4001);
        assert_eq!(vors.port(), 4002);
        assert_eq!(parse_ready("listening ws=127.0.0.1:4001"), None);
        assert_eq!(parse_ready("starting"), None);
    }

    #[test]
    fn table_has_one_line_per_room() {
        let (sockets, rooms) = bind_members(6, 3).expect("bind");
        assert_eq!(sockets.len(), 6);
        let text = table_text(&rooms);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].split(' ').count(), 3);
        let first: SocketAddr = lines[1]
            .split(' ')
            .next()
            .expect("addr")
            .parse()
            .expect("addr");
        assert_eq!(first, sockets[3].local_addr().expect("addr"));
    }
}
