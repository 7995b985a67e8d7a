//! The Prometheus text exposition of the relay's counters. Every metric family is declared
//! once, as data ([`FAMILIES`]: name, help, type, and how each core's value is read), and one
//! loop writes them all. docs/metrics.md documents each family; a test below holds the two to
//! the same names, types and labels.

mod families;
mod process;

use std::fmt::Write as _;
use std::sync::Arc;

pub(crate) use families::FAMILIES;

use crate::cluster::stats::ClusterStats;
use crate::stats::{CoreStats, HistogramSnapshot, LATENCY_BOUNDS};

/// One metric family: the `# HELP` and `# TYPE` lines and the samples under them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Family {
    /// `moose_...`, in base units; a counter's ends in `_total`.
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Type,
    pub samples: Samples,
}

/// The metric type Prometheus is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Type {
    Counter,
    Gauge,
    Histogram,
}

/// How a per-core value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Count,
    /// Stored in nanoseconds, shown in seconds.
    Nanos,
}

/// Where a family's samples come from, and how the cores' values make them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Samples {
    /// One sample about the process as a whole, not read from the cores.
    Process(fn(&Scrape<'_>) -> u64),
    /// One sample: the sum over cores.
    Total(fn(&CoreStats) -> u64),
    /// One sample per core, labelled `core="N"`.
    PerCore(fn(&CoreStats) -> u64, Unit),
    /// One sample per value of the label (`reason`), each summed over cores. `read` gives
    /// every value, in the same order on every core.
    ByLabel {
        label: &'static str,
        read: fn(&CoreStats) -> Vec<(&'static str, u64)>,
    },
    /// One latency histogram (buckets [`LATENCY_BOUNDS`]) per value of the label
    /// (`protocol`), summed over cores.
    Histograms {
        label: &'static str,
        read: fn(&CoreStats) -> Vec<(&'static str, HistogramSnapshot)>,
    },
}

/// What one scrape reads: every core's counters, the process's drain state and the cluster
/// threads' figures.
#[derive(Debug)]
pub(crate) struct Scrape<'a> {
    pub cores: &'a [Arc<CoreStats>],
    pub draining: bool,
    pub cluster: &'a ClusterStats,
}

/// The cluster figures of a relay without cluster threads: standalone, every count zero.
static STANDALONE: ClusterStats = ClusterStats::new();

/// The exposition of every family, in the order of [`FAMILIES`]; `cluster` is the cluster
/// threads' figures (`None`: standalone).
pub(crate) fn render(
    cores: &[Arc<CoreStats>],
    draining: bool,
    cluster: Option<&ClusterStats>,
) -> String {
    render_scrape(&Scrape {
        cores,
        draining,
        cluster: cluster.unwrap_or(&STANDALONE),
    })
}

fn render_scrape(scrape: &Scrape<'_>) -> String {
    let mut out = String::with_capacity(8192);
    for family in FAMILIES {
        family.write(scrape, &mut out);
    }
    out
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
        }
    }
}

impl Unit {
    fn show(self, value: u64) -> String {
        match self {
            Unit::Count => value.to_string(),
            Unit::Nanos => seconds(value),
        }
    }
}

impl Family {
    fn write(&self, scrape: &Scrape<'_>, out: &mut String) {
        let (name, help, kind) = (self.name, self.help, self.kind.name());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        let cores = scrape.cores;
        match self.samples {
            Samples::Process(read) => {
                let _ = writeln!(out, "{name} {}", read(scrape));
            }
            Samples::Total(read) => {
                let total: u64 = cores.iter().map(|c| read(c)).sum();
                let _ = writeln!(out, "{name} {total}");
            }
            Samples::PerCore(read, unit) => {
                for (core, c) in cores.iter().enumerate() {
                    let _ = writeln!(out, "{name}{{core=\"{core}\"}} {}", unit.show(read(c)));
                }
            }
            Samples::ByLabel { label, read } => {
                for (value, total) in sum_by_label(cores, read, |sum, n| *sum += n) {
                    let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {total}");
                }
            }
            Samples::Histograms { label, read } => {
                for (value, sum) in sum_by_label(cores, read, HistogramSnapshot::add) {
                    write_histogram(out, name, &format!("{label}=\"{value}\""), &sum);
                }
            }
        }
    }
}

