//! `moose-call` processes as tests drive them: started against a real relay (or a path in front
//! of it), their stdout lines awaited with deadlines, commands typed on their stdin, signals
//! sent, and their exit, stderr and summary collected; and [`tone_call`], a whole one-way call
//! from join to leave.
//!
//! Every wait here is for an event (a line, a process exiting) with a deadline, never a fixed
//! sleep. When a test panics, each call's stdout and stderr are printed ([`CallProc`]'s drop).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::binary;
use crate::relay::Relay;

/// How often a process is looked at while waiting for it to exit.
const POLL: Duration = Duration::from_millis(50);

/// A running `moose-call`: stdin piped, stdout lines on a channel, stderr collected.
/// Killed on drop; when the test is panicking, its output is printed first.
#[derive(Debug)]
pub struct CallProc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every stdout line consumed so far, in order.
    pub seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<thread::JoinHandle<()>>,
}

/// How a `moose-call` ended.
#[derive(Debug)]
pub struct Exit {
    pub name: String,
    pub status: ExitStatus,
    pub stderr: String,
    /// Every stdout line, including those consumed before the exit.
    pub lines: Vec<String>,
}

/// The summary moose-call prints on stderr when it leaves cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub frames: u64,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
}

impl Exit {
    /// Parses `moose-call: left: F frames, P packets sent, R received, L lost`.
    pub fn summary(&self) -> Summary {
        let line = self
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("moose-call: left: "))
            .unwrap_or_else(|| panic!("no summary in stderr:\n{}", self.stderr));
        let numbers: Vec<u64> = line
            .split(", ")
            .filter_map(|part| part.split_whitespace().next()?.parse().ok())
            .collect();
        let [frames, sent, received, lost] = numbers[..] else {
            panic!("unexpected summary {line:?}");
        };
        Summary {
            frames,
            sent,
            received,
            lost,
        }
    }

    /// N from `moose-call: the input fell behind N times` (a live input command that was
    /// late for the call's 20 ms clock N times); 0 without that line.
    pub fn input_fell_behind(&self) -> u64 {
        self.stderr
            .lines()
            .find_map(|l| l.strip_prefix("moose-call: the input fell behind "))
            .and_then(|rest| rest.split(' ').next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Asserts exit code 0, showing stderr otherwise.
    pub fn assert_success(&self, who: &str) {
        assert_eq!(
            self.status.code(),
            Some(0),
            "{who} failed; stderr:\n{}",
            self.stderr
        );
    }
}

/// The arguments that put `name` in `room` on the relay, reached at `server`, then `extra`.
fn call_args(
    server: SocketAddr,
    relay: &Relay,
    name: &str,
    room: &str,
    extra: &[&str],
) -> Vec<String> {
    let server = server.to_string();
    let required = [
        "--server",
        &server,
        "--pubkey",
        &relay.vors_pubkey,
        "--name",
        name,
        "--room",
        room,
    ];
    required
        .iter()
        .chain(extra)
        .map(|arg| (*arg).to_owned())
        .collect()
}

impl CallProc {
    /// Starts `moose-call` against the relay's VoRS port as `name` in `room`, with `extra`
    /// arguments after the required ones.
    pub fn start(relay: &Relay, name: &str, room: &str, extra: &[&str]) -> CallProc {
        CallProc::start_via(relay.vors, relay, name, room, extra)
    }

    /// Like [`CallProc::start`], but reaching the relay through `server` (a proxy or a
    /// lossy path in front of it).
    pub fn start_via(
        server: SocketAddr,
        relay: &Relay,
        name: &str,
        room: &str,
        extra: &[&str],
    ) -> CallProc {
        CallProc::spawn(name, &call_args(server, relay, name, room, extra))
    }

    /// Like [`CallProc::start`], with `env` added to the environment moose-call runs in (a
    /// `HOME` whose `.asoundrc` names the test's sound devices).
    pub fn start_with_env(
        relay: &Relay,
        name: &str,
        room: &str,
        extra: &[&str],
        env: &[(&str, &Path)],
    ) -> CallProc {
        let args = call_args(relay.vors, relay, name, room, extra);
        CallProc::spawn_with_env(name, &args, env)
    }

    /// Starts `moose-call` with exactly `args` (another server, a bad key, none at all);
    /// `name` only labels it in failure messages.
    pub fn spawn<S: AsRef<OsStr>>(name: &str, args: &[S]) -> CallProc {
        CallProc::spawn_with_env(name, args, &[])
    }

    /// [`CallProc::spawn`] with `env` added to moose-call's environment.
    pub fn spawn_with_env<S: AsRef<OsStr>>(
        name: &str,
        args: &[S],
        env: &[(&str, &Path)],
    ) -> CallProc {
        let mut child = Command::new(binary::moose_call())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn moose-call");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr_pipe = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_reader = thread::spawn({
            let stderr = Arc::clone(&stderr);
            move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = stderr_pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]);
                    stderr.lock().expect("stderr lock").push_str(&text);
                }
            }
        });
        CallProc {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// Waits up to `within` for the stdout line `want`; returns the lines read on the way
    /// (including `want`).
    pub fn expect_line(&mut self, want: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    let done = line == want;
                    got.push(line);
                    if done {
                        return got;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: no line {want:?} within {within:?}; read {got:?}",
                    self.name
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{}: stdout closed before {want:?}; read {got:?}", self.name)
                }
            }
        }
    }

    /// Types a line on the call's stdin.
    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to moose-call stdin");
        stdin.flush().expect("flush moose-call stdin");
    }

    /// Closes stdin: without `--seconds` the call leaves.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// What the call printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (a name `kill` knows: `INT`, `TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {}", self.name);
    }

    /// Sends SIGKILL: the process vanishes without leaving.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9 moose-call");
    }

    /// Hangs up as a user does (closes stdin), waits up to `within` for the process to exit,
    /// and checks that it left successfully.
    pub fn hang_up(mut self, within: Duration) -> Exit {
        self.close_stdin();
        let name = self.name.clone();
        let exit = self.wait(within);
        exit.assert_success(&name);
        exit
    }

    /// Waits up to `within` for the process to exit; collects the rest of its output.
    pub fn wait(mut self, within: Duration) -> Exit {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {within:?}",
                self.name
            );
            thread::sleep(POLL);
        };
        // The readers end at EOF, which follows the exit: stderr's is joined, and stdout's
        // lines are taken until its reader hangs up (not only those it has passed on by now,
        // which on a loaded machine can be none of them).
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let mut lines = std::mem::take(&mut self.seen);
        lines.extend(self.lines.iter());
        Exit {
            name: self.name.clone(),
            status,
            stderr: self.stderr(),
            lines,
        }
    }
}

