//! A private tmux server for driving full-screen terminal programs as a person would: start
//! a command in a window of a given size, type keys (`send-keys`), read the screen
//! (`capture-pane`), and wait for text to appear with a deadline. The server has a socket of
//! its own (`tmux -L`), no configuration file, and is killed on drop.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// How often the screen is read while waiting for text.
const POLL: Duration = Duration::from_millis(50);

/// A tmux server of the test's own.
#[derive(Debug)]
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// A server named after the test process and `label` (started by its first window).
    pub fn new(label: &str) -> Tmux {
        Tmux {
            socket: format!("moose-{label}-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let output = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run tmux (is it installed? scripts/test.sh does): {e}"));
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Runs `command` (through the shell) in a new detached session `name`, `width` x
    /// `height` cells.
    pub fn open(&self, name: &str, width: u16, height: u16, command: &str) {
        self.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            command,
        ]);
    }

    /// Makes the window of session `name` `width` x `height` cells.
    pub fn resize(&self, name: &str, width: u16, height: u16) {
        self.run(&[
            "resize-window",
            "-t",
            name,
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
        ]);
    }

    /// Types `keys` into session `name`, in tmux's key names (`"hello"`, `"Enter"`, `"C-t"`).
    pub fn send_keys(&self, name: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", name];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Types `text` literally (no key names) into session `name`.
    pub fn type_text(&self, name: &str, text: &str) {
        self.run(&["send-keys", "-t", name, "-l", text]);
    }

    /// The screen of session `name`, one line per row.
    pub fn screen(&self, name: &str) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", name]).stdout).into_owned()
    }

    /// Waits up to `within` for `text` on the screen of session `name`; returns the screen.
    pub fn wait_for(&self, name: &str, text: &str, within: Duration) -> String {
        self.wait_until(name, within, &format!("{text:?}"), |screen| {
            screen.contains(text)
        })
    }

    /// Waits up to `within` for a screen of session `name` that `ok` accepts.
    pub fn wait_until(
        &self,
        name: &str,
        within: Duration,
        what: &str,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.screen(name);
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: no {what} on screen within {within:?}:\n{screen}"
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}