/// Each label value's reading, summed over cores (no samples without cores; a relay has at
/// least one).
fn sum_by_label<T>(
    cores: &[Arc<CoreStats>],
    read: fn(&CoreStats) -> Vec<(&'static str, T)>,
    add: fn(&mut T, &T),
) -> Vec<(&'static str, T)> {
    let mut each = cores.iter().map(|c| read(c));
    let mut sums = each.next().unwrap_or_default();
    for readings in each {
        for ((_, sum), (_, reading)) in sums.iter_mut().zip(&readings) {
            add(sum, reading);
        }
    }
    sums
}

/// The cumulative buckets, `_sum` (seconds) and `_count` of one histogram whose samples carry
/// `labels` (`protocol="ws"`).
fn write_histogram(out: &mut String, name: &str, labels: &str, histogram: &HistogramSnapshot) {
    let mut cumulative = 0;
    for (in_bucket, (_, le)) in histogram.buckets.iter().zip(LATENCY_BOUNDS) {
        cumulative += in_bucket;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
    }
    let count = histogram.count();
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels},le=\"+Inf\"}} {count}\n\
         {name}_sum{{{labels}}} {}\n\
         {name}_count{{{labels}}} {count}",
        seconds(histogram.sum_nanos)
    );
}

/// Nanoseconds as decimal seconds, exactly (`1500` is `0.0000015`): no float rounding noise.
fn seconds(nanos: u64) -> String {
    let text = format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    use crate::limits::ConnectionRefusal;
    use crate::limits::handshakes::HandshakeRefusal;
    use crate::stats::Drop;

    const DOCS: &str = include_str!("../../../docs/metrics.md");

    fn fresh_cores(n: usize) -> Vec<Arc<CoreStats>> {
        (0..n).map(|_| Arc::new(CoreStats::default())).collect()
    }

    /// Type and label name (empty when none) of every family in `text`, by name; every sample
    /// must come under its family's `# TYPE` line.
    fn families_in(text: &str) -> BTreeMap<String, (String, String)> {
        let mut families = BTreeMap::new();
        let mut current: Option<String> = None;
        for line in text.lines() {
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declared.split_once(' ').expect("name and type");
                let fresh = families.insert(name.to_owned(), (kind.to_owned(), String::new()));
                assert!(fresh.is_none(), "{name} declared twice");
                current = Some(name.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name = current.as_deref().expect("a sample under a family");
            assert!(line.starts_with(name), "{line} is not under {name}");
            let labels = line
                .split_once('{')
                .map(|(_, rest)| rest.split_once('}').expect("labels close").0)
                .unwrap_or_default();
            let keys: BTreeSet<&str> = labels
                .split(',')
                .filter_map(|pair| pair.split_once('=').map(|(key, _)| key))
                .filter(|key| *key != "le")
                .collect();
            assert!(keys.len() <= 1, "{line}: one label at most");
            let label = keys.into_iter().next().unwrap_or_default();
            let family_label = &mut families.get_mut(name).expect("declared").1;
            if family_label.is_empty() {
                *family_label = label.to_owned();
            }
            assert_eq!(
                family_label, label,
                "{line}: the family's samples share a label"
            );
        }
        families
    }

    /// Type and label name of every row of the metric tables in docs/metrics.md (rows whose
    /// first cell is a `moose_` name: `| name | type | labels | meaning |`), by name.
    fn documented() -> BTreeMap<String, (String, String)> {
        let mut rows = BTreeMap::new();
        for line in DOCS.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let Some(name) = cells.get(1).and_then(|cell| cell.strip_prefix("`moose_")) else {
                continue;
            };
            let name = format!("moose_{}", name.trim_end_matches('`'));
            let kind = cells.get(2).expect("a type column").to_string();
            let label = cells.get(3).expect("a labels column").trim_matches('`');
            let fresh = rows.insert(name.clone(), (kind, label.to_owned()));
            assert!(fresh.is_none(), "{name} documented twice");
        }
        rows
    }

    #[test]
    fn every_exported_metric_is_documented_and_every_documented_one_exported() {
        let exported = families_in(&render(&fresh_cores(2), false, None));
        let documented = documented();
        let undocumented: Vec<&String> = exported
            .keys()
            .filter(|name| !documented.contains_key(*name))
            .collect();
        let unexported: Vec<&String> = documented
            .keys()
            .filter(|name| !exported.contains_key(*name))
            .collect();
        assert!(
            undocumented.is_empty(),
            "exported, not in docs/metrics.md: {undocumented:?}"
        );
        assert!(
            unexported.is_empty(),
            "in docs/metrics.md, not exported: {unexported:?}"
        );
        assert_eq!(exported, documented, "(type, label) of each family");
        assert_eq!(exported.len(), FAMILIES.len());
    }

    #[test]
    fn every_label_value_is_documented() {
        for family in FAMILIES {
            let values: Vec<&str> = match family.samples {
                Samples::ByLabel { read, .. } => {
                    read(&CoreStats::default()).iter().map(|s| s.0).collect()
                }
                Samples::Histograms { read, .. } => {
                    read(&CoreStats::default()).iter().map(|s| s.0).collect()
                }
                _ => continue,
            };
            for value in values {
                assert!(
                    DOCS.contains(&format!("`{value}`")),
                    "{} value `{value}` is not in docs/metrics.md",
                    family.name
                );
            }
        }
    }

    #[test]
    fn names_follow_the_conventions() {
        for family in FAMILIES {
            let name = family.name;
            assert!(name.starts_with("moose_"), "{name}");
            assert_eq!(
                family.kind == Type::Counter,
                name.ends_with("_total"),
                "{name}: counters, and only counters, end in _total"
            );
            let in_seconds = match family.samples {
                Samples::PerCore(_, unit) => unit == Unit::Nanos,
                Samples::Histograms { .. } => true,
                _ => false,
            };
            assert_eq!(
                in_seconds,
                name.contains("_seconds"),
                "{name}: shown in seconds, named in seconds"
            );
            assert_eq!(
                family.kind == Type::Histogram,
                matches!(family.samples, Samples::Histograms { .. }),
                "{name}"
            );
        }
    }

    #[test]
    fn cluster_figures_come_from_the_cluster_threads_and_every_core() {
        use crate::cluster::stats::{ClusterState, LinkDrop};
        let cores = fresh_cores(2);
        cores[0].link_dropped(LinkDrop::BadTag);
        cores[1].link_dropped(LinkDrop::BadTag);
        cores[1].link_datagrams_out.add(5);
        let standalone = render(&cores, false, None);
        assert!(
            standalone.contains("\nmoose_cluster_state 0\n"),
            "{standalone}"
        );
        let cluster = ClusterStats::new();
        cluster.set_state(ClusterState::Down);
        cluster.set_relays(3);
        cluster.redis_error();
        let text = render_scrape(&Scrape {
            cores: &cores,
            draining: false,
            cluster: &cluster,
        });
        assert!(text.contains("\nmoose_cluster_state 2\n"), "{text}");
        assert!(text.contains("\nmoose_cluster_relays 3\n"));
        assert!(text.contains("\nmoose_cluster_redis_errors_total 1\n"));
        assert!(text.contains("moose_cluster_link_dropped_total{reason=\"bad_tag\"} 2\n"));
        assert!(text.contains("\nmoose_cluster_link_datagrams_out_total 5\n"));
    }

    #[test]
    fn seconds_are_exact_decimals() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(1_500), "0.0000015");
        assert_eq!(seconds(3_003_000), "0.003003");
        assert_eq!(seconds(2_000_000_000), "2");
        assert_eq!(seconds(12_345_678_901), "12.345678901");
    }

    #[test]
    fn metrics_sum_cores_and_label_reasons() {
        let cores = fresh_cores(2);
        cores[0].ws_messages_in.add(3);
        cores[1].ws_messages_in.add(4);
        cores[1].dropped(Drop::SlowReceiver);
        cores[1].lines.set(5);
        cores[0]
            .ws_forward_latency
            .record(std::time::Duration::from_micros(3));
        cores[1]
            .ws_forward_latency
            .record(std::time::Duration::from_millis(3));
        let text = render(&cores, false, None);
        assert!(text.contains("\nmoose_ws_messages_in_total 7\n"), "{text}");
        assert!(text.contains("\nmoose_draining 0\n"), "{text}");
        let bucket = |le: &str| {
            format!("moose_forward_latency_seconds_bucket{{protocol=\"ws\",le=\"{le}\"}} ")
        };
        assert!(
            text.contains(&format!("{}0\n", bucket("0.000002"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{}1\n", bucket("0.000005"))),
            "{text}"
        );
        assert!(text.contains(&format!("{}2\n", bucket("0.005"))), "{text}");
        assert!(text.contains(&format!("{}2\n", bucket("+Inf"))), "{text}");
        assert!(text.contains("moose_forward_latency_seconds_count{protocol=\"ws\"} 2\n"));
        assert!(text.contains("moose_forward_latency_seconds_sum{protocol=\"ws\"} 0.003003\n"));
        assert!(text.contains("moose_ws_dropped_total{reason=\"slow_receiver\"} 1\n"));
        assert!(text.contains("moose_lines{core=\"1\"} 5\n"));
        cores[0].connection_refused(ConnectionRefusal::NoDescriptors);
        cores[1].connection_refused(ConnectionRefusal::NoDescriptors);
        cores[1].handshake_refused(HandshakeRefusal::Rate);
        let text = render(&cores, false, None);
        assert!(
            text.contains("moose_connections_refused_total{reason=\"no_descriptors\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("moose_connections_refused_total{reason=\"per_address\"} 0\n"));
        assert!(text.contains("moose_vors_handshakes_refused_total{reason=\"rate\"} 1\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("moose_"), "{line}");
        }
    }
}
