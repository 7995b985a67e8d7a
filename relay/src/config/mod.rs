//! The relay's typed, validated configuration.
//!
//! Settings come from the command line, the environment and an optional TOML file
//! ([`file`]), in that order of precedence, then the defaults. [`Config::from_args`] checks
//! every value and names the setting, its value (never a secret) and where it came from;
//! [`show`] prints the effective configuration for `moose-relay check-config`.

pub mod file;
pub mod show;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use moose_proto::apikey::{self, KeySet};
use moose_proto::vors::freshness::Freshness;
use moose_proto::vors::room::RoomConfig;

use crate::cli::{LogFormat, RunArgs};
use crate::cluster::settings::ClusterSettings;

pub use file::{LoadError, Loaded, load};

/// Bytes of audio per millisecond in a Moose PCM stream: 200 000 samples/s of 16 bits.
pub const PCM_BYTES_PER_MS: usize = 400;

/// Exit status for bad configuration (sysexits' EX_CONFIG), used for every start-up refusal an
/// operator must fix in the configuration or the environment.
pub const EXIT_CONFIG: i32 = 78;

/// Most executors: the VoRS lanes (SIDs and cookie bytes, `sid % cores == core`) are bytes.
pub const MAX_CORES: usize = 255;

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
    /// VoRS cookies accepted from any IP, not only from the member's TCP peer's.
    pub vors_udp_any_ip: bool,
    /// Media packets per second one VoRS member may have forwarded (0: no cap).
    pub vors_max_packet_rate: u32,
    pub keys: KeySet,
    pub open: bool,
    pub allowed_origins: Vec<String>,
    pub vors_key: PathBuf,
    pub max_message: usize,
    /// Most bytes queued for one receiver before its oldest audio is dropped.
    pub queue_bytes: usize,
    /// Most bytes per second one line peer may send, as a multiple of a PCM stream (0: no
    /// cap).
    pub line_rate_cap: u32,
    /// Chat messages per minute per VoRS member (0: no limit).
    pub chat_per_minute: u32,
    /// How long a socket may take no byte of what the relay has for it.
    pub write_stall: Duration,
    pub auth_failures_per_minute: u32,
    /// TCP connections open at once per client address (0: no limit).
    pub max_connections_per_address: usize,
    /// VoRS handshakes waiting for message 1 per core; past it the oldest is evicted (0: no
    /// limit).
    pub max_handshakes: usize,
    /// VoRS handshakes waiting for message 1 per client (0: no limit).
    pub max_handshakes_per_address: usize,
    /// VoRS handshakes started per client per minute (0: no limit).
    pub handshakes_per_minute: u32,
    /// Share of each core handshakes may take, 1 to 100 % (100: no budget).
    pub handshake_cpu_percent: u8,
    /// How fresh a VoRS hello must be (`--hello-max-skew`, `--accept-untimed-hellos`).
    pub hello_freshness: Freshness,
    /// Client ephemeral keys the VoRS replay cache remembers.
    pub hello_replay_cache: usize,
    /// Moose lines in the process (0: no limit).
    pub max_lines: usize,
    /// VoRS rooms in the process (0: no limit).
    pub max_rooms: usize,
    /// VoRS rooms made by one client that exist at once (0: no limit).
    pub max_rooms_per_address: usize,
    /// How long a client may take to send an HTTP request head.
    pub header_timeout: Duration,
    /// How long calls may go on after SIGTERM/SIGINT (zero: exit at once).
    pub drain: Duration,
    pub log_format: LogFormat,
    /// Peer addresses in info-level logs (otherwise only at debug).
    pub log_peer_addresses: bool,
    /// The cluster (`--cluster-redis`); `None`: standalone.
    pub cluster: Option<ClusterSettings>,
}

