//! Settings from a TOML file, the environment and flags, in that rising order of precedence,
//! as `moose-relay check-config` reports them; secrets redacted; bad settings exit 78 naming
//! the setting.

use std::path::PathBuf;
use std::process::Output;

use moose_testkit::relay::{Relay, run_relay};
use moose_testkit::ws::{WsClient, try_connect};

const EXIT_CONFIG: i32 = 78;

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moose-config-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The line of `key` in check-config's output.
fn setting<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in\n{stdout}"))
}

#[test]
fn flags_beat_environment_beat_file_beat_defaults() {
    let file = temp_file(
        "precedence.toml",
        "max_peers = 5\nqueue-ms = 150\nmax_members = 10\ndrain_seconds = 7\n",
    );
    let path = file.to_str().expect("utf-8");
    let output = run_relay(
        &["check-config", "--config", path, "--max-members", "14"],
        &[("MOOSE_QUEUE_MS", "120"), ("MOOSE_MAX_MEMBERS", "12")],
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        setting(&stdout, "max_peers"),
        format!("max_peers = 5  # config file {path}")
    );
    assert!(
        setting(&stdout, "queue_ms").starts_with("queue_ms = 120  # environment MOOSE_QUEUE_MS"),
        "{stdout}"
    );
    assert_eq!(
        setting(&stdout, "max_members"),
        "max_members = 14  # command line"
    );
    assert_eq!(
        setting(&stdout, "drain_seconds"),
        format!("drain_seconds = 7  # config file {path}")
    );
    assert_eq!(
        setting(&stdout, "auth_failures_per_minute"),
        "auth_failures_per_minute = 10  # default"
    );
    // MOOSE_CONFIG names the file as --config does.
    let output = run_relay(&["check-config"], &[("MOOSE_CONFIG", path)]);
    let (stdout, _) = text(&output);
    assert!(setting(&stdout, "max_peers").starts_with("max_peers = 5  # config file"));
}

#[test]
fn check_config_never_shows_a_key() {
    let env_keys = ["env-key-one-0123456789", "env-key-two-0123456789"];
    let file_key = "file-key-three-0123456789";
    let key_file = temp_file("keys.txt", &format!("# a comment\n{file_key}\n"));
    let output = run_relay(
        &[
            "check-config",
            "--apikey-file",
            key_file.to_str().expect("utf-8"),
        ],
        &[("APIKEY", &env_keys.join(","))],
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for key in env_keys.iter().chain([&file_key]) {
        assert!(
            !stdout.contains(key) && !stderr.contains(key),
            "{key} shown"
        );
    }
    assert_eq!(
        setting(&stdout, "apikey"),
        "apikey = \"<redacted>\"  # environment APIKEY; 2 key(s)"
    );
    assert!(setting(&stdout, "open").contains("3 apikey(s) in all, <redacted>"));
    // A bad key is named as a setting, never shown.
    let output = run_relay(&["check-config"], &[("APIKEY", "short-secret")]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG));
    assert!(
        stderr.contains("invalid setting apikey = <redacted>"),
        "{stderr}"
    );
    assert!(!stdout.contains("short-secret") && !stderr.contains("short-secret"));
}

#[test]
fn bad_values_exit_78_naming_the_setting() {
    // (flags, environment, what stderr must name)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 5] = [
        (&["--max-peers", "1"], &[], "invalid setting max_peers = 1"),
        (
            &[],
            &[("MOOSE_MAX_PEERS", "1")],
            "environment MOOSE_MAX_PEERS",
        ),
        (&["--cores", "256"], &[], "invalid setting cores = 256"),
        (&["--listen", "nowhere"], &[], "--listen"),
        (&["--log-format", "xml"], &[], "--log-format"),
    ];
    for (args, envs, want) in cases {
        let mut all = vec!["check-config"];
        all.extend_from_slice(args);
        let output = run_relay(&all, envs);
        let (_, stderr) = text(&output);
        assert_eq!(
            output.status.code(),
            Some(EXIT_CONFIG),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains(want), "{args:?}: want {want:?} in {stderr}");
    }
    let file = temp_file("zero.toml", "max_peers = 0\n");
    let output = run_relay(
        &["check-config", "--config", file.to_str().expect("utf-8")],
        &[],
    );
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG));
    assert!(
        stderr.contains("invalid setting max_peers = 0 (from config file"),
        "{stderr}"
    );
    // A VoRS key file that holds no key; its contents are never shown.
    let key_file = temp_file("bad-vors.key", "not-a-key-but-secret-looking\n");
    let output = run_relay(
        &[
            "check-config",
            "--vors-key",
            key_file.to_str().expect("utf-8"),
        ],
        &[],
    );
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(stderr.contains("--vors-key"), "{stderr}");
    assert!(!stdout.contains("secret-looking") && !stderr.contains("secret-looking"));
    // The relay itself refuses the same way, before it binds anything.
    let output = run_relay(&["--max-peers", "1", "--listen", "127.0.0.1:0"], &[]);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG));
}

#[test]
fn an_unknown_key_in_the_file_is_named() {
    let file = temp_file("unknown.toml", "max_peers = 3\nmax_peer = 4\n");
    let output = run_relay(
        &["check-config", "--config", file.to_str().expect("utf-8")],
        &[],
    );
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(stderr.contains("unknown setting `max_peer`"), "{stderr}");
}

#[test]
fn the_file_configures_a_running_relay() {
    let key = "config-file-line-key-0123456789";
    let file = temp_file(
        "running.toml",
        &format!("max-peers = 2\napikey = \"{key}\"\n"),
    );
    let relay = Relay::start(&["--config", file.to_str().expect("utf-8")], &[]);
    let _a = WsClient::connect(relay.http, key);
    let _b = WsClient::connect(relay.http, key);
    let third = try_connect(relay.http, &format!("apikey={key}"), &[])
        .expect_err("max_peers = 2 from the file");
    assert_eq!(third.status, 503);
}
