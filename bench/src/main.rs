//! `moose-bench`: the load generator and latency reporter.
//!
//! ```text
//! moose-bench ws   --target HOST:PORT --streams N --room-size K --seconds S [--json FILE]
//! moose-bench vors --target HOST:PORT[,HOST:PORT...] --pubkey HEX[,HEX...] --streams N ...
//! moose-bench handshake-flood --target HOST:PORT --pubkey HEX --from 127.3.0.0/16 ...
//! ```
//!
//! Drives N streams in rooms of K (Moose PCM lines, or VoRS rooms), checks and times every
//! delivery, prints a progress line every second on stderr and a table on stdout, and
//! writes the same figures as JSON. See docs/benchmarks.md.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use moose_bench::bind::parse_bind_ip;
use moose_bench::flood::{self, FloodPlan, Hellos, Sources};
use moose_bench::load::baseline::{self, Baseline};
use moose_bench::load::plot::{self, Curve};
use moose_bench::load::ramp::{self, Side, Slo, Steps};
use moose_bench::load::report::{Report, Run};
use moose_bench::load::spread::Place;
use moose_bench::load::{self, Endpoint, Plan, Protocol, procstat};
use moose_proto::vors::keys::SessionKeys;
use rand::Rng;

#[derive(Debug, Parser)]
#[command(
    name = "moose-bench",
    version,
    about = "Load generator and latency reporter for Moose lines and VoRS rooms"
)]
struct Cli {
    #[command(subcommand)]
    protocol: ProtocolArgs,
}

#[derive(Debug, Subcommand)]
enum ProtocolArgs {
    /// Moose PCM streams over WebSocket (1024-byte messages, 390.625 per second each).
    Ws {
        #[command(flatten)]
        common: Common,
        /// The apikey of a line; repeat for more lines (one per room, in order). Without it
        /// each room gets a random key, which a relay run with `--open` accepts.
        #[arg(long = "apikey", env = "MOOSE_BENCH_APIKEY", value_delimiter = ',')]
        apikeys: Vec<String>,
        /// The `Origin` header sent with every upgrade [default: http://TARGET].
        #[arg(long, env = "MOOSE_BENCH_ORIGIN")]
        origin: Option<String>,
    },
    /// VoRS v4 streams (full handshakes; 20 ms Opus-sized packets at about 24 kbit/s).
    Vors {
        #[command(flatten)]
        common: Common,
        /// The server's static X25519 public key, 64 hex digits (the relay prints it as
        /// `vors_pubkey=` on its listening line); with several targets, one for all or one
        /// per target, comma-separated.
        #[arg(long, env = "MOOSE_BENCH_PUBKEY")]
        pubkey: String,
        /// With several targets: `members` sends member i of each room to the (i mod n)-th
        /// target (rooms spread over the relays); `rooms` sends room r whole to the (r mod
        /// n)-th (every room local to one relay, the same relays loaded alike).
        #[arg(long, env = "MOOSE_BENCH_PLACE", value_enum, default_value_t = Place::Members)]
        place: Place,
    },
    /// VoRS handshakes from many source addresses, each connection sending the magic and one
    /// message 1, then closing: load for a relay's handshake path while another moose-bench
    /// measures the calls in progress.
    HandshakeFlood(FloodArgs),
}