impl Default for Config {
    /// The flags' defaults ([`RunArgs::defaults`]: the environment is not read), on CPU 0.
    fn default() -> Self {
        Config::from_args(&RunArgs::defaults(), &Sources::default(), &[0])
            .expect("the flags' defaults are valid")
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    CommandLine,
    /// The environment variable of that name.
    Environment(String),
    /// The `--config` file at that path.
    File(PathBuf),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::CommandLine => f.write_str("command line"),
            Source::Environment(name) => write!(f, "environment {name}"),
            Source::File(path) => write!(f, "config file {}", path.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

/// The source of every setting, by setting name (the long flag with `_`: `max_peers`).
#[derive(Debug, Clone, Default)]
pub struct Sources(pub HashMap<String, Source>);

impl Sources {
    pub fn of(&self, setting: &str) -> Source {
        self.0.get(setting).cloned().unwrap_or(Source::Default)
    }
}

/// A setting that cannot be used, named so the operator knows what to fix. Never holds a
/// secret: apikeys are shown as `<redacted>`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid setting {setting} = {value} (from {from}): {problem}")]
    Invalid {
        setting: String,
        value: String,
        from: Source,
        problem: String,
    },
    #[error("invalid setting apikey_file = {} (from {from}): {error}", path.display())]
    KeyFile {
        path: PathBuf,
        from: Source,
        error: std::io::Error,
    },
    /// The command line or an environment variable did not parse (clap's message names the
    /// flag).
    #[error("{0}")]
    Usage(String),
    /// The `--config` file cannot be read or holds something other than settings.
    #[error("--config {}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
}

/// What an apikey looks like in messages and in `check-config`.
pub const REDACTED: &str = "<redacted>";

/// The cluster's settings (`cluster::settings`), a refusal named with its source.
fn cluster_settings(
    args: &RunArgs,
    sources: &Sources,
) -> Result<Option<ClusterSettings>, ConfigError> {
    let listen_given = sources.of("cluster_listen") != Source::Default;
    let settings = ClusterSettings::from_args(&args.cluster, listen_given).map_err(|e| {
        ConfigError::Invalid {
            setting: e.setting.to_owned(),
            value: e.value,
            from: sources.of(e.setting),
            problem: e.problem,
        }
    })?;
    // Both are UDP groups with SO_REUSEPORT: on one port the kernel would merge them and split
    // media and link datagrams between them at random, so say so at start instead.
    let clash = settings
        .as_ref()
        .filter(|cluster| overlap(cluster.listen, args.vors_listen));
    if let Some(cluster) = clash {
        return Err(ConfigError::Invalid {
            setting: "cluster_listen".to_owned(),
            value: cluster.listen.to_string(),
            from: sources.of("cluster_listen"),
            problem: format!(
                "must not share a UDP port with vors_listen ({})",
                args.vors_listen
            ),
        });
    }
    Ok(settings)
}

/// Whether two UDP listen addresses take the same port on a common address (an unspecified
/// address covers every one).
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// The queue bound for `queue_ms` of PCM audio, never less than one largest message.
fn queue_bytes(queue_ms: u32, max_message: usize) -> usize {
    (queue_ms as usize * PCM_BYTES_PER_MS).max(max_message + moose_proto::ws::MAX_SERVER_HEADER)
}

impl Config {
    /// Validates the settings against the CPUs this process may use; `sources` says where each
    /// came from, for the error message.
    pub fn from_args(
        args: &RunArgs,
        sources: &Sources,
        allowed_cpus: &[usize],
    ) -> Result<Config, ConfigError> {
        let bad =
            |setting: &'static str, value: &dyn fmt::Display, problem: &str| ConfigError::Invalid {
                setting: setting.to_owned(),
                value: value.to_string(),
                from: sources.of(setting),
                problem: problem.to_owned(),
            };
        if allowed_cpus.is_empty() {
            return Err(bad("cores", &"-", "this process may not run on any CPU"));
        }
        let cores = args.cores.unwrap_or(allowed_cpus.len().min(MAX_CORES));
        if cores == 0 || cores > MAX_CORES {
            return Err(bad(
                "cores",
                &cores,
                "must be between 1 and 255 (VoRS lanes are one byte)",
            ));
        }
        // More executors than CPUs share CPUs round-robin: allowed, but rarely what one wants.
        let cpus = (0..cores)
            .map(|i| allowed_cpus[i % allowed_cpus.len()])
            .collect();
        if args.max_peers < 2 || args.max_peers > 256 {
            return Err(bad(
                "max_peers",
                &args.max_peers,
                "must be between 2 and 256",
            ));
        }
        if args.max_members < 2 || args.max_members > 255 {
            return Err(bad(
                "max_members",
                &args.max_members,
                "must be between 2 and 255",
            ));
        }
        if args.vors_max_packet_rate != 0 && args.vors_max_packet_rate < 50 {
            return Err(bad(
                "vors_max_packet_rate",
                &args.vors_max_packet_rate,
                "must be 0 (no cap) or at least 50, the packets a talking member sends",
            ));
        }
        if args.max_message < 1024 || args.max_message > 16 << 20 {
            return Err(bad(
                "max_message",
                &args.max_message,
                "must be between 1024 and 16777216 bytes",
            ));
        }
        if args.queue_ms == 0 || args.queue_ms > 10_000 {
            return Err(bad(
                "queue_ms",
                &args.queue_ms,
                "must be between 1 and 10000",
            ));
        }
        if args.auth_failures_per_minute == 0 {
            return Err(bad(
                "auth_failures_per_minute",
                &args.auth_failures_per_minute,
                "must be at least 1",
            ));
        }
        if args.handshake_cpu_percent == 0 || args.handshake_cpu_percent > 100 {
            return Err(bad(
                "handshake_cpu_percent",
                &args.handshake_cpu_percent,
                "must be between 1 and 100",
            ));
        }
        if args.header_timeout == 0 || args.header_timeout > 3600 {
            return Err(bad(
                "header_timeout",
                &args.header_timeout,
                "must be between 1 and 3600 seconds",
            ));
        }
        if args.line_rate_cap > 1000 {
            return Err(bad(
                "line_rate_cap",
                &args.line_rate_cap,
                "must be at most 1000 (times a PCM stream), or 0 for no cap",
            ));
        }
        if args.write_stall_timeout == 0 || args.write_stall_timeout > 3600 {
            return Err(bad(
                "write_stall_timeout",
                &args.write_stall_timeout,
                "must be between 1 and 3600 seconds",
            ));
        }
        if args.hello_max_skew == 0 || args.hello_max_skew > 3600 {
            return Err(bad(
                "hello_max_skew",
                &args.hello_max_skew,
                "must be between 1 and 3600 seconds",
            ));
        }
        if args.hello_replay_cache < 1024 || args.hello_replay_cache > 1 << 24 {
            return Err(bad(
                "hello_replay_cache",
                &args.hello_replay_cache,
                "must be between 1024 and 16777216 keys",
            ));
        }
        if args.drain_seconds > 24 * 3600 {
            return Err(bad(
                "drain_seconds",
                &args.drain_seconds,
                "must be at most 86400 (a day)",
            ));
        }
        let mut keys = match &args.apikey {
            // The message says what is wrong with the list, never the key itself.
            Some(list) => {
                KeySet::parse_list(list).map_err(|e| bad("apikey", &REDACTED, &e.to_string()))?
            }
            None => KeySet::default(),
        };
        if let Some(path) = &args.apikey_file {
            let text = std::fs::read_to_string(path).map_err(|error| ConfigError::KeyFile {
                path: path.clone(),
                from: sources.of("apikey_file"),
                error,
            })?;
            let from_file = KeySet::parse_lines(&text)
                .map_err(|e| bad("apikey_file", &path.display(), &e.to_string()))?;
            keys.extend(from_file);
        }
        for origin in &args.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(bad(
                    "allowed_origins",
                    &format!("{origin:?}"),
                    "not an origin like https://example.com",
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
            vors_udp_any_ip: args.vors_udp_any_ip,
            vors_max_packet_rate: args.vors_max_packet_rate,
            keys,
            open: args.open,
            allowed_origins: args.allowed_origins.clone(),
            vors_key: args.vors_key.clone(),
            max_message: args.max_message,
            queue_bytes: queue_bytes(args.queue_ms, args.max_message),
            line_rate_cap: args.line_rate_cap,
            chat_per_minute: args.chat_per_minute,
            write_stall: Duration::from_secs(args.write_stall_timeout),
            auth_failures_per_minute: args.auth_failures_per_minute,
            max_connections_per_address: args.max_connections_per_address,
            max_handshakes: args.max_handshakes,
            max_handshakes_per_address: args.max_handshakes_per_address,
            handshakes_per_minute: args.handshakes_per_minute,
            handshake_cpu_percent: args.handshake_cpu_percent,
            hello_freshness: Freshness {
                max_skew: args.hello_max_skew,
                accept_untimed: args.accept_untimed_hellos,
            },
            hello_replay_cache: args.hello_replay_cache,
            max_lines: args.max_lines,
            max_rooms: args.max_rooms,
            max_rooms_per_address: args.max_rooms_per_address,
            header_timeout: Duration::from_secs(args.header_timeout),
            drain: Duration::from_secs(args.drain_seconds),
            log_format: args.log_format,
            log_peer_addresses: args.log_peer_addresses,
            cluster: cluster_settings(args, sources)?,
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

    /// What every VoRS room follows (each core sets its own lane).
    pub fn vors_rooms(&self) -> RoomConfig {
        RoomConfig {
            max_members: self.max_members,
            cookie_from_any_ip: self.vors_udp_any_ip,
            max_packet_rate: self.vors_max_packet_rate,
            ..RoomConfig::default()
        }
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
        Config::from_args(&cli.run, &Sources::default(), &[0, 1])
    }

    #[test]
    fn defaults_use_every_allowed_cpu() {
        let config = parse(&[]).expect("valid");
        assert_eq!(config.cpus, vec![0, 1]);
        assert_eq!(config.max_peers, 4);
        assert_eq!(config.drain, Duration::from_secs(30));
        assert_eq!(config.max_connections_per_address, 64);
        assert_eq!(config.max_handshakes, 256);
        assert_eq!(config.max_handshakes_per_address, 8);
        assert_eq!(config.handshakes_per_minute, 120);
        assert_eq!(config.handshake_cpu_percent, 25);
        assert_eq!(config.hello_freshness, Freshness::default());
        assert_eq!(config.hello_replay_cache, 131_072);
        assert_eq!(config.max_lines, 10_000);
        assert_eq!(config.max_rooms, 10_000);
        assert_eq!(config.max_rooms_per_address, 16);
        assert_eq!(config.header_timeout, Duration::from_secs(10));
        assert_eq!(config.line_rate_cap, 4);
        assert_eq!(config.chat_per_minute, 120);
        assert_eq!(config.write_stall, Duration::from_secs(30));
        let mut default = Config::default();
        assert_eq!(default.cpus, vec![0]);
        default.cpus.clone_from(&config.cpus);
        assert_eq!(
            format!("{default:?}"),
            format!("{config:?}"),
            "Config::default is the flags' defaults, in every field"
        );
        assert!(config.queue_bytes >= 200 * PCM_BYTES_PER_MS);
    }

    #[test]
    fn the_relay_link_never_shares_the_vors_port() {
        let dir = std::env::temp_dir().join(format!("moose-config-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let key = dir.join("cluster.key");
        std::fs::write(&key, format!("{}\n", "5a".repeat(32))).expect("write key");
        let key = key.to_str().expect("utf-8");
        let with = |vors: &str, link: &str| {
            parse(&[
                "--cluster-redis",
                "redis://127.0.0.1:6379",
                "--cluster-key",
                key,
                "--vors-listen",
                vors,
                "--cluster-listen",
                link,
            ])
        };
        let err = with("127.0.0.1:12979", "127.0.0.1:12979").expect_err("same port");
        assert!(
            err.to_string()
                .starts_with("invalid setting cluster_listen = 127.0.0.1:12979 "),
            "{err}"
        );
        assert!(
            with("0.0.0.0:12978", "10.0.0.5:12978").is_err(),
            "wildcard VoRS"
        );
        assert!(
            with("127.0.0.1:12979", "10.0.0.5:12979").is_ok(),
            "other address"
        );
        assert!(
            with("127.0.0.1:12977", "127.0.0.1:12979").is_ok(),
            "other port"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_settings_are_named() {
        let err = parse(&["--max-peers", "1"]).expect_err("too few peers");
        assert!(
            err.to_string()
                .starts_with("invalid setting max_peers = 1 "),
            "{err}"
        );
        let err = parse(&["--cores", "0"]).expect_err("no cores");
        assert!(
            err.to_string().starts_with("invalid setting cores = 0"),
            "{err}"
        );
        let err = parse(&["--header-timeout", "0"]).expect_err("no time for a head");
        assert!(
            err.to_string()
                .starts_with("invalid setting header_timeout = 0 "),
            "{err}"
        );
        let err = parse(&["--handshake-cpu-percent", "0"]).expect_err("no handshake at all");
        assert!(
            err.to_string()
                .starts_with("invalid setting handshake_cpu_percent = 0 "),
            "{err}"
        );
        let err = parse(&["--write-stall-timeout", "0"]).expect_err("no time to write");
        assert!(
            err.to_string()
                .starts_with("invalid setting write_stall_timeout = 0 "),
            "{err}"
        );
        let err = parse(&["--line-rate-cap", "1001"]).expect_err("no cap at all");
        assert!(
            err.to_string()
                .starts_with("invalid setting line_rate_cap = 1001 "),
            "{err}"
        );
        let err = parse(&["--apikey", "short"]).expect_err("short key");
        assert!(err.to_string().contains("apikey = <redacted>"), "{err}");
        assert!(
            !err.to_string().contains("short\""),
            "never echo a key: {err}"
        );
    }

    #[test]
    fn vors_media_rules_reach_every_room() {
        let rooms = parse(&[]).expect("valid").vors_rooms();
        assert!(
            !rooms.cookie_from_any_ip,
            "cookies from the TCP peer's IP by default"
        );
        assert_eq!((rooms.max_packet_rate, rooms.max_members), (200, 64));
        let config = parse(&["--vors-udp-any-ip", "--vors-max-packet-rate", "0"]).expect("valid");
        let rooms = config.vors_rooms();
        assert!(rooms.cookie_from_any_ip);
        assert_eq!(rooms.max_packet_rate, 0, "no cap");
        let err = parse(&["--vors-max-packet-rate", "49"]).expect_err("below a talker's 50");
        assert!(
            err.to_string()
                .starts_with("invalid setting vors_max_packet_rate = 49 "),
            "{err}"
        );
    }

    #[test]
    fn cores_stop_at_255_because_lanes_are_bytes() {
        assert_eq!(parse(&["--cores", "255"]).expect("valid").cores(), 255);
        let err = parse(&["--cores", "256"]).expect_err("a lane is a byte");
        assert!(err.to_string().contains("cores = 256"), "{err}");
        assert!(err.to_string().contains("between 1 and 255"), "{err}");
    }

    #[test]
    fn the_source_is_named() {
        let cli = crate::cli::Cli::try_parse_from(["moose-relay", "--queue-ms", "0"])
            .expect("flags parse");
        let mut sources = Sources::default();
        sources.0.insert(
            "queue_ms".into(),
            Source::File(PathBuf::from("/etc/moose.toml")),
        );
        let err = Config::from_args(&cli.run, &sources, &[0]).expect_err("no queue");
        assert_eq!(
            err.to_string(),
            "invalid setting queue_ms = 0 (from config file /etc/moose.toml): \
             must be between 1 and 10000"
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
