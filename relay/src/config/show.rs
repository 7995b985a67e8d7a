//! `moose-relay check-config`: the effective configuration, one `key = value  # source` line
//! per setting, in the file's own syntax. Secrets are never printed: apikeys appear as a count
//! and `<redacted>`; the VoRS key file is named by its path, never read out.

use std::fmt::Write as _;

use moose_proto::apikey::KeySet;

use super::{Config, REDACTED, Sources};
use crate::cli::RunArgs;

/// The check-config report for settings that validated into `config`.
pub fn render(args: &RunArgs, config: &Config, sources: &Sources) -> String {
    let mut out = String::from(
        "# moose-relay: effective configuration (check-config). Secrets are redacted.\n",
    );
    if let Some(path) = &args.config {
        let _ = writeln!(out, "# config file: {}", path.display());
    }
    let quoted = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut line = |key: &str, value: String, note: &str| {
        let source = sources.of(key);
        let _ = if note.is_empty() {
            writeln!(out, "{key} = {value}  # {source}")
        } else {
            writeln!(out, "{key} = {value}  # {source}; {note}")
        };
    };
    line("listen", quoted(&config.listen.to_string()), "");
    line("vors_listen", quoted(&config.vors_listen.to_string()), "");
    line("admin_listen", quoted(&config.admin_listen.to_string()), "");
    let cpus: Vec<String> = config.cpus.iter().map(ToString::to_string).collect();
    line(
        "cores",
        config.cores().to_string(),
        &format!("pinned to CPUs {}", cpus.join(",")),
    );
    line("max_peers", config.max_peers.to_string(), "");
    line("max_members", config.max_members.to_string(), "");
    line(
        "vors_udp_any_ip",
        config.vors_udp_any_ip.to_string(),
        if config.vors_udp_any_ip {
            "cookies from any IP: see docs/security.md"
        } else {
            "cookies only from the member's TCP peer IP"
        },
    );
    line(
        "vors_max_packet_rate",
        config.vors_max_packet_rate.to_string(),
        if config.vors_max_packet_rate == 0 {
            "no limit"
        } else {
            "per member per second"
        },
    );
    line("max_message", config.max_message.to_string(), "bytes");
    line(
        "queue_ms",
        args.queue_ms.to_string(),
        &format!("{} bytes per receiver", config.queue_bytes),
    );
    line(
        "line_rate_cap",
        config.line_rate_cap.to_string(),
        &if config.line_rate_cap == 0 {
            "no cap".to_owned()
        } else {
            format!(
                "{} bytes/s per line peer",
                u64::from(config.line_rate_cap) * 1000 * super::PCM_BYTES_PER_MS as u64
            )
        },
    );
    line(
        "chat_per_minute",
        config.chat_per_minute.to_string(),
        if config.chat_per_minute == 0 {
            "no limit"
        } else {
            "per VoRS member"
        },
    );
    line(
        "write_stall_timeout",
        config.write_stall.as_secs().to_string(),
        "seconds",
    );
    line(
        "auth_failures_per_minute",
        config.auth_failures_per_minute.to_string(),
        "",
    );
    let or_unlimited = |n: usize| if n == 0 { "no limit" } else { "" };
    line(
        "max_connections_per_address",
        config.max_connections_per_address.to_string(),
        or_unlimited(config.max_connections_per_address),
    );
    line(
        "max_handshakes",
        config.max_handshakes.to_string(),
        if config.max_handshakes == 0 {
            "no limit"
        } else {
            "waiting per core; the oldest is evicted"
        },
    );
    line(
        "max_handshakes_per_address",
        config.max_handshakes_per_address.to_string(),
        or_unlimited(config.max_handshakes_per_address),
    );
    line(
        "handshakes_per_minute",
        config.handshakes_per_minute.to_string(),
        or_unlimited(config.handshakes_per_minute as usize),
    );
    line(
        "handshake_cpu_percent",
        config.handshake_cpu_percent.to_string(),
        if config.handshake_cpu_percent == 100 {
            "no budget"
        } else {
            "of each core"
        },
    );
    line(
        "hello_max_skew",
        config.hello_freshness.max_skew.to_string(),
        "seconds",
    );
    line(
        "hello_replay_cache",
        config.hello_replay_cache.to_string(),
        "keys",
    );
    line(
        "accept_untimed_hellos",
        config.hello_freshness.accept_untimed.to_string(),
        if config.hello_freshness.accept_untimed {
            "untimed hellos can be replayed once the replay cache forgets them"
        } else {
            ""
        },
    );
    line(
        "max_lines",
        config.max_lines.to_string(),
        or_unlimited(config.max_lines),
    );
    line(
        "max_rooms",
        config.max_rooms.to_string(),
        or_unlimited(config.max_rooms),
    );
    line(
        "max_rooms_per_address",
        config.max_rooms_per_address.to_string(),
        or_unlimited(config.max_rooms_per_address),
    );
    line(
        "header_timeout",
        config.header_timeout.as_secs().to_string(),
        "seconds",
    );
    if let Some(list) = &args.apikey {
        let count = KeySet::parse_list(list).map_or(0, |k| k.len());
        line("apikey", quoted(REDACTED), &format!("{count} key(s)"));
    }
    if let Some(path) = &args.apikey_file {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let count = KeySet::parse_lines(&text).map_or(0, |k| k.len());
        line(
            "apikey_file",
            quoted(&path.display().to_string()),
            &format!("{count} key(s), {REDACTED}"),
        );
    }
    let keys_note = match (config.keys.len(), config.open) {
        (0, false) => "no apikey: a key is made for each run".to_owned(),
        (0, true) => "any well-formed apikey opens its own line".to_owned(),
        (n, false) => format!("{n} apikey(s) in all, {REDACTED}"),
        (n, true) => format!("{n} apikey(s) in all, {REDACTED}; any well-formed apikey too"),
    };
    line("open", config.open.to_string(), &keys_note);
    let origins: Vec<String> = config.allowed_origins.iter().map(|o| quoted(o)).collect();
    line(
        "allowed_origins",
        format!("[{}]", origins.join(", ")),
        if origins.is_empty() { "any origin" } else { "" },
    );
    let key_state = if config.vors_key.exists() {
        "exists"
    } else {
        "made on first run"
    };
    line(
        "vors_key",
        quoted(&config.vors_key.display().to_string()),
        key_state,
    );
    line("drain_seconds", config.drain.as_secs().to_string(), "");
    line("log_format", quoted(config.log_format.name()), "");
    line(
        "log_peer_addresses",
        config.log_peer_addresses.to_string(),
        "",
    );
    for (key, value, note) in crate::cluster::settings::show(config.cluster.as_ref(), &args.cluster)
    {
        line(key, value, &note);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Source, file};

    #[test]
    fn keys_are_counted_never_shown() {
        let key_a = "key-a-0123456789abcdef";
        let key_b = "key-b-0123456789abcdef";
        let list = format!("{key_a},{key_b}");
        let loaded = match file::load(["moose-relay", "--apikey", &list, "--max-peers", "3"]) {
            Ok(loaded) => loaded,
            Err(e) => panic!("{e:?}"),
        };
        let config =
            Config::from_args(&loaded.cli.run, &loaded.sources, &[0, 1]).expect("valid config");
        let text = render(&loaded.cli.run, &config, &loaded.sources);
        assert!(!text.contains(key_a) && !text.contains(key_b), "{text}");
        assert!(
            text.contains("apikey = \"<redacted>\"  # command line; 2 key(s)"),
            "{text}"
        );
        assert!(text.contains("max_peers = 3  # command line\n"), "{text}");
        assert!(text.contains("max_members = 64  # default\n"), "{text}");
        assert_eq!(loaded.sources.of("listen"), Source::Default);
        // Every setting line parses back as TOML.
        let table: toml::Table = text.parse().expect("check-config output is TOML");
        assert_eq!(table["cores"].as_integer(), Some(2));
    }
}
