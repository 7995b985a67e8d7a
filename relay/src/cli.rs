//! The command line. Every flag is also an environment variable (`MOOSE_*`, and `APIKEY` as in
//! the original Moose server) and a key of the optional TOML file (`--config`, see
//! `config::file`). Precedence: command line, then environment, then file, then default.
//!
//! Every flag is `global`, so it may be given before or after a subcommand
//! (`moose-relay check-config --config moose.toml`).
//!
//! Each default is written once, in its flag's attribute here: `Config::default()` is
//! [`RunArgs::defaults`], and a test holds docs/configuration.md's table to these flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// Moose Relay: a self-hosted audio call relay (Moose lines over WebSocket, VoRS rooms over UDP).
#[derive(Debug, Parser)]
#[command(name = "moose-relay", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Print a new VoRS server private key (64 hex digits) on stdout.
    Keygen,
    /// Read a VoRS private key on stdin and print its public key (64 hex digits).
    Pubkey,
    /// Validate the configuration (flags, environment, --config file) and print the effective
    /// settings with secrets redacted; exit 0, or 78 when a setting is invalid.
    CheckConfig,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line (tracing-subscriber's JSON format).
    Json,
}

impl LogFormat {
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Flags of the relay itself.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// TOML file with settings (keys named like the long flags, with `_` or `-`). Flags and
    /// environment variables override it.
    #[arg(long, env = "MOOSE_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// HTTP and WebSocket listener (the web client at `/`, lines at `/ws`).
    #[arg(
        long,
        env = "MOOSE_LISTEN",
        default_value = "0.0.0.0:7777",
        global = true
    )]
    pub listen: SocketAddr,

    /// VoRS listener: TCP (handshake, control) and UDP (media) on the same port.
    #[arg(
        long,
        env = "MOOSE_VORS_LISTEN",
        default_value = "0.0.0.0:12978",
        global = true
    )]
    pub vors_listen: SocketAddr,

    /// Admin endpoint: /metrics, /healthz, /readyz.
    #[arg(
        long,
        env = "MOOSE_ADMIN_LISTEN",
        default_value = "127.0.0.1:9477",
        global = true
    )]
    pub admin_listen: SocketAddr,

    /// Number of cores (one pinned executor each), 1 to 255. Default: every CPU this process
    /// may use.
    #[arg(long, env = "MOOSE_CORES", global = true)]
    pub cores: Option<usize>,

    /// Most peers on one Moose line; a peer over the limit is refused with 503.
    #[arg(long, env = "MOOSE_MAX_PEERS", default_value_t = 4, global = true)]
    pub max_peers: usize,

    /// Line key(s): one apikey, or several separated by commas.
    #[arg(long, env = "APIKEY", hide_env_values = true, global = true)]
    pub apikey: Option<String>,

    /// File with one apikey per line (blank lines and lines starting with '#' are ignored).
    #[arg(long, env = "MOOSE_APIKEY_FILE", global = true)]
    pub apikey_file: Option<PathBuf>,

    /// Let any well-formed apikey open its own line (benchmarks, hosts that hand out keys).
    #[arg(long, env = "MOOSE_OPEN", value_parser = BoolishValueParser::new(), global = true)]
    pub open: bool,

    /// Browser origins allowed to open lines (repeat or separate by commas). Requests without an
    /// Origin header (non-browser clients) are always allowed. Default: any origin.
    #[arg(
        long = "allowed-origin",
        env = "MOOSE_ALLOWED_ORIGINS",
        value_delimiter = ',',
        global = true
    )]
    pub allowed_origins: Vec<String>,

    /// VoRS server private key file; made on first run when absent.
    #[arg(
        long,
        env = "MOOSE_VORS_KEY",
        default_value = "moose-vors.key",
        global = true
    )]
    pub vors_key: PathBuf,

    /// Most members in one VoRS room (each core's rooms can hold up to 255 / cores).
    #[arg(long, env = "MOOSE_MAX_MEMBERS", default_value_t = 64, global = true)]
    pub max_members: usize,

    /// Accept a VoRS member's UDP cookie from any IP address, not only from the IP of its TCP
    /// connection: for networks that give one client different addresses for TCP and UDP.
    /// Anyone who can join a room can then have its audio sent to an address of their choice.
    #[arg(
        long,
        env = "MOOSE_VORS_UDP_ANY_IP",
        value_parser = BoolishValueParser::new(),
        global = true
    )]
    pub vors_udp_any_ip: bool,

    /// Media packets one VoRS member may have forwarded per second, with a burst of half a
    /// second's worth; the rest is dropped (0: no cap). A client sends 50.
    #[arg(
        long,
        env = "MOOSE_VORS_MAX_PACKET_RATE",
        default_value_t = moose_proto::vors::room::DEFAULT_MAX_PACKET_RATE,
        global = true
    )]
    pub vors_max_packet_rate: u32,

    /// Largest WebSocket message accepted, in bytes; larger ones close the peer with 1009.
    #[arg(long, env = "MOOSE_MAX_MESSAGE", default_value_t = 64 * 1024, global = true)]
    pub max_message: usize,

    /// Audio a slow receiver may have queued before its oldest audio is dropped, in ms.
    #[arg(long, env = "MOOSE_QUEUE_MS", default_value_t = 200, global = true)]
    pub queue_ms: u32,

    /// Most bytes per second one line peer may send, as a multiple of a Moose PCM stream
    /// (400 000 bytes/s), after a burst of a quarter second at that rate; messages beyond are
    /// dropped (0: no cap).
    #[arg(long, env = "MOOSE_LINE_RATE_CAP", default_value_t = 4, global = true)]
    pub line_rate_cap: u32,

    /// Chat messages one VoRS member may send per minute, after a burst of 20; more are
    /// dropped (0: no limit).
    #[arg(
        long,
        env = "MOOSE_CHAT_PER_MINUTE",
        default_value_t = 120,
        global = true
    )]
    pub chat_per_minute: u32,

    /// Seconds a connection's socket may take no byte of what the relay has for it before the
    /// connection is reset (line peers, VoRS members, HTTP and admin answers).
    #[arg(
        long,
        env = "MOOSE_WRITE_STALL_TIMEOUT",
        default_value_t = 30,
        global = true
    )]
    pub write_stall_timeout: u64,

    /// Failed apikey attempts one address may make per minute before it gets 429.
    #[arg(
        long,
        env = "MOOSE_AUTH_FAILURES_PER_MINUTE",
        default_value_t = 10,
        global = true
    )]
    pub auth_failures_per_minute: u32,

    /// TCP connections (HTTP/WebSocket and VoRS together) one IP address may have open at
    /// once, over every core; more are closed at once (0: no limit).
    #[arg(
        long,
        env = "MOOSE_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 64,
        global = true
    )]
    pub max_connections_per_address: usize,

    /// VoRS handshakes one core holds waiting for their magic and message 1; when full, the
    /// one that has waited longest is closed to make room for the newcomer (0: no limit).
    #[arg(
        long,
        env = "MOOSE_MAX_HANDSHAKES",
        default_value_t = 256,
        global = true
    )]
    pub max_handshakes: usize,

    /// VoRS handshakes one client (IPv4 address, IPv6 /64) may have waiting for message 1 at
    /// once, over every core; more are closed at once (0: no limit).
    #[arg(
        long,
        env = "MOOSE_MAX_HANDSHAKES_PER_ADDRESS",
        default_value_t = 8,
        global = true
    )]
    pub max_handshakes_per_address: usize,

    /// VoRS handshakes one client (IPv4 address, IPv6 /64) may start per minute (a token
    /// bucket with this burst), over every core (0: no limit).
    #[arg(
        long,
        env = "MOOSE_HANDSHAKES_PER_MINUTE",
        default_value_t = 120,
        global = true
    )]
    pub handshakes_per_minute: u32,

    /// Share of each core that VoRS handshakes (decrypting message 1, writing message 2) may
    /// take, in percent (1 to 100; 100: no budget). Past it, handshakes are closed before the
    /// Noise work until the core has earned its budget back.
    #[arg(
        long,
        env = "MOOSE_HANDSHAKE_CPU_PERCENT",
        default_value_t = 25,
        global = true
    )]
    pub handshake_cpu_percent: u8,

    /// How far the time a VoRS client puts in its hello may be from the relay's clock, either
    /// way, in seconds. A hello outside it (an old copy, or a client whose clock is off) is
    /// closed unanswered; a copy within it is refused by the replay cache.
    #[arg(
        long,
        env = "MOOSE_HELLO_MAX_SKEW",
        default_value_t = 30,
        global = true
    )]
    pub hello_max_skew: u64,

    /// VoRS client ephemeral keys the replay cache remembers, about 35 bytes each, for
    /// 2 x --hello-max-skew seconds; when it is full, the oldest is forgotten early.
    #[arg(
        long,
        env = "MOOSE_HELLO_REPLAY_CACHE",
        default_value_t = 131_072,
        global = true
    )]
    pub hello_replay_cache: usize,

    /// Also take VoRS hellos without a time, from clients older than the time field. Such a
    /// hello can be replayed once the replay cache has forgotten it.
    #[arg(
        long,
        env = "MOOSE_ACCEPT_UNTIMED_HELLOS",
        value_parser = BoolishValueParser::new(),
        global = true
    )]
    pub accept_untimed_hellos: bool,

    /// Most Moose lines in the process; a peer that would open one more gets 503 (0: no
    /// limit).
    #[arg(long, env = "MOOSE_MAX_LINES", default_value_t = 10_000, global = true)]
    pub max_lines: usize,

    /// Most VoRS rooms in the process; a member that would open one more gets
    /// ["ERR", "server full"] (0: no limit).
    #[arg(long, env = "MOOSE_MAX_ROOMS", default_value_t = 10_000, global = true)]
    pub max_rooms: usize,

    /// Most VoRS rooms made by one client (IPv4 address, IPv6 /64) that exist at once; a
    /// member that would make one more gets ["ERR", "too many rooms"] (0: no limit).
    #[arg(
        long,
        env = "MOOSE_MAX_ROOMS_PER_ADDRESS",
        default_value_t = 16,
        global = true
    )]
    pub max_rooms_per_address: usize,

    /// Seconds a client gets to send its whole HTTP request head (slowloris protection).
    #[arg(
        long,
        env = "MOOSE_HEADER_TIMEOUT",
        default_value_t = 10,
        global = true
    )]
    pub header_timeout: u64,

    /// On SIGTERM or SIGINT, how long calls may go on before the relay exits anyway, in
    /// seconds (0: exit at once).
    #[arg(long, env = "MOOSE_DRAIN_SECONDS", default_value_t = 30, global = true)]
    pub drain_seconds: u64,

    /// Log format on stderr.
    #[arg(
        long,
        env = "MOOSE_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    /// Log peer addresses at info level (otherwise they appear only at debug level).
    #[arg(
        long,
        env = "MOOSE_LOG_PEER_ADDRESSES",
        value_parser = BoolishValueParser::new(),
        global = true
    )]
    pub log_peer_addresses: bool,

    /// The cluster's flags: a group of their own (`cluster::settings`).
    #[command(flatten)]
    pub cluster: crate::cluster::settings::ClusterArgs,
}

