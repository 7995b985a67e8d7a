//! Results: the figures of a run, the table on stdout, the JSON file, the progress line.
//!
//! JSON keys (a contract: scripts read them): `protocol`, `room_size`, `seconds`, `streams`,
//! `sent`, `received`, `lost`, `corrupted`, `latency_us.{p50,p90,p99,p999,max}`,
//! `relay_cpu_ns_per_message` (null when unknown), `relay_memory_kib.{before,idle,per_stream}`
//! (null when unknown: the server's resident memory before setup, with every stream idle,
//! and the growth per stream), and the bench's own health:
//! `send_skipped`, `send_lag_us_p99`. With `--ramp`: `max_streams` and `ramp` (one entry per
//! step: `streams`, `p99_us`, `loss`, `ok`), the top-level figures being those of the step at
//! `max_streams` (of the first step if none met the SLO). With `--baseline`: `baseline` (the
//! same keys, measured against `moose-baseline`) and `ratio` (relay over baseline, for each
//! latency and the CPU figure: `p50`, `p90`, `p99`, `p999`, `max`,
//! `relay_cpu_ns_per_message`, each null when the baseline's is 0 or unknown). With both,
//! the baseline ramps side by side with the relay: `baseline_max_streams`, `baseline_ramp`
//! (its steps, as `ramp`), `baseline` is its run at its own best step, and
//! `ratio.max_streams` is `max_streams / baseline_max_streams`, unrounded (null when the
//! baseline's is 0). With several `--target`s (vors): `same_relay` and `cross_relay`, each
//! `received`, `lost` and `latency_us.{p50,p90,p99,p999,max}`, for deliveries between
//! members on one relay and on two (absent with one target; the top-level figures count
//! both).

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

#[cfg(test)]
use super::ServerMemory;
use super::tally::{Split, new_histogram};
use super::{Outcome, Protocol, Sample};

/// Latency percentiles in µs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Highest seen.
    pub max: f64,
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

impl Latency {
    /// The percentiles of a histogram in ns.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
            };
        }
        Latency {
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// The server's resident memory around setup, KiB.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Memory {
    /// Before the first stream connected.
    pub before: u64,
    /// With every stream set up and idle.
    pub idle: u64,
    /// `(idle - before) / streams`: an upper bound on the memory each idle stream costs (it
    /// includes whatever the first streams warmed up once).
    pub per_stream: f64,
}

/// One measured run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// `ws` or `vors`.
    pub protocol: &'static str,
    /// Members per room.
    pub room_size: u64,
    /// Sending time in seconds.
    pub seconds: f64,
    /// Streams.
    pub streams: u64,
    /// Messages sent.
    pub sent: u64,
    /// Deliveries that passed every check.
    pub received: u64,
    /// Deliveries expected (sent × (room size − 1)) and not received.
    pub lost: u64,
    /// Deliveries that failed a check.
    pub corrupted: u64,
    /// One-way latency percentiles.
    pub latency_us: Latency,
    /// The server's CPU time per delivered message, when it runs here.
    pub relay_cpu_ns_per_message: Option<f64>,
    /// The server's resident memory, when it runs here.
    pub relay_memory_kib: Option<Memory>,
    /// Sends the bench skipped because a connection's backlog was full.
    pub send_skipped: u64,
    /// 99th percentile of how late sends left against their schedule: above a few ms the
    /// bench itself is the bottleneck.
    pub send_lag_us_p99: f64,
    /// With several targets: deliveries between members on the same relay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_relay: Option<RelaySide>,
    /// With several targets: deliveries between members on different relays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_relay: Option<RelaySide>,
}

/// Deliveries on one side of the same-relay / cross-relay split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RelaySide {
    /// Good deliveries.
    pub received: u64,
    /// Deliveries expected and not received.
    pub lost: u64,
    /// Their one-way latency percentiles.
    pub latency_us: Latency,
}

impl RelaySide {
    fn of(split: &Split) -> Self {
        RelaySide {
            received: split.received,
            lost: split.lost(),
            latency_us: Latency::of(&split.latency),
        }
    }
}

