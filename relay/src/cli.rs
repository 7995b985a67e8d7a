//! The command line. Every flag is also an environment variable (`MOOSE_*`, and `APIKEY` as in
//! the original Moose server).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Moose Relay: a self-hosted audio call relay (Moose lines over WebSocket, VoRS rooms over UDP).
#[derive(Debug, Parser)]
#[command(name = "moose-relay", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a new VoRS server private key (64 hex digits) on stdout.
    Keygen,
    /// Read a VoRS private key on stdin and print its public key (64 hex digits).
    Pubkey,
}

/// Flags of the relay itself.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// HTTP and WebSocket listener (the web client at `/`, lines at `/ws`).
    #[arg(long, env = "MOOSE_LISTEN", default_value = "0.0.0.0:7777")]
    pub listen: SocketAddr,

    /// VoRS listener: TCP (handshake, control) and UDP (media) on the same port.
    #[arg(long, env = "MOOSE_VORS_LISTEN", default_value = "0.0.0.0:12978")]
    pub vors_listen: SocketAddr,

    /// Admin endpoint: /metrics, /healthz, /readyz.
    #[arg(long, env = "MOOSE_ADMIN_LISTEN", default_value = "127.0.0.1:9477")]
    pub admin_listen: SocketAddr,

    /// Number of cores (one pinned executor each). Default: every CPU this process may use.
    #[arg(long, env = "MOOSE_CORES")]
    pub cores: Option<usize>,

    /// Most peers on one Moose line; a peer over the limit is refused with 503.
    #[arg(long, env = "MOOSE_MAX_PEERS", default_value_t = 4)]
    pub max_peers: usize,

    /// Line key(s): one apikey, or several separated by commas.
    #[arg(long, env = "APIKEY", hide_env_values = true)]
    pub apikey: Option<String>,

    /// File with one apikey per line (blank lines and lines starting with '#' are ignored).
    #[arg(long, env = "MOOSE_APIKEY_FILE")]
    pub apikey_file: Option<PathBuf>,

    /// Let any well-formed apikey open its own line (benchmarks, hosts that hand out keys).
    #[arg(long, env = "MOOSE_OPEN")]
    pub open: bool,

    /// Browser origins allowed to open lines (repeat or separate by commas). Requests without an
    /// Origin header (non-browser clients) are always allowed. Default: any origin.
    #[arg(
        long = "allowed-origin",
        env = "MOOSE_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// VoRS server private key file; made on first run when absent.
    #[arg(long, env = "MOOSE_VORS_KEY", default_value = "moose-vors.key")]
    pub vors_key: PathBuf,

    /// Most members in one VoRS room (each core's rooms can hold up to 255 / cores).
    #[arg(long, env = "MOOSE_MAX_MEMBERS", default_value_t = 64)]
    pub max_members: usize,

    /// Largest WebSocket message accepted, in bytes; larger ones close the peer with 1009.
    #[arg(long, env = "MOOSE_MAX_MESSAGE", default_value_t = 64 * 1024)]
    pub max_message: usize,

    /// Audio a slow receiver may have queued before its oldest audio is dropped, in ms.
    #[arg(long, env = "MOOSE_QUEUE_MS", default_value_t = 200)]
    pub queue_ms: u32,

    /// Failed apikey attempts one address may make per minute before it gets 429.
    #[arg(long, env = "MOOSE_AUTH_FAILURES_PER_MINUTE", default_value_t = 10)]
    pub auth_failures_per_minute: u32,
}