impl RunArgs {
    /// Every flag at its default: clap's parse of an empty command line, the environment
    /// ignored.
    pub fn defaults() -> RunArgs {
        let matches = Cli::command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(["moose-relay"])
            .expect("no flag is required");
        RunArgs::from_arg_matches(&matches).expect("every default parses")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCS: &str = include_str!("../../docs/configuration.md");

    /// One row of docs/configuration.md's settings table, backticks taken off.
    #[derive(Debug)]
    struct Row {
        /// The long flag without `--` or its value's name: `max-peers`.
        long: String,
        environment: String,
        /// Empty for `—` (no key).
        toml_key: String,
        /// `None` for a default given in words (`none`, `any origin`).
        default: Option<String>,
    }

    fn documented() -> Vec<Row> {
        let code = |cell: &str| {
            let cell = cell.trim();
            Some(cell.strip_prefix('`')?.strip_suffix('`')?.to_owned())
        };
        DOCS.lines()
            .filter(|line| line.starts_with("| `--"))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').collect();
                let flag = code(cells[1]).expect("a flag in backticks");
                Row {
                    long: flag[2..].split(' ').next().unwrap_or_default().to_owned(),
                    environment: code(cells[2]).unwrap_or_default(),
                    toml_key: code(cells[3]).unwrap_or_default(),
                    default: code(cells[4]),
                }
            })
            .collect()
    }

    #[test]
    fn the_settings_table_lists_every_flag_with_its_variable_key_and_default() {
        let mut command = Cli::command();
        // Built, so that boolean flags carry their implicit `false`.
        command.build();
        let mut flags: Vec<&str> = command
            .get_arguments()
            .filter_map(|arg| arg.get_long())
            .filter(|long| !matches!(*long, "help" | "version"))
            .collect();
        let rows = documented();
        let mut listed: Vec<&str> = rows.iter().map(|row| row.long.as_str()).collect();
        flags.sort_unstable();
        listed.sort_unstable();
        assert_eq!(
            flags, listed,
            "flags, and the rows of docs/configuration.md"
        );
        for row in &rows {
            let long = &row.long;
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_long() == Some(long))
                .expect("a flag");
            let environment = arg.get_env().and_then(|name| name.to_str());
            assert_eq!(environment, Some(row.environment.as_str()), "--{long}");
            let key = if long == "config" {
                ""
            } else {
                arg.get_id().as_str()
            };
            assert_eq!(row.toml_key, key, "--{long}: TOML key");
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|value| value.to_string_lossy().into_owned())
                .collect();
            let default = (!defaults.is_empty()).then(|| defaults.join(","));
            assert_eq!(row.default, default, "--{long}: default");
        }
    }
}
