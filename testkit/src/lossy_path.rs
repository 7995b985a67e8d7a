//! A lossy network path in front of the real relay, for one member: the member's
//! `--server` is this path's address, whose TCP port splices to the relay's VoRS port and
//! whose UDP port passes datagrams both ways, dropping every `drop_every`-th media packet on
//! its way to the member (and delaying each by a random 0 to `jitter` ms, as a congested hop
//! does), or holding the relay's control bytes back for a while so that media overtakes
//! them. The relay and the call are the real ones; only the wire loses or
//! delays packets, as a bad Wi-Fi hop or a slow proxy would.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use moose_proto::vors::packet::COOKIE_LEN;

use crate::rng::Rng;

/// How long a UDP read waits before the path's threads look at their stop flag again.
const POLL: Duration = Duration::from_millis(50);

/// The path's address and what it did so far; it stops passing datagrams on drop.
#[derive(Debug)]
pub struct LossyPath {
    /// Where the member connects (TCP and UDP on the same port, as the relay listens).
    pub addr: SocketAddr,
    dropped: Arc<AtomicU64>,
    passed: Arc<AtomicU64>,
    overtaking: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl LossyPath {
    /// Opens the path to `relay` (its VoRS address); `drop_every` must be at least 2.
    pub fn start(relay: SocketAddr, drop_every: u64) -> LossyPath {
        assert!(drop_every >= 2, "dropping every packet is no call");
        LossyPath::open(relay, drop_every, Duration::ZERO, Duration::ZERO)
    }

    /// Like [`LossyPath::start`], and every datagram to the member also waits a random time
    /// from 0 to `jitter` (uniform; a packet may overtake the one before it).
    pub fn jittery(relay: SocketAddr, drop_every: u64, jitter: Duration) -> LossyPath {
        assert!(drop_every >= 2, "dropping every packet is no call");
        LossyPath::open(relay, drop_every, Duration::ZERO, jitter)
    }

    /// Opens a path to `relay` that loses nothing but delivers the relay's TCP bytes
    /// `delay` late: a newcomer's media then reaches the member before its ADD.
    pub fn slow_control(relay: SocketAddr, delay: Duration) -> LossyPath {
        LossyPath::open(relay, u64::MAX, delay, Duration::ZERO)
    }

    fn open(
        relay: SocketAddr,
        drop_every: u64,
        control_delay: Duration,
        jitter: Duration,
    ) -> LossyPath {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind path tcp");
        let addr = listener.local_addr().expect("path addr");
        // The member's UDP socket is connected to `addr`: replies must come from it.
        let front = UdpSocket::bind(addr).expect("bind path udp on the tcp port");
        let back = UdpSocket::bind("127.0.0.1:0").expect("bind path udp toward the relay");
        for socket in [&front, &back] {
            socket.set_read_timeout(Some(POLL)).expect("udp timeout");
        }
        let path = LossyPath {
            addr,
            dropped: Arc::new(AtomicU64::new(0)),
            passed: Arc::new(AtomicU64::new(0)),
            overtaking: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        // Relay bytes read but not yet delivered to the member.
        let control_in_flight = Arc::new(AtomicU64::new(0));
        let in_flight = Arc::clone(&control_in_flight);
        thread::spawn(move || splice_tcp(listener, relay, control_delay, in_flight));
        let member: Arc<Mutex<Option<SocketAddr>>> = Arc::default();

        // Member → relay: everything (cookies, keepalives, media), from one source address
        // that the relay registers as the member's.
        let (to_relay, from_member) = (
            back.try_clone().expect("clone udp"),
            front.try_clone().expect("clone udp"),
        );
        let (seen, stop) = (Arc::clone(&member), Arc::clone(&path.stop));
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = from_member.recv_from(&mut buf) {
                    *seen.lock().expect("member lock") = Some(from);
                    let _ = to_relay.send_to(&buf[..n], relay);
                }
            }
        });

