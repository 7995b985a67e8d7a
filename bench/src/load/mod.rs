//! `moose-bench`: many Moose or VoRS streams against a relay, every delivery checked and
//! timed.
//!
//! A run has three phases, driven by [`run`] on the calling thread:
//!
//! 1. **Setup.** `--threads` workers each open their share of the streams (stream `i` goes to
//!    worker `i % threads`): WebSocket upgrades, or VoRS handshakes until every member has
//!    heard of every other (ADD). Nothing is sent before every stream is ready, so no
//!    message can meet a room that is still forming.
//!    With `--idle-seconds`, every stream then stays idle that long and the server's memory is
//!    sampled (it is also sampled before setup).
//! 2. **Load.** From one shared start time every stream sends on its own phase (spread evenly
//!    over the period) for `--seconds`; every delivery is checked whole ([`stamp`]),
//!    attributed to its sender and timed.
//! 3. **Grace.** Sending stops; receivers keep reading for a short grace, then everything
//!    not received counts as lost.
//!
//! Workers are event loops over non-blocking sockets (`mio`, epoll): a few threads drive
//! thousands of connections. Payloads are built once per stream; a send rewrites the 20-byte
//! stamp and writes. Each worker counts into its own [`tally::Tally`]; the tallies are
//! merged at the end, and sampled once a second for the progress line.

pub mod baseline;
mod outbuf;
pub mod plot;
pub mod procstat;
pub mod ramp;
mod refusal;
pub mod report;
pub mod schedule;
pub mod spread;
pub mod stamp;
pub mod tally;
mod vors;
mod ws;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use hdrhistogram::Histogram;
use moose_proto::vors::keys::SessionKeys;

use schedule::{Clock, Due, Schedule, phase_ns};
use tally::{Tally, new_histogram};

/// One Moose PCM message every 2.56 ms (390.625 per second).
pub const PCM_PERIOD_NS: u64 = 2_560_000;
/// One VoRS packet every 20 ms frame.
pub const VORS_PERIOD_NS: u64 = 20_000_000;
/// How often the progress line is refreshed.
const PROGRESS_EVERY_NS: u64 = 1_000_000_000;
/// How often workers look at session timers and the shared run times.
const HOUSEKEEPING_NS: u64 = 10_000_000;
/// Delay between "everyone is ready" and the first send, so every worker sees the start
/// time before it passes.
const START_DELAY_NS: u64 = 50_000_000;

/// Which kind of call the streams are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Moose lines: 1024-byte binary WebSocket messages, 390.625 per second.
    Ws,
    /// VoRS rooms: encrypted Opus-sized UDP packets, 50 per second.
    Vors,
}

impl Protocol {
    /// The name used on the command line and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Ws => "ws",
            Protocol::Vors => "vors",
        }
    }

    fn period_ns(self) -> u64 {
        match self {
            Protocol::Ws => PCM_PERIOD_NS,
            Protocol::Vors => VORS_PERIOD_NS,
        }
    }
}

/// What to run: how many streams, in rooms of what size, for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Streams, each its own connection and key; a multiple of `room_size`.
    pub streams: usize,
    /// Members per Moose line or VoRS room.
    pub room_size: usize,
    /// Sending time.
    pub seconds: f64,
    /// Worker threads.
    pub threads: usize,
    /// How long receivers keep reading after the last send.
    pub grace: Duration,
    /// How long setup (connections, upgrades, handshakes) may take.
    pub setup_timeout: Duration,
    /// Print the progress line on stderr.
    pub progress: bool,
    /// How long every stream stays idle (set up, not sending) before the load starts; the
    /// server's memory is sampled at its end.
    pub idle: Duration,
}

