//! `--ramp`: more streams, step by step, until the service level objective breaks.
//!
//! Each step is a complete run (setup, load, grace) with `step` more streams than the last,
//! so every step's figures stand on their own and a step never inherits the backlog of the
//! one before. The answer is the largest stream count whose step met the SLO.
//!
//! With `--baseline` the relay and the baseline ramp side by side: each step runs the relay,
//! then the baseline, with the same stream count, so both capacities come from one run on
//! one machine. A server that broke the SLO is not measured again (its answer is found); the
//! other climbs on until it breaks too or the ramp reaches its maximum.

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

impl Steps {
    /// `start`, `start + step`, ... up to `max`.
    fn counts(self) -> Result<impl Iterator<Item = usize>, LoadError> {
        if self.start == 0 || self.step == 0 {
            return Err(LoadError::Plan(
                "--ramp-start and --ramp-step must be positive".into(),
            ));
        }
        let Steps { start, step, max } = self;
        Ok(
            std::iter::successors(Some(start), move |n| n.checked_add(step))
                .take_while(move |n| *n <= max),
        )
    }
}

/// What a ramp found.
#[derive(Debug, Clone, Default)]
pub struct RampResult {
    /// Every step, in order.
    pub steps: Vec<RampStep>,
    /// The most streams that met the SLO; 0 if the first step broke it.
    pub max_streams: u64,
    /// The run at `max_streams`, or the first step's if none met the SLO.
    pub best: Option<Run>,
}

impl RampResult {
    /// Records the step of `streams` that measured `run`; says whether it met `slo`, that
    /// is whether the ramp goes on.
    fn record(&mut self, streams: usize, run: Run, slo: &Slo) -> bool {
        let ok = slo.met_by(&run);
        self.steps.push(RampStep {
            streams: streams as u64,
            p99_us: run.latency_us.p99,
            loss: run.loss_ratio(),
            ok,
        });
        if ok {
            self.max_streams = streams as u64;
            self.best = Some(run);
        } else if self.best.is_none() {
            self.best = Some(run);
        }
        ok
    }
}

/// Runs `measure` with `start`, `start + step`, ... streams until a step breaks `slo` or
/// `max` is passed.
pub fn ramp(
    steps: Steps,
    slo: Slo,
    mut measure: impl FnMut(usize) -> Result<Run, LoadError>,
) -> Result<RampResult, LoadError> {
    let mut result = RampResult::default();
    for streams in steps.counts()? {
        let run = measure(streams)?;
        if !result.record(streams, run, &slo) {
            break;
        }
    }
    Ok(result)
}

/// Which server a side-by-side step measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The target, the relay under test.
    Relay,
    /// `moose-baseline`, the minimal forwarder.
    Baseline,
}

/// What a side-by-side ramp found: one ramp per server.
#[derive(Debug, Clone, Default)]
pub struct SideBySide {
    /// The relay's steps and answer.
    pub relay: RampResult,
    /// The baseline's steps and answer.
    pub baseline: RampResult,
}

