//! Graceful stop: SIGTERM or SIGINT → stop accepting → let calls end, within `--drain-seconds`
//! → exit 0. A second signal exits at once with 128 + its number (130 for SIGINT, 143 for
//! SIGTERM), as a shell reports a process killed by it.
//!
//! The main thread waits for the signals (blocked in every thread, see
//! `sys::block_stop_signals`) and decides when to exit; the cores only read the `draining` flag
//! of [`Lifecycle`]: each one stops its HTTP and VoRS TCP listeners when it turns (checked every
//! [`FLAG_POLL`]), and the admin endpoint answers `/readyz` with 503 from then on. UDP keeps
//! serving the members already in rooms. Calls are counted from the cores' gauges (lines and
//! VoRS rooms), so the main thread never touches a core's state.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::stats::CoreStats;
use crate::sys::StopSignals;

/// How often each core looks at the draining flag: the delay between the signal and the last
/// listener closing.
pub(crate) const FLAG_POLL: Duration = Duration::from_millis(100);
/// How often the main thread counts the calls left while draining.
const CENSUS_EVERY: Duration = Duration::from_millis(100);
/// The drain progress is logged when the count changes, and at least this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Process-wide state every core may read: is the relay draining?
#[derive(Debug, Default)]
pub(crate) struct Lifecycle {
    draining: AtomicBool,
}

impl Lifecycle {
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Resolves once draining has started (on a core: polls the flag every [`FLAG_POLL`]).
    pub(crate) async fn draining(&self) {
        while !self.is_draining() {
            glommio::timer::sleep(FLAG_POLL).await;
        }
    }
}

/// What is still running, summed over every core's gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Census {
    pub lines: u64,
    pub line_peers: u64,
    pub rooms: u64,
    pub members: u64,
}

impl Census {
    pub(crate) fn of(cores: &[Arc<CoreStats>]) -> Census {
        cores.iter().fold(Census::default(), |sum, c| Census {
            lines: sum.lines + c.lines.get(),
            line_peers: sum.line_peers + c.line_peers.get(),
            rooms: sum.rooms + c.vors_rooms.get(),
            members: sum.members + c.vors_members.get(),
        })
    }

    /// Calls in progress: Moose lines and VoRS rooms.
    pub(crate) fn calls(&self) -> u64 {
        self.lines + self.rooms
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// The exit status after a second stop signal: 128 + its number.
pub(crate) fn immediate_exit_status(signal: i32) -> i32 {
    128 + signal
}

/// Runs on the main thread once every core serves: waits for a stop signal, drains, and
/// returns the process's exit status.
pub(crate) fn supervise(
    signals: &StopSignals,
    lifecycle: &Lifecycle,
    cores: &[Arc<CoreStats>],
    drain: Duration,
) -> i32 {
    let first = loop {
        if let Some(signal) = signals.wait(Duration::from_secs(3600)) {
            break signal;
        }
    };
    lifecycle.start_draining();
    let started = Instant::now();
    let deadline = started + drain;
    let mut last = Census::of(cores);
    info!(
        signal = signal_name(first),
        calls = last.calls(),
        lines = last.lines,
        rooms = last.rooms,
        drain_seconds = drain.as_secs(),
        "draining: no new connections; waiting for calls to end (a second signal exits at once)"
    );
    let mut logged = started;
    loop {
        let census = Census::of(cores);
        let now = Instant::now();
        if census.calls() == 0 {
            info!(
                elapsed_ms = now.duration_since(started).as_millis() as u64,
                "drained: every call has ended; exiting"
            );
            return 0;
        }
        if now >= deadline {
            warn!(
                calls = census.calls(),
                lines = census.lines,
                line_peers = census.line_peers,
                rooms = census.rooms,
                members = census.members,
                "drain deadline passed; exiting with calls still up"
            );
            return 0;
        }
        if census != last || now.duration_since(logged) >= PROGRESS_EVERY {
            info!(
                calls = census.calls(),
                lines = census.lines,
                line_peers = census.line_peers,
                rooms = census.rooms,
                members = census.members,
                seconds_left = deadline.duration_since(now).as_secs(),
                "draining"
            );
            last = census;
            logged = now;
        }
        if let Some(signal) = signals.wait(deadline.duration_since(now).min(CENSUS_EVERY)) {
            let status = immediate_exit_status(signal);
            warn!(
                signal = signal_name(signal),
                status,
                calls = census.calls(),
                "second stop signal: exiting at once"
            );
            return status;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn census_sums_lines_and_rooms_over_cores() {
        let cores: Vec<Arc<CoreStats>> = (0..3).map(|_| Arc::new(CoreStats::default())).collect();
        assert_eq!(Census::of(&cores).calls(), 0);
        cores[0].lines.set(2);
        cores[0].line_peers.set(4);
        cores[2].vors_rooms.set(1);
        cores[2].vors_members.set(3);
        let census = Census::of(&cores);
        assert_eq!(census.calls(), 3);
        assert_eq!(census.line_peers, 4);
        assert_eq!(census.members, 3);
    }

    #[test]
    fn a_second_signal_exits_as_a_shell_reports_it() {
        assert_eq!(immediate_exit_status(libc::SIGINT), 130);
        assert_eq!(immediate_exit_status(libc::SIGTERM), 143);
    }
}