#[derive(Debug, Args)]
struct FloodArgs {
    /// The relay's VoRS address, HOST:PORT.
    #[arg(long, env = "MOOSE_BENCH_TARGET")]
    target: String,
    /// The server's static X25519 public key, 64 hex digits.
    #[arg(long, env = "MOOSE_BENCH_PUBKEY")]
    pubkey: String,
    /// Source addresses, a.b.c.d/len: each connection comes from the next one (every
    /// 127.0.0.0/8 address is local on Linux).
    #[arg(long, default_value = "127.3.0.0/16")]
    from: String,
    /// `garbage` (random bytes: one X25519 operation for the relay, nothing for the flood) or
    /// `valid` (real messages 1 for room `flood`: message 2 too).
    #[arg(long, default_value = "garbage", value_parser = ["garbage", "valid"])]
    hellos: String,
    /// Connections per second over every thread (0: as fast as they connect).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Seconds of flooding.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Threads [default: the CPUs this process may use].
    #[arg(long)]
    threads: Option<usize>,
    /// Valid messages 1 made before the flood starts (then on the fly).
    #[arg(long, default_value_t = 2000)]
    pool: usize,
    /// Write the results as JSON to FILE.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct Common {
    /// The server, HOST:PORT (the HTTP port for ws, the VoRS port for vors). vors takes
    /// several, comma-separated: member i of each room joins the (i mod n)-th, and the report
    /// splits same-relay from cross-relay deliveries.
    #[arg(long, env = "MOOSE_BENCH_TARGET")]
    target: String,
    /// Source IP addresses, comma-separated: stream i leaves from the (i mod n)-th, TCP and
    /// UDP alike (every 127.0.0.0/8 address is local on Linux), so that a balancer hashing on
    /// the source spreads the streams. Not for --baseline's own runs.
    #[arg(long, env = "MOOSE_BENCH_BIND", value_delimiter = ',', value_parser = parse_bind_ip)]
    bind: Vec<IpAddr>,
    /// Streams, each with its own connection and key; a multiple of --room-size.
    #[arg(long, env = "MOOSE_BENCH_STREAMS", default_value_t = 2)]
    streams: usize,
    /// Members per line or room.
    #[arg(long, env = "MOOSE_BENCH_ROOM_SIZE", default_value_t = 2)]
    room_size: usize,
    /// Seconds of sending (each ramp step: --ramp-step-seconds).
    #[arg(long, env = "MOOSE_BENCH_SECONDS", default_value_t = 10.0)]
    seconds: f64,
    /// Worker threads [default: the CPUs this process may use].
    #[arg(long, env = "MOOSE_BENCH_THREADS")]
    threads: Option<usize>,
    /// Write the results as JSON to FILE.
    #[arg(long, env = "MOOSE_BENCH_JSON")]
    json: Option<PathBuf>,
    /// Draw the latency percentile curve to FILE (SVG).
    #[arg(long, env = "MOOSE_BENCH_PLOT")]
    plot: Option<PathBuf>,
    /// The relay's process id, for its CPU time per message [default: the local process
    /// listening on the target's port, if any].
    #[arg(long, env = "MOOSE_BENCH_RELAY_PID")]
    relay_pid: Option<u32>,
    /// How long receivers keep reading after the last send, ms.
    #[arg(long, env = "MOOSE_BENCH_GRACE_MS", default_value_t = 1000)]
    grace_ms: u64,
    /// Seconds every stream stays set up and idle before sending starts; the server's
    /// resident memory (`relay_memory_kib`) is sampled at their end.
    #[arg(long, env = "MOOSE_BENCH_IDLE_SECONDS", default_value_t = 0.0)]
    idle_seconds: f64,
    /// How long connecting and joining every stream may take, s.
    #[arg(long, env = "MOOSE_BENCH_SETUP_TIMEOUT", default_value_t = 60)]
    setup_timeout: u64,
    /// No progress line.
    #[arg(long, short, env = "MOOSE_BENCH_QUIET")]
    quiet: bool,

    /// Raise the streams step by step until the SLO breaks; report `max_streams` (with
    /// --baseline, the baseline's too).
    #[arg(long, env = "MOOSE_BENCH_RAMP")]
    ramp: bool,
    /// First ramp step's streams [default: --streams].
    #[arg(long, env = "MOOSE_BENCH_RAMP_START")]
    ramp_start: Option<usize>,
    /// Streams added per ramp step [default: --streams].
    #[arg(long, env = "MOOSE_BENCH_RAMP_STEP")]
    ramp_step: Option<usize>,
    /// Seconds of sending per ramp step.
    #[arg(long, env = "MOOSE_BENCH_RAMP_STEP_SECONDS", default_value_t = 5.0)]
    ramp_step_seconds: f64,
    /// Most streams a ramp tries.
    #[arg(long, env = "MOOSE_BENCH_RAMP_MAX", default_value_t = 100_000)]
    ramp_max: usize,
    /// SLO: largest loss, in percent of expected deliveries.
    #[arg(long, env = "MOOSE_BENCH_SLO_LOSS_PERCENT", default_value_t = 0.1)]
    slo_loss_percent: f64,
    /// SLO: largest p99 latency, ms.
    #[arg(long, env = "MOOSE_BENCH_SLO_P99_MS", default_value_t = 5.0)]
    slo_p99_ms: f64,