        // Relay → member: media packets, every `drop_every`-th one lost.
        let (dropped, passed, overtaking, stop) = (
            Arc::clone(&path.dropped),
            Arc::clone(&path.passed),
            Arc::clone(&path.overtaking),
            Arc::clone(&path.stop),
        );
        let to_member = jitter_line(front, Arc::clone(&member), jitter);
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut media = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, _)) = back.recv_from(&mut buf) else {
                    continue;
                };
                if n > COOKIE_LEN {
                    media += 1;
                    if media % drop_every == 0 {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    passed.fetch_add(1, Ordering::Relaxed);
                    if control_in_flight.load(Ordering::Relaxed) > 0 {
                        overtaking.fetch_add(1, Ordering::Relaxed);
                    }
                }
                to_member(&buf[..n]);
            }
        });
        path
    }

    /// Media packets lost on the way to the member so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Media packets passed to the member so far.
    pub fn passed(&self) -> u64 {
        self.passed.load(Ordering::Relaxed)
    }

    /// Media packets passed to the member while control bytes sent before them were still
    /// held back: each reached the member ahead of control the relay had sent earlier.
    pub fn overtaking(&self) -> u64 {
        self.overtaking.load(Ordering::Relaxed)
    }
}

impl Drop for LossyPath {
    fn drop(&mut self) {
        // The UDP threads end within one read timeout; the TCP splices end with their
        // connections, which the member's exit closes.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends one datagram on to the member.
type SendToMember = Box<dyn Fn(&[u8]) + Send>;

/// How datagrams reach the member: at once, or each after a random delay below `jitter`
/// (a thread of its own releases them when their time comes).
fn jitter_line(
    front: UdpSocket,
    member: Arc<Mutex<Option<SocketAddr>>>,
    jitter: Duration,
) -> SendToMember {
    let send = move |socket: &UdpSocket, datagram: &[u8]| {
        if let Some(to) = *member.lock().expect("member lock") {
            let _ = socket.send_to(datagram, to);
        }
    };
    if jitter.is_zero() {
        return Box::new(move |datagram| send(&front, datagram));
    }
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        // Datagrams in flight, released in the order of their time.
        let mut in_flight: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>> = BinaryHeap::new();
        let mut order = 0u64;
        loop {
            let now = Instant::now();
            while in_flight
                .peek()
                .is_some_and(|Reverse((at, _, _))| *at <= now)
            {
                if let Some(Reverse((_, _, datagram))) = in_flight.pop() {
                    send(&front, &datagram);
                }
            }
            let wait = in_flight.peek().map_or(POLL, |Reverse((at, _, _))| {
                at.saturating_duration_since(now)
            });
            match rx.recv_timeout(wait) {
                Ok((at, datagram)) => {
                    order += 1;
                    in_flight.push(Reverse((at, order, datagram)));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
    });
    let rng = Mutex::new(Rng::from_clock());
    let jitter_us = u64::try_from(jitter.as_micros()).unwrap_or(u64::MAX);
    Box::new(move |datagram| {
        let delay = rng.lock().expect("rng lock").below(jitter_us + 1);
        let at = Instant::now() + Duration::from_micros(delay);
        let _ = tx.send((at, datagram.to_vec()));
    })
}

/// Joins each accepted connection to a fresh one to the relay, byte for byte both ways,
/// delivering the relay's bytes `delay` after they were read.
fn splice_tcp(
    listener: TcpListener,
    relay: SocketAddr,
    delay: Duration,
    in_flight: Arc<AtomicU64>,
) {
    for member in listener.incoming() {
        let Ok(member) = member else { continue };
        let Ok(upstream) = TcpStream::connect(relay) else {
            continue;
        };
        let _ = member.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (Ok(member2), Ok(upstream2)) = (member.try_clone(), upstream.try_clone()) else {
            continue;
        };
        thread::spawn(move || pipe(member, upstream));
        if delay.is_zero() {
            thread::spawn(move || pipe(upstream2, member2));
        } else {
            let in_flight = Arc::clone(&in_flight);
            thread::spawn(move || delay_line(upstream2, member2, delay, in_flight));
        }
    }
}

/// Like [`pipe`], but each chunk read is written `delay` after it was read: a constant
/// extra latency on the control path, with no effect on throughput.
fn delay_line(mut from: TcpStream, mut to: TcpStream, delay: Duration, in_flight: Arc<AtomicU64>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let counter = Arc::clone(&in_flight);
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            counter.fetch_add(1, Ordering::Relaxed);
            if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Read);
    });
    for (read_at, chunk) in rx {
        // The delay being simulated, not a wait for an event.
        thread::sleep((read_at + delay).saturating_duration_since(Instant::now()));
        let written = to.write_all(&chunk);
        in_flight.fetch_sub(1, Ordering::Relaxed);
        if written.is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Copies `from` into `to` until EOF or an error, then closes `to`'s write side so the
/// other end sees the close as it happened.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
