//! Starts one pinned glommio executor per core and wires them together.

use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use anyhow::Context as _;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::channels::shared_channel::ConnectedReceiver;
use glommio::{LocalExecutorBuilder, Placement};
use tracing::{error, info, warn};

use crate::accept::spares::SparePool;
use crate::accept::{Acceptor, WhenExhausted};
use crate::cluster::link::{LinkEdge, LinkSender};
use crate::cluster::startup::{self, CoreCluster, StartupError};
use crate::config::{Config, EXIT_CONFIG};
use crate::drain::{self, Lifecycle};
use crate::handoff::Handoff;
use crate::http::{self, admin, upgrade};
use crate::limits::Limits;
use crate::owner::Owners;
use crate::preflight;
use crate::shard::{Shard, Shared};
use crate::sockets::{self, CoreSockets};
use crate::stats::CoreStats;
use crate::sys;
use crate::vors::link::CoreLink;
use crate::vors::{self, keyfile::ServerKey};

/// Hand-offs one core may have in flight to another before the sender waits.
const HANDOFF_QUEUE: usize = 1024;

/// Where the relay listens, known once every socket is bound.
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    pub http: std::net::SocketAddr,
    pub vors: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
}

/// How often each core adds its executor's figures to its counters.
const EXECUTOR_STATS_EVERY: Duration = Duration::from_secs(1);
/// How often each core lets the allocator return freed memory to the OS. mimalloc waits a
/// second (its `purge_delay`) before freed pages may go; this gives them the chance then.
const COLLECT_MEMORY_EVERY: Duration = Duration::from_secs(1);

/// Runs the relay until a stop signal and the drain that follows (see `drain`); returns the
/// process's exit status. `on_ready` is called once every core serves.
pub fn run(
    config: Config,
    vors_key: ServerKey,
    on_ready: impl FnOnce(Listening),
) -> anyhow::Result<i32> {
    // Before any thread starts, so that every thread inherits the mask.
    let signals = sys::block_stop_signals().context("blocking SIGTERM and SIGINT")?;
    let cores = config.cores();
    let bound = sockets::bind_all(
        cores,
        config.listen,
        config.vors_listen,
        config.admin_listen,
    )?;
    let listening = Listening {
        http: bound.http_addr,
        vors: bound.vors_addr,
        admin: bound.admin_addr,
    };
    let mut cluster = match &config.cluster {
        None => None,
        Some(settings) => match startup::start(settings, cores, config.max_members) {
            Ok(started) => Some(started),
            Err(e @ StartupError::KeyMismatch(_)) => {
                error!("{e}");
                return Ok(EXIT_CONFIG);
            }
            Err(e) => return Err(e.into()),
        },
    };
    let handle = cluster.as_ref().map(|c| c.cluster.handle.clone());
    let mut core_clusters: Vec<Option<CoreCluster>> = match &mut cluster {
        Some(started) => std::mem::take(&mut started.cores)
            .into_iter()
            .map(Some)
            .collect(),
        None => (0..cores).map(|_| None).collect(),
    };
    let config = Arc::new(config);
    let vors_key = Arc::new(vors_key);
    let all_stats: Arc<[Arc<CoreStats>]> =
        (0..cores).map(|_| Arc::new(CoreStats::default())).collect();
    let owners = Owners::new(cores, rand::random());
    let mesh = (cores > 1).then(|| MeshBuilder::<Handoff, _>::full(cores, HANDOFF_QUEUE));
    let lifecycle = Arc::new(Lifecycle::default());
    let limits = Arc::new(Limits::new(&config));
    // One spare for each accept loop (HTTP and VoRS per core, and the admin endpoint).
    let spares = Arc::new(SparePool::new(2 * cores + 1));
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut admin = Some(bound.admin);
    let mut executors = Vec::with_capacity(cores);
    for ((core, sockets), cluster) in bound
        .cores
        .into_iter()
        .enumerate()
        .zip(core_clusters.drain(..))
    {
        let start = CoreStart {
            core,
            config: config.clone(),
            all_stats: all_stats.clone(),
            owners,
            mesh: mesh.clone(),
            vors_key: vors_key.clone(),
            shared: Shared {
                lifecycle: lifecycle.clone(),
                limits: limits.clone(),
                spares: spares.clone(),
                cluster: handle.clone(),
            },
            sockets,
            cluster,
            admin: admin.take(),
            ready: ready_tx.clone(),
        };
        let executor = LocalExecutorBuilder::new(Placement::Fixed(config.cpus[core]))
            .name(&format!("moose-core-{core}"))
            .io_memory(preflight::IO_MEMORY)
            .spawn(move || core_main(start))
            .map_err(|e| anyhow::anyhow!("starting the executor of core {core}: {e}"))?;
        executors.push(executor);
    }
    drop(ready_tx);
    for _ in 0..cores {
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .context("a core did not start")?;
    }
    info!(
        cores,
        http = %listening.http,
        vors = %listening.vors,
        admin = %listening.admin,
        "serving"
    );
    on_ready(listening);
    let status = drain::supervise(&signals, &lifecycle, &all_stats, config.drain);
    // A clean stop: this relay's members get DEL on every other relay at once.
    if let Some(started) = &mut cluster {
        started.cluster.stop(true);
    }
    // The executors are not joined: their tasks wait on sockets forever. Returning ends the
    // process, and with it their threads.
    drop(executors);
    Ok(status)
}