/// Where the streams go and how they identify themselves.
#[derive(Debug)]
pub enum Endpoint {
    /// A server keeping the Moose line contract.
    Ws {
        /// Address to connect to.
        addr: SocketAddr,
        /// The `Host` header (the target as given).
        host: String,
        /// The `Origin` header.
        origin: String,
        /// One apikey per line (room), in room order.
        line_keys: Vec<String>,
        /// Source addresses: stream `i` leaves from `binds[i % len]` (empty: the kernel's
        /// choice).
        binds: Vec<IpAddr>,
    },
    /// VoRS servers: full handshakes. With several, each room's members go round them
    /// ([`spread`]).
    Vors {
        /// Address of each server's TCP and UDP port.
        targets: Vec<SocketAddr>,
        /// Each server's static X25519 public key, in `targets`' order (one: all share it).
        pubkeys: Vec<[u8; 32]>,
        /// Prefix of the room names, unique per run.
        room_prefix: String,
        /// Source addresses: stream `i` leaves from `binds[i % len]` (empty: the kernel's
        /// choice).
        binds: Vec<IpAddr>,
        /// Whether each room's members go round the targets or each room joins one whole.
        place: spread::Place,
    },
    /// A plain UDP forwarder (`moose-baseline`): no handshake, keys chosen by the bench.
    VorsBaseline {
        /// Its UDP address.
        addr: SocketAddr,
        /// Each stream's socket, bound already (the forwarder's table lists their addresses);
        /// each worker takes its streams' sockets.
        sockets: Vec<Option<UdpSocket>>,
        /// Each stream's media keys; its SID is its place in its room.
        keys: Vec<SessionKeys>,
    },
}

impl Endpoint {
    /// The protocol this endpoint speaks.
    pub fn protocol(&self) -> Protocol {
        match self {
            Endpoint::Ws { .. } => Protocol::Ws,
            Endpoint::Vors { .. } | Endpoint::VorsBaseline { .. } => Protocol::Vors,
        }
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// One stream failed: connection, upgrade, handshake, or the server closed it.
    #[error("stream {stream}: {what}")]
    Stream {
        /// The stream's index.
        stream: usize,
        /// What happened, with the server's status or reason when it gave one.
        what: String,
    },
    /// Not every stream was ready in time.
    #[error("only {ready} of {streams} streams were ready after {seconds} s")]
    SetupTimeout {
        /// Streams ready.
        ready: usize,
        /// Streams planned.
        streams: usize,
        /// The setup time allowed.
        seconds: u64,
    },
    /// An I/O error outside any one stream (polling, threads).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The plan cannot be run as given.
    #[error("{0}")]
    Plan(String),
}

impl LoadError {
    pub(crate) fn stream(stream: usize, what: impl Into<String>) -> Self {
        LoadError::Stream {
            stream,
            what: what.into(),
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| LoadError::Io { what, source }
    }
}

/// EMFILE: the process's descriptor limit.
const EMFILE: i32 = 24;

/// A hint for errors the user can fix: running out of file descriptors.
pub(crate) fn fd_hint(e: &std::io::Error) -> &'static str {
    if e.raw_os_error() == Some(EMFILE) {
        " (raise the limit with `ulimit -n`: a ws stream needs 1 descriptor, a vors stream 2)"
    } else {
        ""
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Every worker's counters, merged.
    pub tally: Tally,
    /// Streams that ran.
    pub streams: usize,
    /// Members per room.
    pub room_size: usize,
    /// The server's CPU time (user + system) per delivered message, ns, when it was
    /// measured.
    pub server_cpu_ns_per_message: Option<f64>,
    /// The server's resident memory before setup and with every stream idle, when measured.
    pub server_memory: Option<ServerMemory>,
    /// Whether the streams were spread over several targets, so that the tally's same-relay
    /// and cross-relay split means something.
    pub spread: bool,
}

/// The server's resident memory (`VmRSS`) around setup, KiB.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerMemory {
    /// Before the first stream connected.
    pub before_kib: u64,
    /// With every stream set up and idle, at the end of `--idle-seconds`.
    pub idle_kib: u64,
}

impl Outcome {
    /// Deliveries expected: every message reaches every other member of its room.
    pub fn expected(&self) -> u64 {
        self.tally.sent * (self.room_size as u64).saturating_sub(1)
    }

