//! `--ramp`: more streams, step by step, until the service level objective breaks.
//!
//! Each step is a complete run (setup, load, grace) with `step` more streams than the last,
//! so every step's figures stand on their own and a step never inherits the backlog of the
//! one before. The answer is the largest stream count whose step met the SLO.

use super::LoadError;
use super::report::{RampStep, Run};

/// The service level objective a step must meet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slo {
    /// Largest acceptable share of deliveries lost (0.001 = 0.1 %).
    pub max_loss: f64,
    /// Largest acceptable 99th percentile latency, µs.
    pub max_p99_us: f64,
}

impl Slo {
    /// Whether `run` met it. Any corrupted delivery breaks it too.
    pub fn met_by(&self, run: &Run) -> bool {
        run.loss_ratio() <= self.max_loss
            && run.latency_us.p99 <= self.max_p99_us
            && run.corrupted == 0
    }
}

/// Stream counts to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steps {
    /// First step's streams.
    pub start: usize,
    /// Streams added per step.
    pub step: usize,
    /// Never more than this.
    pub max: usize,
}

/// What a ramp found.
#[derive(Debug, Clone)]
pub struct RampResult {
    /// Every step, in order.
    pub steps: Vec<RampStep>,
    /// The most streams that met the SLO; 0 if the first step broke it.
    pub max_streams: u64,
    /// The run at `max_streams`, or the first step's if none met the SLO.
    pub best: Option<Run>,
}

/// Runs `measure` with `start`, `start + step`, ... streams until a step breaks `slo` or
/// `max` is passed.
pub fn ramp(
    steps: Steps,
    slo: Slo,
    mut measure: impl FnMut(usize) -> Result<Run, LoadError>,
) -> Result<RampResult, LoadError> {
    if steps.start == 0 || steps.step == 0 {
        return Err(LoadError::Plan(
            "--ramp-start and --ramp-step must be positive".into(),
        ));
    }
    let mut result = RampResult {
        steps: Vec::new(),
        max_streams: 0,
        best: None,
    };
    let mut streams = steps.start;
    while streams <= steps.max {
        let run = measure(streams)?;
        let ok = slo.met_by(&run);
        result.steps.push(RampStep {
            streams: streams as u64,
            p99_us: run.latency_us.p99,
            loss: run.loss_ratio(),
            ok,
        });
        if !ok {
            if result.best.is_none() {
                result.best = Some(run);
            }
            break;
        }
        result.max_streams = streams as u64;
        result.best = Some(run);
        streams += steps.step;
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::report::Latency;

    fn run(streams: usize, p99: f64, lost: u64) -> Run {
        Run {
            protocol: "ws",
            room_size: 2,
            seconds: 1.0,
            streams: streams as u64,
            sent: 1000,
            received: 1000 - lost,
            lost,
            corrupted: 0,
            latency_us: Latency {
                p50: p99 / 2.0,
                p90: p99,
                p99,
                p999: p99,
                max: p99,
            },
            relay_cpu_ns_per_message: None,
            relay_memory_kib: None,
            send_skipped: 0,
            send_lag_us_p99: 0.0,
        }
    }

    const SLO: Slo = Slo {
        max_loss: 0.001,
        max_p99_us: 5000.0,
    };

    #[test]
    fn stops_at_the_first_step_over_the_latency_objective() {
        let steps = Steps {
            start: 100,
            step: 100,
            max: 10_000,
        };
        let mut tried = Vec::new();
        let result = ramp(steps, SLO, |n| {
            tried.push(n);
            Ok(run(n, n as f64 * 10.0, 0))
        })
        .expect("ramp");
        assert_eq!(tried, vec![100, 200, 300, 400, 500, 600]);
        assert_eq!(result.max_streams, 500);
        assert_eq!(result.best.map(|r| r.streams), Some(500));
        assert!(!result.steps.last().expect("steps").ok);
    }

    #[test]
    fn loss_over_the_objective_breaks_it_and_max_bounds_the_ramp() {
        let steps = Steps {
            start: 2,
            step: 2,
            max: 6,
        };
        let result =
            ramp(steps, SLO, |n| Ok(run(n, 10.0, if n >= 4 { 2 } else { 1 }))).expect("ramp");
        assert_eq!(
            result.max_streams, 2,
            "1 lost in 1000 meets 0.1 %, 2 do not"
        );

        let result = ramp(steps, SLO, |n| Ok(run(n, 10.0, 0))).expect("ramp");
        assert_eq!(result.max_streams, 6);
        assert_eq!(result.steps.len(), 3);
    }

    #[test]
    fn a_first_step_that_fails_reports_zero_and_its_figures() {
        let steps = Steps {
            start: 10,
            step: 10,
            max: 100,
        };
        let result = ramp(steps, SLO, |n| Ok(run(n, 9000.0, 0))).expect("ramp");
        assert_eq!(result.max_streams, 0);
        assert_eq!(result.best.map(|r| r.streams), Some(10));
    }
}