impl Drop for CallProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let mut lines = self.seen.clone();
            lines.extend(self.lines.try_iter());
            eprintln!(
                "--- moose-call {}: stdout {lines:?}\n--- stderr:\n{}",
                self.name,
                self.stderr()
            );
        }
    }
}

impl Drop for Exit {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- moose-call {} ({}): stdout {:?}\n--- stderr:\n{}",
                self.name, self.status, self.lines, self.stderr
            );
        }
    }
}

/// A one-way call: bob joins through `via` (the relay's VoRS address, or a path in front of
/// it) recording into `rec`; alice joins directly and plays `tone` (`tone_seconds` long),
/// then leaves a second later, so nothing of hers is in flight when she goes. Returns
/// alice's and bob's exits, both checked successful, after bob printed exactly the joins
/// and the leave.
pub fn tone_call(
    relay: &Relay,
    via: SocketAddr,
    room: &str,
    tone: &Path,
    tone_seconds: u32,
    rec: &Path,
) -> (Exit, Exit) {
    const LINE: Duration = Duration::from_secs(15);
    let mut bob = CallProc::start_via(
        via,
        relay,
        "bob",
        room,
        &["--record", rec.to_str().expect("utf-8")],
    );
    bob.expect_line("joined bob", LINE);
    let seconds = (tone_seconds + 1).to_string();
    let alice = CallProc::start(
        relay,
        "alice",
        room,
        &[
            "--input",
            tone.to_str().expect("utf-8"),
            "--seconds",
            &seconds,
        ],
    );
    bob.expect_line("left alice", LINE);
    let alice = alice.hang_up(LINE);
    let bob = bob.hang_up(LINE);
    assert_eq!(bob.lines, ["joined bob", "joined alice", "left alice"]);
    (alice, bob)
}
