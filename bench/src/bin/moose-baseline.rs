//! `moose-baseline`: the minimal forwarder `moose-bench --baseline` runs the same load through
//! (see docs/baseline.md). Prints `listening ws=ADDR vors=ADDR` when ready, runs until SIGTERM,
//! SIGINT or the end of stdin (so a parent that dies takes it along), then exits 0.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use moose_bench::baseline::{Baseline, Config, VorsTable};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Minimal forwarder: the yardstick moose-bench compares the relay to"
)]
struct Args {
    /// Worker threads, each pinned to a CPU (default: the CPUs this process may use).
    #[arg(long, env = "MOOSE_BASELINE_CORES")]
    cores: Option<usize>,
    /// CPUs to pin the workers to, in turn, e.g. `1` or `2,3` (default: the CPUs this process
    /// may use). Lets a comparison give the baseline other CPUs than the load generator's.
    #[arg(long, env = "MOOSE_BASELINE_CPUS", value_delimiter = ',')]
    cpus: Vec<usize>,
    /// Address for WebSocket lines (`GET /ws?apikey=KEY`).
    #[arg(long, env = "MOOSE_BASELINE_WS_LISTEN", default_value = "127.0.0.1:0")]
    ws_listen: SocketAddr,
    /// Address for VoRS media datagrams.
    #[arg(
        long,
        env = "MOOSE_BASELINE_VORS_LISTEN",
        default_value = "127.0.0.1:0"
    )]
    vors_listen: SocketAddr,
    /// Rooms of UDP source addresses: one line per room, `IP:PORT` words separated by spaces.
    #[arg(long, env = "MOOSE_BASELINE_VORS_TABLE")]
    vors_table: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let table = match &args.vors_table {
        Some(path) => VorsTable::load(path)?,
        None => VorsTable::default(),
    };
    let cores = args.cores.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let config = Config {
        cores,
        ws_listen: args.ws_listen,
        vors_listen: args.vors_listen,
        cpus: args.cpus,
    };
    let baseline = Baseline::start(&config, table).context("start the forwarder")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "listening ws={} vors={}",
        baseline.ws_addr(),
        baseline.vors_addr()
    )?;
    stdout.flush()?;
    drop(stdout);
    wait_for_stop().context("wait for a stop signal")?;
    baseline.shutdown().context("stop the forwarder")?;
    Ok(())
}

/// Blocks until SIGTERM, SIGINT or the end of stdin. Both write a byte into one socket pair
/// (the signal handler through signal-hook's self-pipe), so nothing polls.
fn wait_for_stop() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let (mut stopped, notify) = UnixStream::pair()?;
    for signal in [SIGINT, SIGTERM] {
        signal_hook::low_level::pipe::register(signal, notify.try_clone()?)?;
    }
    std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = (&notify).write_all(&[0]);
        })?;
    stopped.read_exact(&mut [0u8; 1])
}
