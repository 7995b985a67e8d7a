//! `moose-bench` runs in the background of a test: started with its arguments and a JSON
//! file, waited for until every stream is sending, and checked once it has finished.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::Value;

use crate::binary;

/// A running `moose-bench` and its stderr, line by line (the progress line among them).
#[derive(Debug)]
pub struct BenchRun {
    child: Child,
    lines: Receiver<String>,
    reader: JoinHandle<Vec<String>>,
}

impl BenchRun {
    /// Starts `moose-bench ARGS --seconds SECONDS --json JSON`.
    pub fn start(args: &[&str], seconds: u64, json: &Path) -> BenchRun {
        let mut child = Command::new(binary::moose_bench())
            .args(args)
            .args(["--seconds", &seconds.to_string(), "--json"])
            .arg(json)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start moose-bench");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, lines) = mpsc::channel();
        let reader = thread::spawn(move || {
            let mut all = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                all.push(line);
            }
            all
        });
        BenchRun {
            child,
            lines,
            reader,
        }
    }

    /// Waits for the first progress line: every stream is set up and sending.
    pub fn wait_sending(&self, what: &str) {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("{what}: no progress line ({e})"));
            if line.contains(" sent ") {
                return;
            }
        }
    }

    /// Waits for the run to end and returns its JSON, checked for no loss and no damage.
    pub fn finished(self, json: &Path, what: &str) -> Value {
        self.finished_losing_at_most(json, what, 0.0)
    }

    /// As [`BenchRun::finished`], allowing `fraction` of the messages sent to be lost: for a
    /// test about something else whose relays share the test machine's CPUs with the load, where
    /// a scheduling stall can overflow a socket buffer.
    pub fn finished_losing_at_most(mut self, json: &Path, what: &str, fraction: f64) -> Value {
        let status = self.child.wait().expect("moose-bench ran");
        let stderr = self.reader.join().expect("stderr reader").join("\n");
        assert!(status.success(), "{what}: {stderr}");
        let text = std::fs::read_to_string(json).expect("JSON written");
        let v: Value = serde_json::from_str(&text).expect("well-formed JSON");
        let sent = v["sent"].as_u64().expect("sent");
        assert!(sent > 0, "{what}: {text}");
        let lost = v["lost"].as_u64().expect("lost");
        assert!(
            lost as f64 <= fraction * sent as f64,
            "{what} lost {lost} of {sent} messages: {text}"
        );
        assert_eq!(v["corrupted"].as_u64(), Some(0), "{what}: {text}");
        v
    }
}
