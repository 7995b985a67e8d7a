//! The log subscriber `main` installs: human-readable lines by default, one JSON object per
//! line with `--log-format json`, both on stderr; `RUST_LOG` filters (default `info`).
//!
//! What the relay logs never holds a secret: apikeys, keys and passwords are never fields (a
//! line is named by a keyed-hash tag, `owner::Owners::log_tag`). Peer addresses appear in
//! info-level events only with `--log-peer-addresses` (`Shard::peer_at_info`), and otherwise
//! only in debug-level events.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}
