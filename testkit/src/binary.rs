//! The workspace's programs as tests run them: `moose-relay`, `moose-call` and `moose-bench`,
//! built by cargo when a test process first asks for one.
//!
//! The relay's tests run the clients and the bench's tests run the relay, programs of another
//! package, which cargo neither builds for them nor names in `CARGO_BIN_EXE_*`. So the kit asks
//! cargo for all three in one locked build, [`BUILD`], in the test's own profile, and takes
//! each program's path from cargo's report of what it built:
//! - up to date, the build is a fingerprint check: a fraction of a second, once per process;
//! - test processes that ask at the same time queue on cargo's lock on the target directory,
//!   and each finds what the first one built;
//! - the first build after a change compiles the programs, and the first one in a fresh target
//!   directory also compiles part of their dependencies once more: cargo resolves dependency
//!   features for the packages a command names, and the test build named the whole workspace
//!   with its dev-dependencies. A script can build the same set beforehand with [`BUILD`].
//!
//! The build has the features of the running test's own build of moose-bench (the kit links
//! moose-bench): with `--features moose-bench/sound-devices` on the test run, [`BUILD`] gets
//! the same flag ([`feature_flags`]), so the programs are built once, with the sound devices,
//! and not a second time without (which would also swap the file under a running test).
//!
//! Tests take these three programs from here only, never from `CARGO_BIN_EXE_*` as well: the
//! two builds put different files at `target/<profile>/<program>`, and a test starting the
//! program at the instant cargo swaps them would find no file. `moose-baseline`, run by the
//! bench's tests alone, is the bench's own `CARGO_BIN_EXE_moose-baseline`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use crate::workspace;

/// The build the kit runs, with the running test's profile flag if it has one (`--release`,
/// `--profile NAME`): every program tests run, from one locked resolution of their two
/// packages.
pub const BUILD: [&str; 12] = [
    "build",
    "--locked",
    "-p",
    "moose-relay",
    "-p",
    "moose-bench",
    "--bin",
    "moose-relay",
    "--bin",
    "moose-call",
    "--bin",
    "moose-bench",
];

/// The relay daemon.
pub fn moose_relay() -> &'static Path {
    program("moose-relay")
}

/// The command-line VoRS client.
pub fn moose_call() -> &'static Path {
    program("moose-call")
}

/// The load generator.
pub fn moose_bench() -> &'static Path {
    program("moose-bench")
}

/// The built program `name`, one of those [`BUILD`] names.
fn program(name: &str) -> &'static Path {
    static BUILT: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();
    BUILT
        .get_or_init(build)
        .iter()
        .find_map(|(built, path)| (built == name).then_some(path.as_path()))
        .unwrap_or_else(|| panic!("cargo reported no executable {name}"))
}

/// Runs [`BUILD`] and returns each program's name and executable path, as cargo reports them.
fn build() -> Vec<(String, PathBuf)> {
    // The cargo running these tests (it sets CARGO for them), else the one that built the kit.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from(env!("CARGO")));
    let mut command = Command::new(&cargo);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_for_this_test) {
            command.env_remove(&name);
        }
    }
    let output = command
        .arg("--quiet")
        .args(BUILD)
        .args(feature_flags())
        .args(profile_flag())
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(workspace::root().join("Cargo.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Compiler errors, rendered, go where the test's output goes.
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", cargo.to_string_lossy()));
    assert!(
        output.status.success(),
        "`cargo {} {}` failed ({})",
        BUILD.join(" "),
        feature_flags().join(" "),
        output.status
    );
    let programs: Vec<(String, PathBuf)> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter_map(|artifact| {
            let name = artifact["target"]["name"].as_str()?.to_owned();
            let path = PathBuf::from(artifact["executable"].as_str()?);
            Some((name, path))
        })
        .collect();
    for (name, path) in &programs {
        assert!(
            path.is_file(),
            "cargo built {name} at {}, which is missing",
            path.display()
        );
    }
    programs
}

/// Whether `name` is a variable cargo or nextest set for this test process (its package's
/// directory and metadata, its binaries' paths), which a build script may watch: ring's says
/// `rerun-if-env-changed=CARGO_MANIFEST_DIR`. Passed on to the kit's build they would make it
/// differ from a build run from a shell (`scripts/test.sh` runs [`BUILD`] beforehand), and from
/// each package's tests: every switch rebuilt ring and all that depends on it, minutes that the
/// first test of a package then waited.
fn set_for_this_test(name: &str) -> bool {
    const NAMES: [&str; 7] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "OUT_DIR",
    ];
    const PREFIXES: [&str; 3] = ["CARGO_PKG_", "CARGO_BIN_EXE_", "NEXTEST"];
    NAMES.contains(&name) || PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

/// The features of moose-bench in this test's build, as cargo flags for [`BUILD`]; a script
/// that builds the programs beforehand passes the same.
pub fn feature_flags() -> Vec<&'static str> {
    if moose_bench::vors_client::live::SOUND_DEVICES {
        vec!["--features", "moose-bench/sound-devices"]
    } else {
        Vec::new()
    }
}

/// The cargo flag for the profile this test was built with, read from where its executable is
/// (`target/<profile directory>/deps/`): none for `debug` (the dev and test profiles).
fn profile_flag() -> Vec<String> {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .filter(|deps| deps.ends_with("deps"))
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .and_then(|name| name.to_str());
    match profile_dir {
        None | Some("debug") => Vec::new(),
        Some("release") => vec!["--release".to_owned()],
        Some(custom) => vec!["--profile".to_owned(), custom.to_owned()],
    }
}
