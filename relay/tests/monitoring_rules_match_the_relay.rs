//! The monitoring kit of deploy/monitoring/ works against the relay as it is: promtool accepts
//! the recording and alerting rules and passes their unit tests, and every metric name that any
//! expression of the rules or the Grafana dashboard reads is one a live relay exports on
//! `/metrics` (or `up`, which Prometheus itself records per target, or a recording rule of the
//! kit). A renamed or removed metric fails here instead of leaving an alert that never fires.
//!
//! The relay is a standalone one: it exports the `moose_cluster_*` families too, at 0
//! (docs/metrics.md, "Cluster"), so the cluster alerts are checked against the same scrape.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use moose_testkit::monitoring::{metric_names, monitoring_dir, promtool_binary};
use moose_testkit::relay::Relay;
use moose_testkit::yaml;
use serde_json::Value;

const RULES: &str = "moose-relay-rules.yml";
const RULE_TESTS: &str = "moose-relay-rules.test.yml";
const DASHBOARD: &str = "moose-relay-dashboard.json";

/// Series Prometheus records itself for every target, not read from `/metrics`.
const PROMETHEUS_OWN: &[&str] = &["up"];

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn promtool(dir: &Path, args: &[&str]) -> Output {
    Command::new(promtool_binary())
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run promtool")
}

#[test]
fn promtool_accepts_the_rules_and_passes_their_unit_tests() {
    let dir = monitoring_dir();
    let check = promtool(&dir, &["check", "rules", RULES]);
    assert!(
        check.status.success(),
        "promtool check rules:\n{}",
        text(&check)
    );
    let tests = promtool(&dir, &["test", "rules", RULE_TESTS]);
    assert!(
        tests.status.success(),
        "promtool test rules:\n{}",
        text(&tests)
    );
    // Every alert has at least one case in the unit tests that expects it to fire.
    let alerts = rules(RULES, "alert");
    let tested = std::fs::read_to_string(dir.join(RULE_TESTS)).expect("read the rule tests");
    for (alert, _) in &alerts {
        assert!(
            tested.contains(&format!(
                "alertname: {alert}\n        exp_alerts:\n          - "
            )),
            "{RULE_TESTS} never expects {alert} to fire"
        );
    }
}

#[test]
fn every_metric_the_rules_and_the_dashboard_read_is_one_the_relay_exports() {
    let relay = Relay::start(&[], &[]);
    let exported = exported_names(&relay.metrics());
    assert!(
        exported.contains("moose_cluster_link_dropped_total")
            && exported.contains("moose_forward_latency_seconds_bucket"),
        "the scrape holds the cluster families and the histogram's series: {exported:?}"
    );

    let recorded: BTreeSet<String> = rules(RULES, "record")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let mut expressions: Vec<(String, String)> = rules(RULES, "record");
    expressions.extend(rules(RULES, "alert"));
    expressions.extend(dashboard_expressions());

    let mut read = BTreeSet::new();
    let mut unknown = Vec::new();
    for (source, expr) in &expressions {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{source}: no metric in {expr:?}");
        for name in names {
            let known = exported.contains(&name)
                || recorded.contains(&name)
                || PROMETHEUS_OWN.contains(&name.as_str());
            if !known {
                unknown.push(format!("{source}: {name}"));
            }
            read.insert(name);
        }
    }
    assert!(
        unknown.is_empty(),
        "names no live relay exports and no recording rule makes:\n{}",
        unknown.join("\n")
    );
    // The kit reads what an operator needs: each alert's family at least (a check that the
    // expressions were found at all, and that none of these was dropped from the kit).
    for family in [
        "up",
        "moose_draining",
        "moose_forward_latency_seconds_bucket",
        "moose_ws_dropped_total",
        "moose_vors_send_dropped_total",
        "moose_vors_dropped_total",
        "moose_vors_handshake_failures_total",
        "moose_process_max_fds",
        "moose_process_memory_limit_bytes",
        "moose_cluster_state",
        "moose_cluster_link_datagrams_in_total",
    ] {
        assert!(read.contains(family), "no rule or panel reads {family}");
    }
}

/// Every name `/metrics` shows: the families (`# TYPE`) and each sample's series name
/// (a histogram's `_bucket`, `_sum` and `_count`).
fn exported_names(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            names.insert(declared.split(' ').next().expect("a name").to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).expect("a sample has a value");
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// `(name, expr)` of every rule of a rules file whose kind is `record` or `alert`.
fn rules(file: &str, kind: &str) -> Vec<(String, String)> {
    let docs = yaml::documents(&monitoring_dir().join(file));
    let mut found = Vec::new();
    for group in docs[0]["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            if let Some(name) = rule[kind].as_str() {
                let expr = rule["expr"].as_str().expect("an expr");
                found.push((name.to_owned(), expr.to_owned()));
            }
        }
    }
    assert!(!found.is_empty(), "{file} has no {kind} rule");
    found
}

/// `(panel title, expr)` of every query of the dashboard: each panel target's `expr`, and the
/// metric of each `label_values(METRIC, LABEL)` variable, written as a selector.
fn dashboard_expressions() -> Vec<(String, String)> {
    let path = monitoring_dir().join(DASHBOARD);
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read the dashboard"))
            .expect("the dashboard is JSON");
    let mut found = Vec::new();
    for panel in json["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("a title");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a target's expr");
            found.push((format!("panel {title:?}"), expr.to_owned()));
        }
    }
    let panels = found.len();
    assert!(panels > 20, "the dashboard's queries: {found:?}");
    for variable in json["templating"]["list"].as_array().expect("templating") {
        let Some(query) = variable["definition"].as_str() else {
            continue;
        };
        let metric = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.split_once(','))
            .map(|(metric, _)| metric.trim())
            .unwrap_or_else(|| {
                panic!("a variable's query is label_values(METRIC, LABEL): {query}")
            });
        found.push((format!("variable {query:?}"), metric.to_owned()));
    }
    assert!(found.len() > panels, "the instance variable was read");
    found
}