    /// Deliveries that never arrived (or arrived after the grace).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.tally.received)
    }
}

/// State every worker shares with the driver.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) clock: Clock,
    /// Streams that finished setup.
    ready: AtomicUsize,
    /// Run times on `clock`; 0 until the driver sets them.
    start_ns: AtomicU64,
    end_ns: AtomicU64,
    finish_ns: AtomicU64,
    /// Set when the run is abandoned (another worker failed, or setup timed out).
    abort: AtomicBool,
    /// Each worker's latest progress sample.
    samples: Mutex<Receiver<Sample>>,
}

/// A worker's progress since its previous sample.
#[derive(Debug)]
pub(crate) struct Sample {
    sent: u64,
    received: u64,
    corrupted: u64,
    interval: Histogram<u64>,
}

/// What each worker is given.
pub(crate) struct WorkerSetup {
    pub(crate) shared: Arc<Shared>,
    /// The streams this worker drives (global indices).
    pub(crate) streams: Vec<usize>,
    pub(crate) total_streams: usize,
    pub(crate) room_size: usize,
    samples: Sender<Sample>,
}

impl WorkerSetup {
    /// Marks one stream ready.
    pub(crate) fn ready(&self) {
        self.shared.ready.fetch_add(1, Ordering::Release);
    }

    /// The pacer for this worker's streams; `slot` is the stream's place in `streams`.
    pub(crate) fn pacer(&self, protocol: Protocol) -> Pacer {
        let period = protocol.period_ns();
        let phases = self
            .streams
            .iter()
            .enumerate()
            .map(|(slot, &i)| (phase_ns(i, self.total_streams, period), slot))
            .collect();
        Pacer {
            shared: Arc::clone(&self.shared),
            phases: Some(phases),
            period_ns: period,
            schedule: None,
            next_sample_ns: 0,
            samples: self.samples.clone(),
            reported: (0, 0, 0),
        }
    }

    /// The first stream of stream `i`'s room.
    pub(crate) fn room_first(&self, i: usize) -> usize {
        i / self.room_size * self.room_size
    }
}

/// A worker's view of the run's timeline: when to send, when to report, when to stop.
pub(crate) struct Pacer {
    shared: Arc<Shared>,
    phases: Option<Vec<(u64, usize)>>,
    period_ns: u64,
    schedule: Option<Schedule>,
    next_sample_ns: u64,
    samples: Sender<Sample>,
    reported: (u64, u64, u64),
}

impl Pacer {
    /// Whether the run has started (the driver set the times).
    fn started(&mut self) -> bool {
        if self.schedule.is_some() {
            return true;
        }
        let start = self.shared.start_ns.load(Ordering::Acquire);
        if start == 0 {
            return false;
        }
        let end = self.shared.end_ns.load(Ordering::Acquire);
        let phases = self.phases.take().unwrap_or_default();
        self.schedule = Some(Schedule::new(phases, self.period_ns, start, end));
        self.next_sample_ns = start + PROGRESS_EVERY_NS;
        true
    }

    /// The next send due by `now_ns`.
    pub(crate) fn pop_due(&mut self, now_ns: u64) -> Option<Due> {
        if !self.started() {
            return None;
        }
        self.schedule.as_mut()?.pop_due(now_ns)
    }

    /// Whether the run (sending and grace) is over, or abandoned.
    pub(crate) fn finished(&mut self, now_ns: u64) -> bool {
        if self.shared.abort.load(Ordering::Acquire) {
            return true;
        }
        self.started() && now_ns >= self.shared.finish_ns.load(Ordering::Acquire)
    }

    /// Whether sending is over (a connection closing now is the end, not a failure).
    pub(crate) fn past_end(&self, now_ns: u64) -> bool {
        let end = self.shared.end_ns.load(Ordering::Acquire);
        end != 0 && now_ns >= end
    }