    /// Run the same load against `moose-baseline` (a minimal forwarder, started here) and
    /// report both, side by side, with the ratio. With --ramp both ramp, step by step, each
    /// until it breaks the SLO, and the report gives both `max_streams`.
    #[arg(long, env = "MOOSE_BENCH_BASELINE")]
    baseline: bool,
    /// Cores for `moose-baseline` [default: the CPUs this process may use].
    #[arg(long, env = "MOOSE_BENCH_BASELINE_CORES")]
    baseline_cores: Option<usize>,
    /// CPUs to pin `moose-baseline`'s workers to, e.g. `0` [default: the CPUs this process
    /// may use]. With `taskset` on the relay and the bench, gives each its own CPUs.
    #[arg(long, env = "MOOSE_BENCH_BASELINE_CPUS", value_delimiter = ',')]
    baseline_cpus: Vec<usize>,
}

/// Where a measurement goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Against {
    Target,
    Baseline,
}

struct Bench {
    protocol: Protocol,
    common: Common,
    /// The first target: ws's only one, and where the server process is looked for.
    target: SocketAddr,
    /// Every vors target, in `--target` order.
    targets: Vec<SocketAddr>,
    /// One key per target, or one for all.
    pubkeys: Vec<[u8; 32]>,
    apikeys: Vec<String>,
    origin: String,
    binds: Vec<IpAddr>,
    /// How vors streams are placed on several targets.
    place: Place,
    relay_pid: Option<u32>,
    cpus: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("moose-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let (protocol, common, apikeys, origin, pubkeys, place) = match cli.protocol {
        ProtocolArgs::HandshakeFlood(args) => return run_flood(&args),
        ProtocolArgs::Ws {
            common,
            apikeys,
            origin,
        } => {
            let origin = origin.unwrap_or_else(|| format!("http://{}", common.target));
            (
                Protocol::Ws,
                common,
                apikeys,
                origin,
                Vec::new(),
                Place::Members,
            )
        }
        ProtocolArgs::Vors {
            common,
            pubkey,
            place,
        } => {
            let keys = pubkey
                .split(',')
                .map(parse_pubkey)
                .collect::<anyhow::Result<Vec<_>>>()?;
            (
                Protocol::Vors,
                common,
                Vec::new(),
                String::new(),
                keys,
                place,
            )
        }
    };
    let targets = common
        .target
        .split(',')
        .map(resolve_target)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let target = targets[0];
    if targets.len() > 1 && protocol == Protocol::Ws {
        bail!("--target: ws takes one server");
    }
    if protocol == Protocol::Vors && pubkeys.len() != 1 && pubkeys.len() != targets.len() {
        bail!(
            "--pubkey: {} keys for {} targets (give one for all, or one per target)",
            pubkeys.len(),
            targets.len()
        );
    }
    if common.baseline {
        baseline::binary()?;
    }
    // One process's CPU time per message over deliveries that several relays made would be
    // meaningless: with several distinct targets only --relay-pid says whose to measure.
    let distinct = targets
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let relay_pid = common.relay_pid.or_else(|| {
        (distinct == 1)
            .then(|| procstat::find_listener(target))
            .flatten()
    });
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bench = Bench {
        protocol,
        target,
        targets,
        apikeys,
        origin,
        pubkeys,
        binds: common.bind.clone(),
        place,
        relay_pid,
        cpus,
        common,
    };
    if !bench.common.quiet {
        match relay_pid {
            Some(pid) => eprintln!("moose-bench: server process {pid}: measuring its CPU time"),
            None => eprintln!("moose-bench: server process unknown: no CPU time per message"),
        }
    }

