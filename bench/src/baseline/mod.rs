//! `moose-baseline`: the minimal forwarder `moose-bench --baseline` measures the relay against.
//!
//! Same wire as the relay, none of its policy: WebSocket lines forwarded by apikey with no
//! key list, no rate limit and no audio-time queues ([`ws`]); VoRS media forwarded by a static
//! table of UDP source addresses with no handshake, crypto or tag check ([`udp`], [`table`]).
//! `--cores N` worker threads, each pinned, each with its own SO_REUSEPORT TCP and UDP socket
//! and one level-triggered epoll loop over them. What is left is the cost of the kernel calls,
//! which is what the relay's figures are compared with. See docs/baseline.md.

mod cpus;
mod sys;
pub mod table;
mod udp;
mod ws;

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use socket2::{Domain, Protocol, Socket, Type};

pub use table::{TableError, VorsTable};

use sys::{Epoll, EventFd};
use udp::UdpForwarder;
use ws::{Mailbox, WsSide};

/// Epoll tokens of a worker's own descriptors; connections count up from `FIRST_CONN`.
const LISTENER: u64 = 0;
const UDP: u64 = 1;
const WAKE: u64 = 2;
const FIRST_CONN: u64 = 16;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Worker threads (at least 1).
    pub cores: usize,
    /// WebSocket listen address; port 0 picks one.
    pub ws_listen: SocketAddr,
    /// VoRS UDP listen address; port 0 picks one.
    pub vors_listen: SocketAddr,
    /// CPUs to pin the workers to, in turn; empty: the CPUs this process may use.
    pub cpus: Vec<usize>,
}

/// A running forwarder. [`Baseline::shutdown`] stops and joins its workers.
#[derive(Debug)]
pub struct Baseline {
    ws_addr: SocketAddr,
    vors_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    mailboxes: Arc<[Mailbox]>,
    workers: Vec<JoinHandle<io::Result<()>>>,
}

impl Baseline {
    /// Binds every worker's sockets, then starts the workers.
    pub fn start(config: &Config, table: VorsTable) -> io::Result<Baseline> {
        let cores = config.cores.max(1);
        let mut listeners = Vec::with_capacity(cores);
        let mut udps = Vec::with_capacity(cores);
        let (mut ws_addr, mut vors_addr) = (config.ws_listen, config.vors_listen);
        for _ in 0..cores {
            // The first socket resolves port 0; the others join its SO_REUSEPORT group.
            let listener: TcpListener = bind(ws_addr, Type::STREAM)?.into();
            ws_addr = listener.local_addr()?;
            listeners.push(listener);
            let udp: UdpSocket = bind(vors_addr, Type::DGRAM)?.into();
            vors_addr = udp.local_addr()?;
            udps.push(udp);
        }
        let mut inboxes = Vec::with_capacity(cores);
        let mut mailboxes = Vec::with_capacity(cores);
        for _ in 0..cores {
            let (tx, rx) = mpsc::channel();
            inboxes.push(rx);
            mailboxes.push(Mailbox {
                tx,
                wake: Arc::new(EventFd::new()?),
            });
        }
        let mailboxes: Arc<[Mailbox]> = mailboxes.into();
        let stop = Arc::new(AtomicBool::new(false));
        let table = Arc::new(table);
        let cpus = if config.cpus.is_empty() {
            cpus::allowed_cpus().unwrap_or_default()
        } else {
            config.cpus.clone()
        };
        let mut workers = Vec::with_capacity(cores);
        let sockets = listeners.into_iter().zip(udps).zip(inboxes);
        for (me, ((listener, udp), inbox)) in sockets.enumerate() {
            let worker = Worker {
                epoll: Epoll::new()?,
                listener,
                udp: UdpForwarder::new(udp, Arc::clone(&table)),
                ws: WsSide::new(me, Arc::clone(&mailboxes), inbox, FIRST_CONN),
                wake: Arc::clone(&mailboxes[me].wake),
                stop: Arc::clone(&stop),
            };
            let cpu = (!cpus.is_empty()).then(|| cpus[me % cpus.len()]);
            workers.push(
                std::thread::Builder::new()
                    .name(format!("baseline-{me}"))
                    .spawn(move || worker.run(cpu))?,
            );
        }
        Ok(Baseline {
            ws_addr,
            vors_addr,
            stop,
            mailboxes,
            workers,
        })
    }

    /// The bound WebSocket address (port 0 resolved).
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws_addr
    }

    /// The bound VoRS UDP address (port 0 resolved).
    pub fn vors_addr(&self) -> SocketAddr {
        self.vors_addr
    }

    /// Stops every worker and waits for them; the first worker error, if any.
    pub fn shutdown(self) -> io::Result<()> {
        self.stop.store(true, Ordering::Release);
        for mailbox in self.mailboxes.iter() {
            mailbox.wake.wake();
        }
        let mut result = Ok(());
        for worker in self.workers {
            let outcome = worker
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a worker panicked")));
            result = result.and(outcome);
        }
        result
    }
}

/// A non-blocking SO_REUSEPORT socket bound to `addr` (listening, for TCP).
fn bind(addr: SocketAddr, kind: Type) -> io::Result<Socket> {
    let protocol = if kind == Type::STREAM {
        Protocol::TCP
    } else {
        Protocol::UDP
    };
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if kind == Type::STREAM {
        socket.listen(1024)?;
    } else {
        // The same buffers the relay asks for (relay/src/sockets.rs), so both meet a burst
        // with the same room.
        let _ = socket.set_recv_buffer_size(UDP_BUFFER);
        let _ = socket.set_send_buffer_size(UDP_BUFFER);
    }
    Ok(socket)
}

/// UDP receive and send buffer asked for, as the relay does.
const UDP_BUFFER: usize = 4 << 20;

/// One thread: its listener, its UDP socket, the lines it owns, one epoll loop.
#[derive(Debug)]
struct Worker {
    epoll: Epoll,
    listener: TcpListener,
    udp: UdpForwarder,
    ws: WsSide,
    wake: Arc<EventFd>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn run(mut self, cpu: Option<usize>) -> io::Result<()> {
        if let Some(cpu) = cpu {
            // Best effort: a cpuset that changed under us leaves the thread unpinned.
            let _ = cpus::pin_to_cpu(cpu);
        }
        self.epoll.add(self.listener.as_raw_fd(), LISTENER, false)?;
        self.epoll.add(self.udp.socket().as_raw_fd(), UDP, false)?;
        self.epoll.add(self.wake.raw_fd(), WAKE, false)?;
        let mut events = Vec::new();
        loop {
            self.epoll.wait(&mut events)?;
            for ev in &events {
                match ev.token {
                    LISTENER => self.ws.on_acceptable(&self.epoll, &self.listener),
                    UDP => self.udp.on_readable(),
                    WAKE => {
                        self.wake.drain();
                        if self.stop.load(Ordering::Acquire) {
                            return Ok(());
                        }
                        self.ws.on_handoffs(&self.epoll);
                    }
                    token => self.ws.on_ready(&self.epoll, token, ev.readable),
                }
            }
        }
    }
}