    /// How long the worker may wait for socket events.
    pub(crate) fn wait(&self, now_ns: u64) -> Duration {
        let mut until = now_ns + HOUSEKEEPING_NS;
        if let Some(s) = &self.schedule {
            if let Some(due) = s.next_due() {
                until = until.min(due);
            }
            until = until.min(self.next_sample_ns);
            until = until.min(self.shared.finish_ns.load(Ordering::Acquire));
        }
        Duration::from_nanos(until.saturating_sub(now_ns))
    }

    /// Sends a progress sample when one is due.
    pub(crate) fn sample(&mut self, now_ns: u64, tally: &mut Tally) {
        if self.schedule.is_none() || now_ns < self.next_sample_ns {
            return;
        }
        self.next_sample_ns += PROGRESS_EVERY_NS;
        let (sent, received, corrupted) = self.reported;
        let interval = std::mem::replace(&mut tally.interval, new_histogram());
        let _ = self.samples.send(Sample {
            sent: tally.sent - sent,
            received: tally.received - received,
            corrupted: tally.corrupted - corrupted,
            interval,
        });
        self.reported = (tally.sent, tally.received, tally.corrupted);
    }
}

/// Runs `plan` against `endpoint`. `server_pid`, when known, is the process whose CPU time
/// is measured over the load and grace phases.
pub fn run(plan: &Plan, endpoint: Endpoint, server_pid: Option<u32>) -> Result<Outcome, LoadError> {
    validate(plan)?;
    let protocol = endpoint.protocol();
    let spread = matches!(&endpoint, Endpoint::Vors { targets, .. } if targets.len() > 1);
    let rss_before = server_pid.and_then(procstat::rss_kib);
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(Shared {
        clock: Clock::new(),
        ready: AtomicUsize::new(0),
        start_ns: AtomicU64::new(0),
        end_ns: AtomicU64::new(0),
        finish_ns: AtomicU64::new(0),
        abort: AtomicBool::new(false),
        samples: Mutex::new(rx),
    });
    let threads = plan.threads.clamp(1, plan.streams);
    let endpoint = Arc::new(Mutex::new(endpoint));
    let mut workers = Vec::with_capacity(threads);
    for w in 0..threads {
        let setup = WorkerSetup {
            shared: Arc::clone(&shared),
            streams: (w..plan.streams).step_by(threads).collect(),
            total_streams: plan.streams,
            room_size: plan.room_size,
            samples: tx.clone(),
        };
        let endpoint = Arc::clone(&endpoint);
        let shared = Arc::clone(&shared);
        let handle = thread::Builder::new()
            .name(format!("moose-bench-{w}"))
            .spawn(move || {
                let result = match protocol {
                    Protocol::Ws => ws::worker(setup, &endpoint),
                    Protocol::Vors => vors::worker(setup, &endpoint),
                };
                if result.is_err() {
                    // The first failure ends the run for everyone.
                    shared.abort.store(true, Ordering::Release);
                }
                result
            })
            .map_err(LoadError::io("start a worker thread"))?;
        workers.push(handle);
    }
    drop(tx);

    let outcome = drive(plan, &shared, &workers, server_pid);
    if outcome.is_err() {
        shared.abort.store(true, Ordering::Release);
    }
    let mut tally = Tally::default();
    let mut first_error = None;
    for handle in workers {
        match handle.join() {
            Ok(Ok(t)) => tally.merge(&t),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(LoadError::Plan("a worker thread panicked".into()));
            }
        }
    }
    // A worker's own error says more than the driver's "setup failed".
    if let Some(e) = first_error {
        return Err(e);
    }
    let (cpu_ns, rss_idle) = outcome?;
    let mut outcome = Outcome {
        tally,
        streams: plan.streams,
        room_size: plan.room_size,
        server_cpu_ns_per_message: None,
        spread,
        server_memory: rss_before
            .zip(rss_idle)
            .map(|(before_kib, idle_kib)| ServerMemory {
                before_kib,
                idle_kib,
            }),
    };
    if let Some(ns) = cpu_ns
        && outcome.tally.received > 0
    {
        outcome.server_cpu_ns_per_message = Some(ns as f64 / outcome.tally.received as f64);
    }
    Ok(outcome)
}