    let c = &bench.common;
    let (report, curves) = if c.ramp {
        let steps = Steps {
            start: c.ramp_start.unwrap_or(c.streams),
            step: c.ramp_step.unwrap_or(c.streams),
            max: c.ramp_max,
        };
        let slo = Slo {
            max_loss: c.slo_loss_percent / 100.0,
            max_p99_us: c.slo_p99_ms * 1000.0,
        };
        if c.baseline {
            // Each server's histogram at its best step so far, as the ramp picks `best`: the
            // last step within the SLO, else the first.
            let (mut relay_h, mut baseline_h) = (None, None);
            let result = ramp::ramp_side_by_side(steps, slo, |side, n| {
                let (against, slot) = match side {
                    Side::Relay => (Against::Target, &mut relay_h),
                    Side::Baseline => (Against::Baseline, &mut baseline_h),
                };
                let (run, h) = bench.measure(n, c.ramp_step_seconds, against)?;
                let ok = slo.met_by(&run);
                bench.tell_step(against, n, &run, ok);
                if ok || slot.is_none() {
                    *slot = Some(h);
                }
                Ok(run)
            })?;
            let relay = result.relay.best.context("the ramp ran no step")?;
            let base = result.baseline.best.context("the ramp ran no step")?;
            let mut report = Report::new(relay);
            report.max_streams = Some(result.relay.max_streams);
            report.ramp = result.relay.steps;
            let report =
                report.with_baseline_ramp(base, result.baseline.max_streams, result.baseline.steps);
            (report, vec![("relay", relay_h), ("baseline", baseline_h)])
        } else {
            let mut best_h = None;
            let result = ramp::ramp(steps, slo, |n| {
                let (run, h) = bench.measure(n, c.ramp_step_seconds, Against::Target)?;
                let ok = slo.met_by(&run);
                bench.tell_step(Against::Target, n, &run, ok);
                if ok || best_h.is_none() {
                    best_h = Some(h);
                }
                Ok(run)
            })?;
            let best = result.best.context("the ramp ran no step")?;
            let mut report = Report::new(best);
            report.max_streams = Some(result.max_streams);
            report.ramp = result.steps;
            (report, vec![("relay", best_h)])
        }
    } else {
        let (run, h) = bench.measure(c.streams, c.seconds, Against::Target)?;
        let mut report = Report::new(run);
        let mut curves = vec![("relay", Some(h))];
        if c.baseline {
            let (base, h) = bench.measure(c.streams, c.seconds, Against::Baseline)?;
            report = report.with_baseline(base);
            curves.push(("baseline", Some(h)));
        }
        (report, curves)
    };

