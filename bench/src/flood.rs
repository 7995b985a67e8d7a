//! `moose-bench handshake-flood`: VoRS handshakes from many source addresses, to load a
//! relay's handshake path while `moose-bench vors` measures the calls in progress.
//!
//! Every connection comes from the next address of a range (`--from 127.3.0.0/16`: every
//! loopback address is local on Linux, so one machine can play a whole botnet), sends the
//! magic and one message 1 in one write, and closes. The relay reads the bytes before it sees
//! the close, so each connection costs it the handshake work its message 1 asks for:
//!
//! - `garbage`: random bytes of a real message 1's length. They cost the flood nothing and
//!   the relay one X25519 operation and the hashing of the Kyber key before the decryption
//!   fails: the cheapest way to spend a relay's CPU.
//! - `valid`: real messages 1 (a random user joining room `flood`), each used once. The
//!   relay also writes message 2 (a Kyber encapsulation) on the room's owner core. Making
//!   one costs the flood about as much as the relay, so they are made beforehand
//!   (`--pool`), and on the fly once the pool is used up.
//!
//! No connection waits for an answer: the flood is paced by `--rate` (connections per
//! second over every thread; 0: as fast as connecting goes).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use moose_proto::vors::handshake::ClientHandshake;
use moose_proto::vors::hello::Hello;
use moose_proto::vors::netstring;
use moose_proto::vors::server::MAGIC;
use rand::{Rng, RngCore};
use socket2::{Domain, Protocol, Socket, Type};

/// How long one connect may take before the flood gives it up (a full listen backlog makes
/// the kernel retry the SYN after a second).
const CONNECT_WITHIN: Duration = Duration::from_millis(200);

/// What each connection sends after the magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hellos {
    /// Random bytes of a real message 1's length.
    Garbage,
    /// Real messages 1, each used once.
    Valid,
}

impl Hellos {
    pub fn name(self) -> &'static str {
        match self {
            Hellos::Garbage => "garbage",
            Hellos::Valid => "valid",
        }
    }
}

/// A range of IPv4 source addresses, `a.b.c.d/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sources {
    first: u32,
    count: u32,
}

impl Sources {
    /// Parses `a.b.c.d/len` (len 8 to 32).
    pub fn parse(text: &str) -> Result<Sources, String> {
        let (addr, len) = text.split_once('/').unwrap_or((text, "32"));
        let addr: Ipv4Addr = addr.parse().map_err(|e| format!("{text}: {e}"))?;
        let len: u32 = len.parse().map_err(|e| format!("{text}: {e}"))?;
        if !(8..=32).contains(&len) {
            return Err(format!("{text}: the prefix length must be 8 to 32"));
        }
        let count = 1u32 << (32 - len).min(31);
        let first = u32::from(addr) & !(count - 1);
        Ok(Sources { first, count })
    }

    /// The `i`th address of the range, cycling.
    pub fn nth(&self, i: u64) -> IpAddr {
        let offset = (i % u64::from(self.count)) as u32;
        IpAddr::V4(Ipv4Addr::from(self.first.wrapping_add(offset)))
    }
}

/// One flood.
#[derive(Debug, Clone)]
pub struct FloodPlan {
    pub target: SocketAddr,
    pub pubkey: [u8; 32],
    pub from: Sources,
    pub hellos: Hellos,
    /// Connections per second over every thread; 0: no pacing.
    pub rate: f64,
    pub seconds: f64,
    pub threads: usize,
    /// Valid hellos made before the clock starts, over every thread.
    pub pool: usize,
}

/// What a flood did.
#[derive(Debug, Clone, PartialEq)]
pub struct FloodReport {
    /// Connections that sent their magic and message 1.
    pub sent: u64,
    /// Connections that could not be made (or were reset before the write).
    pub failed: u64,
    pub seconds: f64,
}

impl FloodReport {
    pub fn to_json(&self, plan: &FloodPlan) -> String {
        serde_json::json!({
            "hellos": plan.hellos.name(),
            "sent": self.sent,
            "failed": self.failed,
            "seconds": self.seconds,
            "per_second": self.sent as f64 / self.seconds.max(f64::EPSILON),
        })
        .to_string()
    }
}

