//! The relay's typed, validated configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use moose_proto::apikey::{self, KeySet};

use crate::cli::RunArgs;

/// Bytes of audio per millisecond in a Moose PCM stream: 200 000 samples/s of 16 bits.
pub const PCM_BYTES_PER_MS: usize = 400;

/// Exit status for bad configuration (sysexits' EX_CONFIG), used for every start-up refusal an
/// operator must fix in the configuration or the environment.
pub const EXIT_CONFIG: i32 = 78;

/// Everything the relay runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub vors_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// The CPU each executor is pinned to; its length is the number of cores.
    pub cpus: Vec<usize>,
    pub max_peers: usize,
    /// Most members of a VoRS room.
    pub max_members: usize,
    pub keys: KeySet,
    pub open: bool,
    pub allowed_origins: Vec<String>,
    pub vors_key: PathBuf,
    pub max_message: usize,
    /// Most bytes queued for one receiver before its oldest audio is dropped.
    pub queue_bytes: usize,
    pub auth_failures_per_minute: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 7777)),
            vors_listen: SocketAddr::from(([0, 0, 0, 0], 12978)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9477)),
            cpus: vec![0],
            max_peers: 4,
            max_members: 64,
            keys: KeySet::default(),
            open: false,
            allowed_origins: Vec::new(),
            vors_key: PathBuf::from("moose-vors.key"),
            max_message: 64 * 1024,
            queue_bytes: queue_bytes(200, 64 * 1024),
            auth_failures_per_minute: 10,
        }
    }
}

/// A setting that cannot be used, named so the operator knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{setting}: {problem}")]
    Invalid {
        setting: &'static str,
        problem: String,
    },
    #[error("--apikey-file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn invalid(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        problem: problem.into(),
    }
}

/// The queue bound for `queue_ms` of PCM audio, never less than one largest message.
fn queue_bytes(queue_ms: u32, max_message: usize) -> usize {
    (queue_ms as usize * PCM_BYTES_PER_MS).max(max_message + moose_proto::ws::MAX_SERVER_HEADER)
}

impl Config {
    /// Validates the command line against the CPUs this process may use.
    pub fn from_args(args: &RunArgs, allowed_cpus: &[usize]) -> Result<Config, ConfigError> {
        if allowed_cpus.is_empty() {
            return Err(invalid("--cores", "this process may not run on any CPU"));
        }
        let cores = args.cores.unwrap_or(allowed_cpus.len());
        if cores == 0 || cores > 256 {
            return Err(invalid("--cores", "must be between 1 and 256"));
        }
        // More executors than CPUs share CPUs round-robin: allowed, but rarely what one wants.
        let cpus = (0..cores)
            .map(|i| allowed_cpus[i % allowed_cpus.len()])
            .collect();
        if args.max_peers < 2 || args.max_peers > 256 {
            return Err(invalid("--max-peers", "must be between 2 and 256"));
        }
        if args.max_members < 2 || args.max_members > 255 {
            return Err(invalid("--max-members", "must be between 2 and 255"));
        }
        if args.max_message < 1024 || args.max_message > 16 << 20 {
            return Err(invalid(
                "--max-message",
                "must be between 1024 and 16777216 bytes",
            ));
        }
        if args.queue_ms == 0 || args.queue_ms > 10_000 {
            return Err(invalid("--queue-ms", "must be between 1 and 10000"));
        }
        if args.auth_failures_per_minute == 0 {
            return Err(invalid("--auth-failures-per-minute", "must be at least 1"));
        }
        let mut keys = match &args.apikey {
            Some(list) => KeySet::parse_list(list).map_err(|e| invalid("APIKEY", e.to_string()))?,
            None => KeySet::default(),
        };
        if let Some(path) = &args.apikey_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::KeyFile {
                path: path.clone(),
                source,
            })?;
            let from_file = KeySet::parse_lines(&text)
                .map_err(|e| invalid("--apikey-file", format!("{}: {e}", path.display())))?;
            keys.extend(from_file);
        }
        for origin in &args.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(invalid(
                    "--allowed-origin",
                    format!("{origin:?} is not an origin like https://example.com"),
                ));
            }
        }
        Ok(Config {
            listen: args.listen,
            vors_listen: args.vors_listen,
            admin_listen: args.admin_listen,
            cpus,
            max_peers: args.max_peers,
            max_members: args.max_members,
            keys,
            open: args.open,
            allowed_origins: args.allowed_origins.clone(),
            vors_key: args.vors_key.clone(),
            max_message: args.max_message,
            queue_bytes: queue_bytes(args.queue_ms, args.max_message),
            auth_failures_per_minute: args.auth_failures_per_minute,
        })
    }

    /// Makes a strong key when none is configured, so a first run works; returns it so `main`
    /// can print the join URL once.
    pub fn ensure_key(&mut self, random: [u8; 32]) -> Option<String> {
        if !self.keys.is_empty() || self.open {
            return None;
        }
        let key = apikey::generated_key(random);
        self.keys = KeySet::parse_list(&key).ok()?;
        Some(key)
    }

    pub fn cores(&self) -> usize {
        self.cpus.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let cli = crate::cli::Cli::try_parse_from(
            std::iter::once("moose-relay").chain(args.iter().copied()),
        )
        .expect("flags parse");
        Config::from_args(&cli.run, &[0, 1])
    }

    #[test]
    fn defaults_use_every_allowed_cpu() {
        let config = parse(&[]).expect("valid");
        assert_eq!(config.cpus, vec![0, 1]);
        assert_eq!(config.max_peers, 4);
        assert!(config.queue_bytes >= 200 * PCM_BYTES_PER_MS);
    }

    #[test]
    fn bad_settings_are_named() {
        let err = parse(&["--max-peers", "1"]).expect_err("too few peers");
        assert!(err.to_string().starts_with("--max-peers:"), "{err}");
        let err = parse(&["--cores", "0"]).expect_err("no cores");
        assert!(err.to_string().starts_with("--cores:"), "{err}");
        let err = parse(&["--apikey", "short"]).expect_err("short key");
        assert!(err.to_string().starts_with("APIKEY:"), "{err}");
        assert!(
            !err.to_string().contains("short\""),
            "never echo a key: {err}"
        );
    }

    #[test]
    fn generated_key_only_when_none_configured() {
        let mut config = parse(&[]).expect("valid");
        let key = config.ensure_key([7; 32]).expect("a key is made");
        assert!(config.keys.contains(key.as_bytes()));
        let mut config = parse(&["--apikey", "0123456789abcdef0123"]).expect("valid");
        assert!(config.ensure_key([7; 32]).is_none());
        let mut config = parse(&["--open"]).expect("valid");
        assert!(config.ensure_key([7; 32]).is_none());
    }
}