impl Run {
    /// The figures of `outcome`, sent for `seconds`.
    pub fn of(protocol: Protocol, seconds: f64, outcome: &Outcome) -> Self {
        let t = &outcome.tally;
        Run {
            protocol: protocol.name(),
            room_size: outcome.room_size as u64,
            seconds,
            streams: outcome.streams as u64,
            sent: t.sent,
            received: t.received,
            lost: outcome.lost(),
            corrupted: t.corrupted,
            latency_us: Latency::of(&t.latency),
            relay_cpu_ns_per_message: outcome.server_cpu_ns_per_message.map(|v| v.round()),
            relay_memory_kib: outcome.server_memory.map(|m| Memory {
                before: m.before_kib,
                idle: m.idle_kib,
                per_stream: (m.idle_kib.saturating_sub(m.before_kib) as f64
                    / outcome.streams.max(1) as f64
                    * 10.0)
                    .round()
                    / 10.0,
            }),
            send_skipped: t.send_skipped,
            send_lag_us_p99: if t.send_lag.is_empty() {
                0.0
            } else {
                us(t.send_lag.value_at_quantile(0.99))
            },
            same_relay: outcome.spread.then(|| RelaySide::of(&t.same_relay)),
            cross_relay: outcome.spread.then(|| RelaySide::of(&t.cross_relay)),
        }
    }

    /// Lost deliveries as a share of those expected.
    pub fn loss_ratio(&self) -> f64 {
        let expected = self.received + self.lost;
        if expected == 0 {
            return 0.0;
        }
        self.lost as f64 / expected as f64
    }
}

/// Relay figures divided by baseline figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratio {
    /// Of the medians.
    pub p50: Option<f64>,
    /// Of the 90th percentiles.
    pub p90: Option<f64>,
    /// Of the 99th percentiles.
    pub p99: Option<f64>,
    /// Of the 99.9th percentiles.
    pub p999: Option<f64>,
    /// Of the maxima.
    pub max: Option<f64>,
    /// Of the CPU time per message.
    pub relay_cpu_ns_per_message: Option<f64>,
    /// With `--ramp`: of the most streams within the SLO, unrounded so that a comparison
    /// with a target share (0.9) is exact. `Some(None)` (JSON null) when the baseline's is 0;
    /// `None` (no key) without a ramp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_streams: Option<Option<f64>>,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| (a / b * 100.0).round() / 100.0)
}

impl Ratio {
    /// `relay / baseline`, figure by figure (`None` where the baseline's is 0 or unknown).
    pub fn of(relay: &Run, baseline: &Run) -> Self {
        let (r, b) = (&relay.latency_us, &baseline.latency_us);
        Ratio {
            p50: ratio(r.p50, b.p50),
            p90: ratio(r.p90, b.p90),
            p99: ratio(r.p99, b.p99),
            p999: ratio(r.p999, b.p999),
            max: ratio(r.max, b.max),
            relay_cpu_ns_per_message: relay
                .relay_cpu_ns_per_message
                .zip(baseline.relay_cpu_ns_per_message)
                .and_then(|(a, b)| ratio(a, b)),
            max_streams: None,
        }
    }
}

/// One step of a ramp.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RampStep {
    /// Streams in this step.
    pub streams: u64,
    /// Its 99th percentile latency, µs.
    pub p99_us: f64,
    /// Its loss ratio (lost / expected).
    pub loss: f64,
    /// Whether it met the SLO.
    pub ok: bool,
}

/// Everything `--json` writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The run against the target.
    #[serde(flatten)]
    pub run: Run,
    /// With `--ramp`: the most streams that met the SLO (0 if even the first step broke it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_streams: Option<u64>,
    /// With `--ramp`: every step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ramp: Vec<RampStep>,
    /// With `--baseline`: the same load against `moose-baseline` (with `--ramp`, its run at
    /// its own best step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Run>,
    /// With `--ramp --baseline`: the most streams the baseline carried within the SLO.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_max_streams: Option<u64>,
    /// With `--ramp --baseline`: every step of the baseline's ramp.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub baseline_ramp: Vec<RampStep>,
    /// With `--baseline`: relay over baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<Ratio>,
}