/// What one executor starts with.
struct CoreStart {
    core: usize,
    config: Arc<Config>,
    all_stats: Arc<[Arc<CoreStats>]>,
    owners: Owners,
    mesh: Option<MeshBuilder<Handoff, glommio::channels::channel_mesh::Full>>,
    vors_key: Arc<ServerKey>,
    shared: Shared,
    sockets: CoreSockets,
    /// This core's share of the cluster; `None` standalone.
    cluster: Option<CoreCluster>,
    admin: Option<OwnedFd>,
    ready: mpsc::Sender<usize>,
}

async fn core_main(start: CoreStart) {
    let (senders, receivers) = match start.mesh {
        Some(mesh) => match mesh.join().await {
            Ok((senders, receivers)) => (Some(senders), Some(receivers)),
            Err(e) => {
                warn!(core = start.core, error = %e, "joining the core mesh failed");
                return;
            }
        },
        None => (None, None),
    };
    let (link, events) = match start.cluster {
        None => (None, None),
        Some(c) => {
            let core = start.core as u8;
            let socket = Rc::new(sys::glommio_udp(c.link));
            let edge = LinkEdge::new(c.me, core, c.link_key.clone());
            let sender = LinkSender::new(c.me, core, c.link_key);
            (Some(CoreLink::new(socket, edge, sender)), Some(c.events))
        }
    };
    let mut shard = Shard::new(
        start.core,
        start.config,
        start.all_stats,
        start.owners,
        senders,
        start.vors_key,
        start.shared,
    );
    shard.link = link;
    let shard = Rc::new(shard);
    if let Some(mut receivers) = receivers {
        for (_, receiver) in receivers.streams() {
            glommio::spawn_local(receive_handoffs(shard.clone(), receiver)).detach();
        }
    }
    let http_accept = glommio::spawn_local(accept_http(shard.clone(), start.sockets.http));
    if let Some(admin_fd) = start.admin {
        glommio::spawn_local(admin::serve(shard.clone(), admin_fd)).detach();
    }
    let udp = Rc::new(sys::glommio_udp(start.sockets.vors_udp));
    let _ = shard.vors.udp.set(udp);
    glommio::spawn_local(vors::media::receive(shard.clone())).detach();
    if let Some(events) = events {
        glommio::spawn_local(vors::link_in::receive(shard.clone())).detach();
        glommio::spawn_local(vors::event_task::apply_all(shard.clone(), events)).detach();
    }
    glommio::spawn_local(vors::silence::sweep(shard.clone())).detach();
    let vors_accept = glommio::spawn_local(vors::listener::accept(
        shard.clone(),
        start.sockets.vors_tcp,
    ));
    glommio::spawn_local(publish_executor_stats(shard.clone())).detach();
    glommio::spawn_local(collect_freed_memory()).detach();
    shard.stats.accepting.set(1);
    let _ = start.ready.send(start.core);
    // Draining: the accept tasks own the listeners, so cancelling them closes this core's
    // sockets of both reuseport groups; once every core has, new connections are refused.
    // Connections already accepted, hand-offs, UDP and the admin endpoint go on.
    shard.lifecycle.draining().await;
    http_accept.cancel().await;
    vors_accept.cancel().await;
    shard.stats.accepting.set(0);
    info!(core = shard.core, "stopped accepting connections");
    futures_lite::future::pending::<()>().await;
}

/// Hands this core's long-freed memory back to the OS every second, so that the relay's
/// resident memory follows its calls down after a burst instead of staying at the peak.
async fn collect_freed_memory() {
    loop {
        glommio::timer::sleep(COLLECT_MEMORY_EVERY).await;
        sys::collect_freed_memory();
    }
}

/// Adds the executor's own figures to this core's counters every second (glommio hands out
/// the figures since its last call).
async fn publish_executor_stats(shard: Rc<Shard>) {
    let stats = &shard.stats;
    loop {
        glommio::timer::sleep(EXECUTOR_STATS_EVERY).await;
        let executor = glommio::executor().executor_stats();
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        stats
            .executor_task_nanos
            .add(nanos(executor.executor_runtime()));
        stats
            .executor_busy_nanos
            .add(nanos(executor.total_runtime()));
        stats.executor_tasks.add(executor.tasks_executed());
        stats.executor_scheduler_runs.add(executor.scheduler_runs());
        stats
            .vors_handshakes_waiting
            .set(shard.handshakes.waiting() as u64);
    }
}

/// Accepts HTTP connections on this core's socket. A connection from an address already at
/// `--max-connections-per-address` is told 429 (if its socket takes the bytes at once) and
/// closed; out of descriptors, waiting connections are closed at once (see `accept`).
async fn accept_http(shard: Rc<Shard>, listener: OwnedFd) {
    let mut acceptor = Acceptor::new(listener, WhenExhausted::Shed);
    loop {
        let (stream, addr, slot) = acceptor
            .next_admitted(&shard, http::TOO_MANY_CONNECTIONS)
            .await;
        glommio::spawn_local(http::serve(shard.clone(), stream, addr, slot)).detach();
    }
}

async fn receive_handoffs(shard: Rc<Shard>, receiver: ConnectedReceiver<Handoff>) {
    while let Some(handoff) = receiver.recv().await {
        match handoff {
            Handoff::Line { fd, request } => {
                let stream = sys::glommio_stream(fd);
                glommio::spawn_local(upgrade::admit(shard.clone(), stream, request)).detach();
            }
            Handoff::Vors {
                fd,
                session,
                hello,
                slot,
            } => {
                let stream = sys::glommio_stream(fd);
                glommio::spawn_local(vors::member::admit(
                    shard.clone(),
                    stream,
                    session,
                    hello,
                    slot,
                ))
                .detach();
            }
        }
    }
}