/// Runs `plan` until its time is up.
pub fn run(plan: &FloodPlan) -> Result<FloodReport, String> {
    let threads = plan.threads.max(1);
    let msg1_len = real_message_1(&plan.pubkey)?.len();
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let pools: Vec<Vec<Vec<u8>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| match plan.hellos {
                    Hellos::Garbage => Ok(Vec::new()),
                    Hellos::Valid => (0..plan.pool.div_ceil(threads))
                        .map(|_| real_message_1(&plan.pubkey))
                        .collect(),
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a thread panicked".into())))
            .collect::<Result<_, String>>()
    })?;
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(plan.seconds.max(0.0));
    std::thread::scope(|scope| {
        for (worker, pool) in pools.into_iter().enumerate() {
            let (sent, failed) = (sent.clone(), failed.clone());
            scope.spawn(move || {
                flood_from(plan, worker, threads, msg1_len, pool, until, &sent, &failed);
            });
        }
    });
    Ok(FloodReport {
        sent: sent.load(Relaxed),
        failed: failed.load(Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One thread's part: every `threads`th connection, from its own addresses.
#[allow(clippy::too_many_arguments)]
fn flood_from(
    plan: &FloodPlan,
    worker: usize,
    threads: usize,
    msg1_len: usize,
    mut pool: Vec<Vec<u8>>,
    until: Instant,
    sent: &AtomicU64,
    failed: &AtomicU64,
) {
    let mut rng = rand::thread_rng();
    let interval = (plan.rate > 0.0).then(|| Duration::from_secs_f64(threads as f64 / plan.rate));
    let started = Instant::now();
    let mut bytes = Vec::with_capacity(MAGIC.len() + msg1_len + 8);
    let mut msg1 = vec![0u8; msg1_len];
    for n in 0u64.. {
        let now = Instant::now();
        if now >= until {
            break;
        }
        if let Some(interval) = interval {
            let due = started + interval.mul_f64(n as f64);
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        bytes.clear();
        bytes.extend_from_slice(MAGIC);
        match plan.hellos {
            Hellos::Garbage => {
                rng.fill_bytes(&mut msg1);
                netstring::encode(&msg1, &mut bytes);
            }
            Hellos::Valid => {
                let fresh = match pool.pop() {
                    Some(msg1) => msg1,
                    None => match real_message_1(&plan.pubkey) {
                        Ok(msg1) => msg1,
                        Err(_) => break,
                    },
                };
                netstring::encode(&fresh, &mut bytes);
            }
        }
        let from = plan.from.nth(n * threads as u64 + worker as u64);
        match send_once(from, plan.target, &bytes) {
            Ok(()) => sent.fetch_add(1, Relaxed),
            Err(_) => failed.fetch_add(1, Relaxed),
        };
    }
}

/// One connection from `from`: `bytes` in one write, then a close.
fn send_once(from: IpAddr, to: SocketAddr, bytes: &[u8]) -> std::io::Result<()> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&to.into(), CONNECT_WITHIN)?;
    let mut stream: TcpStream = socket.into();
    stream.write_all(bytes)
}

/// A real message 1 from a random user for room `flood`, timed now: a pool made before the
/// flood stays within the relay's `--hello-max-skew` (30 s) for a flood shorter than that.
fn real_message_1(pubkey: &[u8; 32]) -> Result<Vec<u8>, String> {
    let username = format!("flood-{:016x}", rand::thread_rng().r#gen::<u64>());
    let hello = Hello {
        username: &username,
        room: "flood",
        password_hash: None,
    };
    let (_, msg1) = ClientHandshake::start(pubkey, &hello, Some(crate::vors_client::wall_clock()))
        .map_err(|e| e.to_string())?;
    Ok(msg1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_cycle_through_their_range() {
        let from = Sources::parse("127.3.0.0/30").expect("a range");
        let got: Vec<IpAddr> = (0..5).map(|i| from.nth(i)).collect();
        let want: Vec<IpAddr> = [
            "127.3.0.0",
            "127.3.0.1",
            "127.3.0.2",
            "127.3.0.3",
            "127.3.0.0",
        ]
        .iter()
        .map(|s| s.parse().expect("an address"))
        .collect();
        assert_eq!(got, want);
        // The host bits of the given address are ignored; a lone address is /32.
        assert_eq!(
            Sources::parse("10.1.2.3/24").expect("range").nth(0),
            IpAddr::from([10, 1, 2, 0])
        );
        assert_eq!(
            Sources::parse("10.1.2.3").expect("one").nth(7),
            IpAddr::from([10, 1, 2, 3])
        );
        assert!(Sources::parse("10.0.0.0/4").is_err());
        assert!(Sources::parse("10.0.0/8").is_err());
    }
}
