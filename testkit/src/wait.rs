//! Waiting for a state a test can only poll (a server's answer, a process's memory) with a
//! deadline.

use std::time::{Duration, Instant};

/// Polls `done` every 50 ms until it holds; a panic naming `what` after `within`.
pub fn wait_for(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