    print!("{}", report.table());
    if let Some(path) = &c.json {
        std::fs::write(path, report.to_json() + "\n")
            .with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(path) = &c.plot {
        let curves: Vec<Curve<'_>> = curves
            .iter()
            .filter_map(|(label, h)| h.as_ref().map(|histogram| Curve { label, histogram }))
            .collect();
        let title = format!(
            "moose-bench {}: {} streams in rooms of {}",
            protocol.name(),
            report.run.streams,
            report.run.room_size
        );
        std::fs::write(path, plot::svg(&title, &curves))
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// The address `--target` names.
fn resolve_target(target: &str) -> anyhow::Result<SocketAddr> {
    target
        .to_socket_addrs()
        .with_context(|| format!("--target {target}"))?
        .next()
        .with_context(|| format!("--target {target}: no address"))
}

/// `moose-bench handshake-flood`: one flood, then a line on stdout (and the JSON).
fn run_flood(args: &FloodArgs) -> anyhow::Result<()> {
    let plan = FloodPlan {
        target: resolve_target(&args.target)?,
        pubkey: parse_pubkey(&args.pubkey)?,
        from: Sources::parse(&args.from).map_err(|e| anyhow::anyhow!("--from {e}"))?,
        hellos: if args.hellos == "valid" {
            Hellos::Valid
        } else {
            Hellos::Garbage
        },
        rate: args.rate,
        seconds: args.seconds,
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        pool: args.pool,
    };
    let report = flood::run(&plan).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "handshake flood ({} hellos from {}): {} sent, {} failed, in {:.1} s ({:.0} per second)",
        plan.hellos.name(),
        args.from,
        report.sent,
        report.failed,
        report.seconds,
        report.sent as f64 / report.seconds.max(f64::EPSILON)
    );
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json(&plan) + "\n")
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

impl Bench {
    /// The progress line of one ramp step.
    fn tell_step(&self, against: Against, streams: usize, run: &Run, ok: bool) {
        if self.common.quiet {
            return;
        }
        let who = match against {
            Against::Target => "relay",
            Against::Baseline => "baseline",
        };
        eprintln!(
            "moose-bench: ramp step {streams} streams, {who}: p99 {} µs, loss {:.3} %, {}",
            run.latency_us.p99,
            run.loss_ratio() * 100.0,
            if ok { "within SLO" } else { "SLO broken" }
        );
    }

    /// One complete run of `streams` streams for `seconds`, against the target or a
    /// baseline started for it.
    fn measure(
        &self,
        streams: usize,
        seconds: f64,
        against: Against,
    ) -> Result<(Run, Histogram<u64>), load::LoadError> {
        let c = &self.common;
        let plan = Plan {
            streams,
            room_size: c.room_size,
            seconds,
            threads: c.threads.unwrap_or(self.cpus).max(1),
            grace: Duration::from_millis(c.grace_ms),
            setup_timeout: Duration::from_secs(c.setup_timeout),
            progress: !c.quiet,
            idle: Duration::try_from_secs_f64(c.idle_seconds)
                .map_err(|_| load::LoadError::Plan("--idle-seconds must be zero or more".into()))?,
        };
        let rooms = streams / c.room_size.max(1);
        if !c.quiet {
            let what = match against {
                Against::Target => format!("{} at {}", self.protocol.name(), c.target),
                Against::Baseline => format!("{} at moose-baseline", self.protocol.name()),
            };
            eprintln!(
                "moose-bench: {what}: {streams} streams in {rooms} rooms of {}, {seconds} s",
                c.room_size
            );
        }
        let outcome = match (against, self.protocol) {
            (Against::Target, Protocol::Ws) => {
                let line_keys = if self.apikeys.is_empty() {
                    random_keys(rooms)
                } else if self.apikeys.len() >= rooms {
                    self.apikeys.clone()
                } else {
                    return Err(load::LoadError::Plan(format!(
                        "{rooms} lines need {rooms} apikeys, {} given",
                        self.apikeys.len()
                    )));
                };
                let endpoint = Endpoint::Ws {
                    addr: self.target,
                    host: c.target.clone(),
                    origin: self.origin.clone(),
                    line_keys,
                    binds: self.binds.clone(),
                };
                load::run(&plan, endpoint, self.relay_pid)?
            }
            (Against::Target, Protocol::Vors) => {
                let endpoint = Endpoint::Vors {
                    targets: self.targets.clone(),
                    pubkeys: self.pubkeys.clone(),
                    room_prefix: format!("bench-{:08x}", rand::thread_rng().r#gen::<u32>()),
                    binds: self.binds.clone(),
                    place: self.place,
                };
                load::run(&plan, endpoint, self.relay_pid)?
            }
            (Against::Baseline, Protocol::Ws) => {
                let cores = c.baseline_cores.unwrap_or(self.cpus);
                let forwarder = Baseline::start_on(cores, &c.baseline_cpus, None)?;
                let endpoint = Endpoint::Ws {
                    addr: forwarder.ws,
                    host: forwarder.ws.to_string(),
                    origin: format!("http://{}", forwarder.ws),
                    line_keys: random_keys(rooms),
                    binds: Vec::new(),
                };
                load::run(&plan, endpoint, Some(forwarder.pid()))?
            }
            (Against::Baseline, Protocol::Vors) => {
                let cores = c.baseline_cores.unwrap_or(self.cpus);
                let (sockets, table) = baseline::bind_members(streams, c.room_size)?;
                let forwarder = Baseline::start_on(cores, &c.baseline_cpus, Some(&table))?;
                for socket in &sockets {
                    socket
                        .connect(forwarder.vors)
                        .map_err(load::LoadError::io("connect a UDP socket"))?;
                }
                let mut rng = rand::thread_rng();
                let keys = (0..streams)
                    .map(|_| {
                        let mut wire = [0u8; 48];
                        rng.fill(&mut wire[..]);
                        SessionKeys::from_wire(&wire)
                    })
                    .collect();
                let endpoint = Endpoint::VorsBaseline {
                    addr: forwarder.vors,
                    sockets: sockets.into_iter().map(Some).collect(),
                    keys,
                };
                load::run(&plan, endpoint, Some(forwarder.pid()))?
            }
        };
        let run = Run::of(self.protocol, seconds, &outcome);
        Ok((run, outcome.tally.latency))
    }
}

/// One random, well-formed apikey per line (a relay with `--open` opens a line for each).
fn random_keys(lines: usize) -> Vec<String> {
    let mut rng = rand::thread_rng();
    (0..lines)
        .map(|_| format!("bench-{}", hex::encode(rng.r#gen::<[u8; 16]>())))
        .collect()
}

fn parse_pubkey(text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(text.trim()).context("--pubkey is not hex")?;
    match <[u8; 32]>::try_from(bytes.as_slice()) {
        Ok(key) => Ok(key),
        Err(_) => bail!(
            "--pubkey must be 32 bytes (64 hex digits), got {}",
            bytes.len()
        ),
    }
}