/// Runs `measure(Relay, n)` then `measure(Baseline, n)` for n = `start`, `start + step`,
/// ..., leaving out a server once one of its steps broke `slo`, until both have broken it
/// or `max` is passed.
pub fn ramp_side_by_side(
    steps: Steps,
    slo: Slo,
    mut measure: impl FnMut(Side, usize) -> Result<Run, LoadError>,
) -> Result<SideBySide, LoadError> {
    let mut result = SideBySide::default();
    let (mut relay_on, mut baseline_on) = (true, true);
    for streams in steps.counts()? {
        if relay_on {
            let run = measure(Side::Relay, streams)?;
            relay_on = result.relay.record(streams, run, &slo);
        }
        if baseline_on {
            let run = measure(Side::Baseline, streams)?;
            baseline_on = result.baseline.record(streams, run, &slo);
        }
        if !relay_on && !baseline_on {
            break;
        }
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
            same_relay: None,
            cross_relay: None,
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

    fn steps(start: usize, step: usize, max: usize) -> Steps {
        Steps { start, step, max }
    }

    #[test]
    fn side_by_side_runs_the_relay_then_the_baseline_and_drops_a_server_once_broken() {
        // The relay's p99 passes 5 ms above 250 streams, the baseline's above 500.
        let mut tried = Vec::new();
        let result = ramp_side_by_side(steps(100, 100, 10_000), SLO, |side, n| {
            tried.push((side, n));
            let per_stream = match side {
                Side::Relay => 20.0,
                Side::Baseline => 10.0,
            };
            Ok(run(n, n as f64 * per_stream, 0))
        })
        .expect("ramp");
        use Side::{Baseline as B, Relay as R};
        assert_eq!(
            tried,
            vec![
                (R, 100),
                (B, 100),
                (R, 200),
                (B, 200),
                (R, 300),
                (B, 300),
                (B, 400),
                (B, 500),
                (B, 600),
            ]
        );
        let (relay, baseline) = (&result.relay, &result.baseline);
        assert_eq!((relay.max_streams, baseline.max_streams), (200, 500));
        let verdicts = |r: &RampResult| {
            r.steps
                .iter()
                .map(|s| (s.streams, s.ok))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            verdicts(relay),
            vec![(100, true), (200, true), (300, false)]
        );
        assert_eq!(
            verdicts(baseline),
            vec![
                (100, true),
                (200, true),
                (300, true),
                (400, true),
                (500, true),
                (600, false),
            ]
        );
        assert_eq!(baseline.steps[5].p99_us, 6000.0);
        assert_eq!(relay.best.as_ref().map(|r| r.streams), Some(200));
        assert_eq!(baseline.best.as_ref().map(|r| r.streams), Some(500));
    }

    #[test]
    fn side_by_side_climbs_on_with_the_relay_after_the_baseline_breaks() {
        // The baseline loses 2 in 1000 from the second step on; the relay never breaks, so
        // --ramp-max ends the ramp.
        let mut tried = Vec::new();
        let result = ramp_side_by_side(steps(2, 2, 8), SLO, |side, n| {
            tried.push((side, n));
            let lost = if side == Side::Baseline && n >= 4 {
                2
            } else {
                0
            };
            Ok(run(n, 10.0, lost))
        })
        .expect("ramp");
        assert_eq!(
            tried.iter().filter(|(s, _)| *s == Side::Baseline).count(),
            2
        );
        assert_eq!(tried.last(), Some(&(Side::Relay, 8)));
        assert_eq!(result.relay.max_streams, 8);
        assert!(result.relay.steps.iter().all(|s| s.ok));
        assert_eq!(result.baseline.max_streams, 2);
        assert!((result.baseline.steps[1].loss - 0.002).abs() < 1e-12);
    }

    #[test]
    fn side_by_side_ends_at_the_step_where_both_break_and_at_max_when_neither_does() {
        let mut calls = 0;
        let result = ramp_side_by_side(steps(10, 10, 1000), SLO, |_, n| {
            calls += 1;
            Ok(run(n, if n >= 30 { 9000.0 } else { 10.0 }, 0))
        })
        .expect("ramp");
        assert_eq!(calls, 6, "three steps of two servers, then none");
        assert_eq!(
            (result.relay.max_streams, result.baseline.max_streams),
            (20, 20)
        );

        let result =
            ramp_side_by_side(steps(10, 10, 25), SLO, |_, n| Ok(run(n, 10.0, 0))).expect("ramp");
        for r in [&result.relay, &result.baseline] {
            assert_eq!(r.max_streams, 20);
            assert_eq!(r.steps.len(), 2);
        }
    }

    #[test]
    fn side_by_side_a_baseline_broken_at_once_reports_zero_and_its_first_figures() {
        let result = ramp_side_by_side(steps(10, 10, 30), SLO, |side, n| {
            Ok(run(
                n,
                if side == Side::Baseline { 9000.0 } else { 10.0 },
                0,
            ))
        })
        .expect("ramp");
        assert_eq!(result.baseline.max_streams, 0);
        assert_eq!(result.baseline.steps.len(), 1);
        assert_eq!(result.baseline.best.map(|r| r.streams), Some(10));
        assert_eq!(result.relay.max_streams, 30);
    }

    #[test]
    fn side_by_side_stops_at_a_failed_measurement_and_refuses_empty_steps() {
        let mut calls = 0;
        let err = ramp_side_by_side(steps(1, 1, 10), SLO, |side, n| {
            calls += 1;
            if side == Side::Baseline && n == 2 {
                return Err(LoadError::Plan("setup failed".into()));
            }
            Ok(run(n, 10.0, 0))
        })
        .expect_err("the failure ends the ramp");
        assert!(err.to_string().contains("setup failed"), "{err}");
        assert_eq!(calls, 4);

        for bad in [steps(0, 1, 10), steps(1, 0, 10)] {
            let mut called = false;
            let err = ramp_side_by_side(bad, SLO, |_, n| {
                called = true;
                Ok(run(n, 10.0, 0))
            });
            assert!(matches!(err, Err(LoadError::Plan(_))) && !called);
        }
    }
}