fn validate(plan: &Plan) -> Result<(), LoadError> {
    if plan.room_size < 2 {
        return Err(LoadError::Plan(
            "--room-size must be at least 2 (a room of one forwards nothing)".into(),
        ));
    }
    if plan.streams == 0 || plan.streams % plan.room_size != 0 {
        return Err(LoadError::Plan(format!(
            "--streams ({}) must be a positive multiple of --room-size ({})",
            plan.streams, plan.room_size
        )));
    }
    if !(plan.seconds > 0.0 && plan.seconds.is_finite()) {
        return Err(LoadError::Plan("--seconds must be positive".into()));
    }
    Ok(())
}

/// Waits for setup, sets the run's times, prints progress, and returns the server's CPU ns
/// over the run and its resident KiB with every stream idle, each when measured. Any worker
/// failing ends it early (its error is the one reported).
fn drive(
    plan: &Plan,
    shared: &Shared,
    workers: &[thread::JoinHandle<Result<Tally, LoadError>>],
    server_pid: Option<u32>,
) -> Result<(Option<u64>, Option<u64>), LoadError> {
    let clock = shared.clock;
    let setup_deadline = clock.now_ns() + plan.setup_timeout.as_nanos() as u64;
    let poll = Duration::from_millis(5);
    loop {
        let ready = shared.ready.load(Ordering::Acquire);
        if ready >= plan.streams {
            break;
        }
        if workers.iter().any(|w| w.is_finished()) {
            return Err(LoadError::Plan("a worker stopped during setup".into()));
        }
        if clock.now_ns() > setup_deadline {
            return Err(LoadError::SetupTimeout {
                ready,
                streams: plan.streams,
                seconds: plan.setup_timeout.as_secs(),
            });
        }
        thread::sleep(poll);
    }
    // The idle time is part of what is measured (memory once the setup has settled), not a
    // wait for an event; workers keep answering keepalives meanwhile.
    if !plan.idle.is_zero() {
        thread::sleep(plan.idle);
        if workers.iter().any(|w| w.is_finished()) {
            return Err(LoadError::Plan("a worker stopped while idle".into()));
        }
    }
    let rss_idle = server_pid.and_then(procstat::rss_kib);

    let start = clock.now_ns() + START_DELAY_NS;
    let end = start + (plan.seconds * 1e9) as u64;
    let finish = end + plan.grace.as_nanos() as u64;
    shared.end_ns.store(end, Ordering::Release);
    shared.finish_ns.store(finish, Ordering::Release);
    shared.start_ns.store(start, Ordering::Release);
    let cpu_before = server_pid.and_then(procstat::cpu_ns);

    let mut progress = report::Progress::new(plan.room_size);
    let samples = shared
        .samples
        .lock()
        .map_err(|_| LoadError::Plan("progress channel poisoned".into()))?;
    let mut next_line = start + PROGRESS_EVERY_NS + PROGRESS_EVERY_NS / 10;
    loop {
        let now = clock.now_ns();
        if now >= finish || workers.iter().all(|w| w.is_finished()) {
            break;
        }
        if workers.iter().any(|w| w.is_finished()) {
            // A worker failed mid-run; stop the others and report its error.
            return Err(LoadError::Plan("a worker stopped during the run".into()));
        }
        let wait = Duration::from_nanos(next_line.min(finish).saturating_sub(now));
        thread::sleep(wait.min(Duration::from_millis(100)));
        if clock.now_ns() >= next_line {
            while let Ok(sample) = samples.try_recv() {
                progress.add(&sample);
            }
            if plan.progress {
                eprintln!("{}", progress.line((clock.now_ns() - start) as f64 / 1e9));
            }
            next_line += PROGRESS_EVERY_NS;
        }
    }
    let cpu_after = server_pid.and_then(procstat::cpu_ns);
    let cpu = cpu_before.zip(cpu_after).map(|(a, b)| b.saturating_sub(a));
    Ok((cpu, rss_idle))
}
