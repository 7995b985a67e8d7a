//! YAML files of the repository (deploy/kubernetes/, deploy/monitoring/) read as JSON values,
//! through Debian's PyYAML (`python3-yaml`, installed by scripts/install-nginx.sh and
//! scripts/install-prometheus.sh): a YAML parser independent of anything the tests check.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Every YAML document of `path`, as JSON values; panics if the file does not parse.
pub fn documents(path: &Path) -> Vec<Value> {
    let script = "import json, sys, yaml\n\
                  json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)";
    let output_text = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let out = ["python3", "/usr/bin/python3"]
        .iter()
        .filter_map(|py| {
            Command::new(py)
                .args(["-c", script])
                .arg(path)
                .output()
                .ok()
        })
        .find(|out| out.status.success() || !output_text(out).contains("No module named 'yaml'"))
        .expect(
            "python3 with PyYAML is needed: run scripts/install-nginx.sh or \
             scripts/install-prometheus.sh (both install python3-yaml)",
        );
    assert!(
        out.status.success(),
        "{} does not parse:\n{}",
        path.display(),
        output_text(&out)
    );
    match serde_json::from_slice(&out.stdout).expect("PyYAML's JSON") {
        Value::Array(docs) => docs,
        other => panic!("expected a list of documents, got {other}"),
    }
}
