//! The relay's `/metrics` as tests read them: samples by full name, families summed over
//! their labels, waits for a value, and a dump of the VoRS samples when a test fails.

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use crate::http::http_get;
use crate::relay::Relay;

/// How often [`wait_metrics`] reads the metrics again.
const POLL: Duration = Duration::from_millis(50);

/// One reading of the relay's `/metrics`: every sample by its full name, labels included.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    samples: BTreeMap<String, u64>,
}

impl Metrics {
    /// Reads the relay's `/metrics` once.
    pub fn read(relay: &Relay) -> Metrics {
        Metrics::parse(&relay.metrics())
    }

    /// The samples of a `/metrics` text; comments and unparsable lines are skipped.
    fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.trim().parse::<f64>().ok()? as u64))
            })
            .collect();
        Metrics { samples }
    }

    /// One sample, e.g. `moose_vors_joins_total`; 0 when absent.
    pub fn get(&self, sample: &str) -> u64 {
        self.samples.get(sample).copied().unwrap_or(0)
    }

    /// The sum of a family over its labels, e.g. `moose_vors_members` over cores.
    pub fn sum(&self, family: &str) -> u64 {
        self.samples
            .iter()
            .filter(|(name, _)| name.split('{').next() == Some(family))
            .map(|(_, v)| v)
            .sum()
    }

    /// `moose_vors_dropped_total{reason="..."}`.
    pub fn dropped(&self, reason: &str) -> u64 {
        self.get(&format!("moose_vors_dropped_total{{reason=\"{reason}\"}}"))
    }

    /// Drop reasons other than `allowed` with a non-zero count.
    pub fn drops_except(&self, allowed: &[&str]) -> Vec<(String, u64)> {
        self.samples
            .iter()
            .filter(|(name, v)| {
                **v > 0
                    && name.starts_with("moose_vors_dropped_total{")
                    && !allowed.iter().any(|r| name.contains(&format!("\"{r}\"")))
            })
            .map(|(name, v)| (name.clone(), *v))
            .collect()
    }

    /// The VoRS samples, one per line, for failure messages.
    pub fn vors(&self) -> String {
        self.samples
            .iter()
            .filter(|(name, _)| name.starts_with("moose_vors_"))
            .map(|(name, v)| format!("{name} {v}\n"))
            .collect()
    }
}

impl Relay {
    /// The relay's `/metrics` text.
    pub fn metrics(&self) -> String {
        http_get(self.admin, "/metrics").1
    }

    /// The value of one sample in `/metrics` (`name` includes labels, e.g.
    /// `moose_ws_dropped_total{reason="slow_receiver"}`); 0 when absent.
    pub fn metric(&self, name: &str) -> u64 {
        Metrics::read(self).get(name)
    }

    /// The sum of every sample of `family`, whatever its labels (e.g. `moose_lines` over
    /// every core); 0 when absent.
    pub fn metric_sum(&self, family: &str) -> u64 {
        Metrics::read(self).sum(family)
    }
}

/// Reads the metrics until `ready` holds, calling `between` between readings (for example
/// to keep a test-driven member's session going); panics after `within`.
pub fn wait_metrics(
    relay: &Relay,
    within: Duration,
    what: &str,
    mut between: impl FnMut(),
    ready: impl Fn(&Metrics) -> bool,
) -> Metrics {
    let deadline = Instant::now() + within;
    loop {
        let m = Metrics::read(relay);
        if ready(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "metrics: {what} not reached within {within:?}:\n{}",
            m.vors()
        );
        between();
        thread::sleep(POLL);
    }
}

/// Waits up to `within` for every VoRS room to close (its last member left), and returns
/// the metrics then: the counters of a finished call, nothing in flight any more.
pub fn wait_rooms_gone(relay: &Relay, within: Duration) -> Metrics {
    wait_metrics(
        relay,
        within,
        "room gone",
        || {},
        |m| m.sum("moose_vors_rooms") == 0,
    )
}

/// Prints the relay's VoRS metrics if the test panics while this guard lives.
#[derive(Debug)]
pub struct OnPanic<'a>(pub &'a Relay);

impl Drop for OnPanic<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            // A second panic here would abort the test binary and hide the first one.
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Metrics::read(self.0).vors()
            }));
            match read {
                Ok(text) => eprintln!("--- relay metrics at failure:\n{text}"),
                Err(_) => eprintln!("--- relay metrics unreadable at failure"),
            }
        }
    }
}
