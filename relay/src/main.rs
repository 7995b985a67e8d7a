//! `moose-relay`: the daemon.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use moose_relay::cli::Command;
use moose_relay::config::{self, Config, EXIT_CONFIG, LoadError, Loaded};
use moose_relay::vors::keyfile;
use moose_relay::{logging, preflight, runtime, sys};
use tracing::{error, info, warn};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let Loaded { cli, sources } = match config::load(std::env::args_os()) {
        Ok(loaded) => loaded,
        Err(LoadError::Info(e)) => e.exit(),
        // No subscriber yet (its format is a setting): plain text.
        Err(LoadError::Config(e)) => {
            eprintln!("moose-relay: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    match cli.command {
        Some(Command::Keygen) => return keygen(),
        Some(Command::Pubkey) => return pubkey(),
        Some(Command::CheckConfig) | None => {}
    }
    let allowed = sys::allowed_cpus().unwrap_or_else(|_| vec![0]);
    let config = Config::from_args(&cli.run, &sources, &allowed);
    if cli.command == Some(Command::CheckConfig) {
        // An existing VoRS key file must hold a key (never printed); a missing one would be
        // made at start, which check-config does not do.
        let checked = config.map_err(|e| e.to_string()).and_then(|config| {
            if config.vors_key.exists() {
                keyfile::load_or_create(&config.vors_key).map_err(|e| e.to_string())?;
            }
            Ok(config)
        });
        return match checked {
            Ok(config) => {
                print!("{}", config::show::render(&cli.run, &config, &sources));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("moose-relay: {e}");
                ExitCode::from(EXIT_CONFIG as u8)
            }
        };
    }
    logging::init(cli.run.log_format);
    let mut config = match config {
        Ok(config) => config,
        Err(e) => return config_error(&e),
    };
    if let Err(e) = preflight::check(config.cores()) {
        return config_error(&e);
    }
    // Every connection costs a descriptor; the default soft limit (often 1024) is far below
    // what a public relay needs, and raising it to the hard limit needs no privilege.
    match sys::raise_nofile_limit() {
        Ok(limit) => info!(limit, "open file limit (RLIMIT_NOFILE soft limit)"),
        Err(e) => {
            warn!(error = %e, limit = sys::nofile_limit(), "cannot raise the open file limit")
        }
    }
    let (vors_key, vors_key_made) = match keyfile::load_or_create(&config.vors_key) {
        Ok(loaded) => loaded,
        Err(e) => return config_error(&e),
    };
    let public = hex::encode(vors_key.public);
    if vors_key_made {
        info!(path = %config.vors_key.display(), "made a new VoRS server key");
    }
    let generated = config.ensure_key(rand::random());
    let result = runtime::run(config, vors_key, |listening| {
        let mut out = std::io::stdout().lock();
        if let Some(key) = &generated {
            let host = if listening.http.ip().is_unspecified() {
                format!("localhost:{}", listening.http.port())
            } else {
                listening.http.to_string()
            };
            let _ = writeln!(
                out,
                "No apikey configured; this run uses a new one.\n  \
                 Start a call:  http://{host}/?apikey={key}#generate_leaf\n  \
                 Keep the key:  APIKEY={key} moose-relay ...  (or one key per line in --apikey-file)"
            );
        }
        let _ = writeln!(
            out,
            "listening http={} vors={} admin={} vors_pubkey={public}",
            listening.http, listening.vors, listening.admin
        );
        let _ = out.flush();
    });
    let _ = std::io::stdout().flush();
    match result {
        Ok(status) => ExitCode::from(u8::try_from(status).unwrap_or(1)),
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `moose-relay keygen`: a new private key on stdout.
fn keygen() -> ExitCode {
    match keyfile::generate() {
        Ok(key) => {
            println!("{}", hex::encode(key.private));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("moose-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `moose-relay pubkey`: the public key of the private key on stdin.
fn pubkey() -> ExitCode {
    let mut text = String::new();
    if std::io::stdin().read_to_string(&mut text).is_err() {
        eprintln!("moose-relay: cannot read the private key from stdin");
        return ExitCode::FAILURE;
    }
    let Some(private) = keyfile::parse_hex_key(&text) else {
        eprintln!("moose-relay: stdin is not a private key (expected 64 hex digits)");
        return ExitCode::FAILURE;
    };
    match moose_proto::vors::handshake::public_from_private(&private) {
        Ok(public) => {
            println!("{}", hex::encode(public));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("moose-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A start-up refusal the operator must fix, logged through the subscriber (so a JSON log
/// stays JSON), then exit status 78.
fn config_error(e: &dyn std::fmt::Display) -> ExitCode {
    error!("{e}");
    ExitCode::from(EXIT_CONFIG as u8)
}
