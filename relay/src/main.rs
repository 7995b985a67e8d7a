//! `moose-relay`: the daemon.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use clap::Parser;
use moose_relay::cli::{Cli, Command};
use moose_relay::config::{Config, EXIT_CONFIG};
use moose_relay::vors::keyfile;
use moose_relay::{preflight, runtime, sys};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(command) = cli.command {
        return match command {
            Command::Keygen => keygen(),
            Command::Pubkey => pubkey(),
        };
    }
    let allowed = sys::allowed_cpus().unwrap_or_else(|_| vec![0]);
    let mut config = match Config::from_args(&cli.run, &allowed) {
        Ok(config) => config,
        Err(e) => return config_error(&e),
    };
    if let Err(e) = preflight::check(config.cores()) {
        return config_error(&e);
    }
    let (vors_key, vors_key_made) = match keyfile::load_or_create(&config.vors_key) {
        Ok(loaded) => loaded,
        Err(e) => return config_error(&e),
    };
    let public = hex::encode(vors_key.public);
    if vors_key_made {
        eprintln!(
            "moose-relay: made a new VoRS server key in {}",
            config.vors_key.display()
        );
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
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("moose-relay: {e:#}");
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

fn config_error(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("moose-relay: {e}");
    ExitCode::from(EXIT_CONFIG as u8)
}