impl Report {
    /// A report of one run.
    pub fn new(run: Run) -> Self {
        Report {
            run,
            max_streams: None,
            ramp: Vec::new(),
            baseline: None,
            baseline_max_streams: None,
            baseline_ramp: Vec::new(),
            ratio: None,
        }
    }

    /// Adds the baseline's run and the ratios.
    pub fn with_baseline(mut self, baseline: Run) -> Self {
        self.ratio = Some(Ratio::of(&self.run, &baseline));
        self.baseline = Some(baseline);
        self
    }

    /// Adds the baseline's side of a side-by-side ramp: its run at its best step, the most
    /// streams it carried within the SLO, its steps, and the ratio of the two maxima (set
    /// `max_streams` first).
    pub fn with_baseline_ramp(self, best: Run, max_streams: u64, steps: Vec<RampStep>) -> Self {
        let mut report = self.with_baseline(best);
        report.baseline_max_streams = Some(max_streams);
        report.baseline_ramp = steps;
        if let (Some(ratio), Some(relay)) = (report.ratio.as_mut(), report.max_streams) {
            ratio.max_streams = Some((max_streams > 0).then(|| relay as f64 / max_streams as f64));
        }
        report
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The table for humans: one column for the target, and with a baseline a second column
    /// and the ratio.
    pub fn table(&self) -> String {
        let r = &self.run;
        let b = self.baseline.as_ref();
        let mut out = String::new();
        let _ = write!(
            out,
            "moose-bench {}: {} streams in rooms of {}, {} s",
            r.protocol, r.streams, r.room_size, r.seconds
        );
        // A side-by-side ramp shows each server at its own best step.
        match b {
            Some(b) if b.streams != r.streams => {
                let _ = writeln!(out, " (baseline: {} streams)", b.streams);
            }
            _ => out.push('\n'),
        }
        let _ = write!(out, "{:<28}{:>14}", "", "relay");
        if b.is_some() {
            let _ = write!(out, "{:>14}{:>10}", "baseline", "ratio");
        }
        out.push('\n');
        type Pick = fn(&Run) -> Option<f64>;
        let rows: [(&str, Pick, bool); 14] = [
            ("latency p50 (µs)", |x| Some(x.latency_us.p50), true),
            ("latency p90 (µs)", |x| Some(x.latency_us.p90), true),
            ("latency p99 (µs)", |x| Some(x.latency_us.p99), true),
            ("latency p99.9 (µs)", |x| Some(x.latency_us.p999), true),
            ("latency max (µs)", |x| Some(x.latency_us.max), true),
            ("messages sent", |x| Some(x.sent as f64), false),
            ("messages received", |x| Some(x.received as f64), false),
            ("messages lost", |x| Some(x.lost as f64), false),
            ("messages corrupted", |x| Some(x.corrupted as f64), false),
            (
                "server CPU per message (ns)",
                |x| x.relay_cpu_ns_per_message,
                true,
            ),
            (
                "server KiB per idle stream",
                |x| x.relay_memory_kib.map(|m| m.per_stream),
                true,
            ),
            ("streams", |x| Some(x.streams as f64), false),
            (
                "bench send lag p99 (µs)",
                |x| Some(x.send_lag_us_p99),
                false,
            ),
            (
                "bench sends skipped",
                |x| Some(x.send_skipped as f64),
                false,
            ),
        ];
        let mut rows: Vec<Row> = rows
            .iter()
            .map(|&(name, pick, with_ratio)| {
                (name.to_owned(), pick(r), b.and_then(pick), with_ratio)
            })
            .collect();
        if r.same_relay.is_some() {
            rows.extend(split_rows(r, b));
        }
        for (name, mine, theirs, with_ratio) in rows {
            let _ = write!(out, "{name:<28}{:>14}", cell(mine));
            if b.is_some() {
                let _ = write!(out, "{:>14}", cell(theirs));
                let q = if with_ratio {
                    mine.zip(theirs).and_then(|(x, y)| ratio(x, y))
                } else {
                    None
                };
                let _ = write!(
                    out,
                    "{:>10}",
                    q.map_or(String::new(), |q| format!("{q:.2}"))
                );
            }
            out.push('\n');
        }
        if let Some(max) = self.max_streams {
            let _ = write!(out, "{:<28}{max:>14}", "max streams within SLO");
            if let Some(base) = self.baseline_max_streams {
                let q = self.ratio.and_then(|q| q.max_streams).flatten();
                let q = q.map_or("n/a".to_owned(), |q| format!("{q:.3}"));
                let _ = write!(out, "{base:>14}{q:>10}");
            }
            out.push('\n');
        }
        out
    }
}

/// A table row: its name, the run's figure, the baseline's, and whether to show their ratio.
type Row = (String, Option<f64>, Option<f64>, bool);

/// The table's rows for the same-relay / cross-relay split (with several targets).
fn split_rows(r: &Run, b: Option<&Run>) -> Vec<Row> {
    type Side = fn(&Run) -> Option<RelaySide>;
    type Figure = fn(RelaySide) -> f64;
    let sides: [(&str, Side); 2] = [
        ("same-relay", |x| x.same_relay),
        ("cross-relay", |x| x.cross_relay),
    ];
    let figures: [(&str, Figure, bool); 4] = [
        ("p50 (µs)", |s| s.latency_us.p50, true),
        ("p99 (µs)", |s| s.latency_us.p99, true),
        ("received", |s| s.received as f64, false),
        ("lost", |s| s.lost as f64, false),
    ];
    sides
        .iter()
        .flat_map(|&(side, pick)| {
            figures.iter().map(move |&(figure, value, with_ratio)| {
                let name = format!("{side} {figure}");
                (
                    name,
                    pick(r).map(value),
                    b.and_then(pick).map(value),
                    with_ratio,
                )
            })
        })
        .collect()
}

fn cell(v: Option<f64>) -> String {
    match v {
        None => "n/a".to_owned(),
        Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
    }
}

/// The once-a-second progress line, from the workers' samples.
#[derive(Debug)]
pub(crate) struct Progress {
    room_size: u64,
    sent: u64,
    received: u64,
    corrupted: u64,
    sent_at_last_line: u64,
    interval: Histogram<u64>,
}

impl Progress {
    pub(crate) fn new(room_size: usize) -> Self {
        Progress {
            room_size: room_size as u64,
            sent: 0,
            received: 0,
            corrupted: 0,
            sent_at_last_line: 0,
            interval: new_histogram(),
        }
    }

