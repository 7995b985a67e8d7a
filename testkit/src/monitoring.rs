//! The monitoring kit of deploy/monitoring/ as its test reads it: where promtool and the kit's
//! files are, and which metric names a PromQL expression selects, so that every name the rules
//! and the dashboard read can be held against what a live relay exports.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::workspace::deploy_dir;

/// deploy/monitoring/.
pub fn monitoring_dir() -> PathBuf {
    deploy_dir().join("monitoring")
}

/// Debian's promtool (package `prometheus`).
pub fn promtool_binary() -> PathBuf {
    let path = PathBuf::from("/usr/bin/promtool");
    assert!(
        path.exists(),
        "promtool is not installed: run scripts/install-prometheus.sh (as root), which installs \
         Debian's prometheus"
    );
    path
}

/// Grouping clauses: the parenthesised list after them holds label names, not expressions.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// PromQL's other words that are not metric names: binary operators, modifiers, and the
/// aggregation operators, which may stand before a grouping clause instead of before their `(`.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// Every metric name `expr` selects: `moose_...` and `up` as Prometheus stores them, and the
/// names of recording rules (`level:metric:operation`). Function and aggregation names (a
/// word followed by `(`), keywords, label names (in `{...}` and grouping lists), strings,
/// numbers and ranges (`[5m]`, Grafana's `[$__rate_interval]`) are not.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let text = blank_out(expr);
    let chars: Vec<char> = text.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut after_offset = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            // A number or a duration (`1e6`, `0.001`, `5m` after `offset`).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            after_offset = false;
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_' || c == ':') {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let lower = word.to_ascii_lowercase();
        let mut next = i;
        while next < chars.len() && chars[next].is_whitespace() {
            next += 1;
        }
        let called = chars.get(next) == Some(&'(');
        if LABEL_LISTS.contains(&lower.as_str()) && called {
            // Skip the label list.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
        } else if after_offset {
            after_offset = false;
        } else if lower == "offset" {
            after_offset = true;
        } else if !called
            && !KEYWORDS.contains(&lower.as_str())
            && !LABEL_LISTS.contains(&lower.as_str())
        {
            names.insert(word);
        }
    }
    names
}

/// `expr` with its strings, label matchers (`{...}`) and ranges (`[...]`) replaced by spaces:
/// what is left names metrics, functions and keywords only.
fn blank_out(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut closing: Option<char> = None;
    for c in expr.chars() {
        match closing {
            Some(end) if c == end => {
                closing = None;
                out.push(' ');
            }
            Some(_) => out.push(' '),
            None => {
                closing = match c {
                    '"' | '\'' | '`' => Some(c),
                    '{' => Some('}'),
                    '[' => Some(']'),
                    _ => None,
                };
                out.push(if closing.is_some() { ' ' } else { c });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        metric_names(expr).into_iter().collect()
    }

    #[test]
    fn selectors_are_names_and_functions_labels_and_numbers_are_not() {
        assert_eq!(
            names(
                "sum by (job, instance) (rate(moose_vors_dropped_total{reason=~\"bad_tag|x\"}[5m])) \
                 / on (job, instance) group_left(core) instance:moose_connections:sum > 0.8 \
                 and on (job) up{job=\"moose-relay\"} == 0 unless absent(nope_metric) \
                 or histogram_quantile(0.99, moose_forward_latency_seconds_bucket offset 5m) * 1e6"
            ),
            [
                "instance:moose_connections:sum",
                "moose_forward_latency_seconds_bucket",
                "moose_vors_dropped_total",
                "nope_metric",
                "up",
            ]
        );
    }

    #[test]
    fn grafana_variables_and_aggregations_after_the_body_are_no_names() {
        assert_eq!(
            names(
                "sum(rate(moose_ws_bytes_out_total{instance=~\"$instance\"}[$__rate_interval])) \
                 without (core) * 8"
            ),
            ["moose_ws_bytes_out_total"]
        );
        assert_eq!(names("round(x:y:z * 100) BY (core)"), ["x:y:z"]);
    }
}