    pub(crate) fn add(&mut self, sample: &Sample) {
        self.sent += sample.sent;
        self.received += sample.received;
        self.corrupted += sample.corrupted;
        let _ = self.interval.add(&sample.interval);
    }

    /// The line for `elapsed` seconds. "Lost so far" counts only messages sent before the
    /// previous line (a second ago or more), so messages in flight are not counted lost.
    pub(crate) fn line(&mut self, elapsed: f64) -> String {
        let expected = self.sent_at_last_line * self.room_size.saturating_sub(1);
        let lost = expected.saturating_sub(self.received);
        let p99 = if self.interval.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.1}", us(self.interval.value_at_quantile(0.99)))
        };
        self.sent_at_last_line = self.sent;
        self.interval.reset();
        format!(
            "{elapsed:6.1} s  sent {}  received {}  lost {lost}  corrupted {}  p99 {p99} µs",
            self.sent, self.received, self.corrupted
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::tally::Tally;

    fn outcome(latencies_us: &[u64], sent: u64, room_size: usize) -> Outcome {
        let mut tally = Tally::default();
        for _ in 0..sent {
            tally.sent(0, 1_000);
        }
        for &l in latencies_us {
            tally.delivered(0, l * 1_000);
        }
        Outcome {
            tally,
            streams: 4,
            room_size,
            server_cpu_ns_per_message: Some(1234.4),
            spread: false,
            server_memory: Some(ServerMemory {
                before_kib: 30_000,
                idle_kib: 30_050,
            }),
        }
    }

    #[test]
    fn run_figures_count_loss_against_fan_out() {
        // 10 messages in rooms of 3: 20 deliveries expected, 18 received.
        let lat: Vec<u64> = (1..=18).map(|i| i * 10).collect();
        let run = Run::of(Protocol::Ws, 2.0, &outcome(&lat, 10, 3));
        assert_eq!((run.sent, run.received, run.lost), (10, 18, 2));
        assert!((run.loss_ratio() - 0.1).abs() < 1e-9);
        // Three significant digits: within 0.1 % of the recorded values.
        assert!(
            (run.latency_us.max - 180.0).abs() <= 0.2,
            "{:?}",
            run.latency_us
        );
        assert!(
            (run.latency_us.p50 - 90.0).abs() <= 0.1,
            "{:?}",
            run.latency_us
        );
        assert_eq!(run.relay_cpu_ns_per_message, Some(1234.0));
        // 50 KiB more with 4 streams idle.
        let memory = run.relay_memory_kib.expect("memory");
        assert_eq!((memory.before, memory.idle), (30_000, 30_050));
        assert_eq!(memory.per_stream, 12.5);
    }

    #[test]
    fn json_has_every_key_and_null_for_unknown_cpu() {
        let mut o = outcome(&[100, 200], 1, 3);
        o.server_cpu_ns_per_message = None;
        o.server_memory = None;
        let report = Report::new(Run::of(Protocol::Vors, 1.5, &o));
        let v: serde_json::Value = serde_json::from_str(&report.to_json()).expect("valid JSON");
        for key in [
            "protocol",
            "room_size",
            "seconds",
            "streams",
            "sent",
            "received",
            "lost",
            "corrupted",
            "relay_cpu_ns_per_message",
            "relay_memory_kib",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        for key in ["p50", "p90", "p99", "p999", "max"] {
            assert!(v["latency_us"][key].is_number(), "latency_us.{key}");
        }
        assert_eq!(v["protocol"], "vors");
        assert!(v["relay_cpu_ns_per_message"].is_null());
        assert!(v["relay_memory_kib"].is_null());
        assert!(v.get("baseline").is_none() && v.get("max_streams").is_none());
        assert!(v.get("same_relay").is_none() && v.get("cross_relay").is_none());
        assert!(!report.table().contains("relay received"));
    }

    #[test]
    fn spread_runs_report_both_sides_in_json_and_table() {
        let mut o = outcome(&[], 2, 3);
        o.tally.expect_via(2, 2);
        o.tally.delivered_via(0, 40_000, false);
        o.tally.delivered_via(0, 50_000, false);
        o.tally.delivered_via(0, 90_000, true);
        o.spread = true;
        let report = Report::new(Run::of(Protocol::Vors, 1.0, &o));
        let v: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
        assert_eq!(
            (v["received"].as_u64(), v["lost"].as_u64()),
            (Some(3), Some(1))
        );
        assert_eq!(v["same_relay"]["received"], 2);
        assert_eq!(v["same_relay"]["lost"], 0);
        assert_eq!(v["cross_relay"]["received"], 1);
        assert_eq!(v["cross_relay"]["lost"], 1);
        assert_eq!(v["cross_relay"]["latency_us"]["p50"], 90.0);
        let table = report.table();
        let row = |name: &str| {
            table
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name} row in\n{table}"))
                .split_whitespace()
                .last()
                .map(str::to_owned)
        };
        assert_eq!(row("cross-relay lost").as_deref(), Some("1"));
        assert_eq!(row("same-relay p50").as_deref(), Some("40"));
    }

    #[test]
    fn baseline_adds_a_column_a_json_object_and_ratios() {
        let relay = Run::of(Protocol::Ws, 1.0, &outcome(&[200, 200, 200], 3, 2));
        let base = Run::of(Protocol::Ws, 1.0, &outcome(&[100, 100, 100], 3, 2));
        let report = Report::new(relay).with_baseline(base);
        let v: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
        assert_eq!(v["baseline"]["latency_us"]["p50"], 100.0);
        assert_eq!(v["ratio"]["p50"], 2.0);
        assert_eq!(v["ratio"]["relay_cpu_ns_per_message"], 1.0);
        let table = report.table();
        assert!(table.contains("baseline"), "{table}");
        let p50 = table
            .lines()
            .find(|l| l.starts_with("latency p50"))
            .expect("row");
        assert!(p50.ends_with("2.00"), "{p50}");
    }

    fn step(streams: u64, ok: bool) -> RampStep {
        RampStep {
            streams,
            p99_us: 100.0,
            loss: 0.0,
            ok,
        }
    }

    #[test]
    fn a_side_by_side_ramp_reports_both_maxima_and_their_ratio() {
        let mut o = outcome(&[200, 200], 2, 2);
        o.streams = 900;
        let mut report = Report::new(Run::of(Protocol::Vors, 5.0, &o));
        report.max_streams = Some(900);
        report.ramp = vec![step(900, true), step(1000, false)];
        o.streams = 1000;
        let base = Run::of(Protocol::Vors, 5.0, &o);
        let steps = vec![step(900, true), step(1000, true), step(1100, false)];
        let report = report.with_baseline_ramp(base, 1000, steps);

        let v: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
        assert_eq!(v["max_streams"], 900);
        assert_eq!(v["baseline_max_streams"], 1000);
        assert_eq!(v["baseline"]["streams"], 1000);
        assert_eq!(v["ratio"]["max_streams"], 0.9);
        assert_eq!(v["ratio"]["p50"], 1.0);
        let streams = |key: &str| -> Vec<u64> {
            v[key]
                .as_array()
                .expect(key)
                .iter()
                .map(|s| s["streams"].as_u64().expect("streams"))
                .collect()
        };
        assert_eq!(streams("ramp"), vec![900, 1000]);
        assert_eq!(streams("baseline_ramp"), vec![900, 1000, 1100]);
        assert_eq!(v["baseline_ramp"][2]["ok"], false);

        let table = report.table();
        assert!(
            table
                .lines()
                .next()
                .expect("title")
                .ends_with("(baseline: 1000 streams)"),
            "{table}"
        );
        let row = table
            .lines()
            .find(|l| l.starts_with("max streams within SLO"))
            .expect("row");
        let cells: Vec<&str> = row["max streams within SLO".len()..]
            .split_whitespace()
            .collect();
        assert_eq!(cells, vec!["900", "1000", "0.900"], "{table}");
    }

    #[test]
    fn a_baseline_that_never_met_the_slo_makes_the_ratio_null() {
        let o = outcome(&[200, 200], 2, 2);
        let mut report = Report::new(Run::of(Protocol::Ws, 1.0, &o));
        report.max_streams = Some(4);
        let report =
            report.with_baseline_ramp(Run::of(Protocol::Ws, 1.0, &o), 0, vec![step(4, false)]);
        let v: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
        assert_eq!(v["baseline_max_streams"], 0);
        assert!(
            v["ratio"].get("max_streams").is_some_and(|q| q.is_null()),
            "{v}"
        );
        let table = report.table();
        let row = table
            .lines()
            .find(|l| l.starts_with("max streams within SLO"))
            .expect("row");
        assert!(row.ends_with("n/a"), "{row}");

        // Without a ramp there is no ratio of maxima at all.
        let plain = Report::new(Run::of(Protocol::Ws, 1.0, &o)).with_baseline(Run::of(
            Protocol::Ws,
            1.0,
            &o,
        ));
        let v: serde_json::Value = serde_json::from_str(&plain.to_json()).expect("JSON");
        assert!(v["ratio"].get("max_streams").is_none(), "{v}");
        assert!(v.get("baseline_max_streams").is_none() && v.get("baseline_ramp").is_none());
    }

    #[test]
    fn progress_counts_loss_only_for_messages_a_second_old() {
        let mut p = Progress::new(2);
        let mut interval = new_histogram();
        interval.record(50_000).expect("record");
        p.add(&Sample {
            sent: 100,
            received: 90,
            corrupted: 0,
            interval,
        });
        let first = p.line(1.0);
        assert!(first.contains("lost 0"), "{first}");
        assert!(first.contains("p99 50.0 µs"), "{first}");
        p.add(&Sample {
            sent: 100,
            received: 105,
            corrupted: 1,
            interval: new_histogram(),
        });
        let second = p.line(2.0);
        assert!(
            second.contains("received 195") && second.contains("lost 0"),
            "{second}"
        );
        p.add(&Sample {
            sent: 0,
            received: 0,
            corrupted: 0,
            interval: new_histogram(),
        });
        let third = p.line(3.0);
        assert!(third.contains("lost 5"), "{third}");
        assert!(third.contains("p99 - µs"), "{third}");
    }
}
