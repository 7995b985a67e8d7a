//! Measures the two ways a VoRS datagram can reach its room's owner core (docs/architecture.md,
//! "Getting datagrams to the owner core"), side by side in one run:
//!
//! - **kernel steering**: a reuseport CBPF program picks the socket by the first byte. Cost:
//!   the program, run by the kernel per datagram. Measured as CPU per datagram received through
//!   a two-socket reuseport group, with and without the program attached.
//! - **cross-core hand-off**: the datagram lands on any core, which sends it to the owner core
//!   over a glommio shared channel. Cost: the channel hop, paid on top of the receive. Measured
//!   as CPU per message moved between two pinned executors.
//!
//! Run: `cargo run --release -p moose-relay --example steering_cost` (prints a table; medians of
//! interleaved rounds). Uses loopback only.
#![allow(clippy::unwrap_used)]

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};
use socket2::{Domain, Socket, Type};

const DATAGRAMS: u64 = 200_000;
const MESSAGES: u64 = 1_000_000;
const ROUNDS: usize = 5;

/// CPU time (user + system) of the whole process so far.
fn process_cpu() -> Duration {
    let usage = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name: utime is the 14th field, stime the 15th (clock ticks).
    let after = &usage[usage.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// CPU nanoseconds per datagram received through a reuseport group of two sockets.
fn receive_cost(steered: bool) -> f64 {
    let group: Vec<UdpSocket> = {
        let first = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        first.set_reuse_port(true).unwrap();
        first
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        first.set_recv_buffer_size(8 << 20).unwrap();
        let addr = first.local_addr().unwrap();
        let second = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        second.set_reuse_port(true).unwrap();
        second.bind(&addr).unwrap();
        second.set_recv_buffer_size(8 << 20).unwrap();
        vec![first.into(), second.into()]
    };
    if steered {
        moose_relay::sys::steer_udp_by_first_byte(group[0].as_raw_fd(), 2).unwrap();
    }
    let target = group[0].local_addr().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let receivers: Vec<_> = group
        .into_iter()
        .map(|socket| {
            let (received, done) = (received.clone(), done.clone());
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !done.load(Ordering::Relaxed) {
                    if socket.recv(&mut buf).is_ok() {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut packet = [0u8; 76]; // a 24 kbit/s Opus frame with the VoRS header and tag
    let cpu0 = process_cpu();
    let start = Instant::now();
    for i in 0..DATAGRAMS {
        packet[0] = i as u8;
        // Pace lightly so receive buffers never overflow: we measure cost, not loss.
        while i - received.load(Ordering::Relaxed) > 20_000 {
            thread::yield_now();
        }
        sender.send_to(&packet, target).unwrap();
    }
    while received.load(Ordering::Relaxed) < DATAGRAMS && start.elapsed() < Duration::from_secs(20)
    {
        thread::sleep(Duration::from_millis(1));
    }
    let cpu = process_cpu() - cpu0;
    done.store(true, Ordering::Relaxed);
    for r in receivers {
        r.join().unwrap();
    }
    cpu.as_nanos() as f64 / received.load(Ordering::Relaxed) as f64
}

/// CPU nanoseconds per 76-byte message moved from one pinned executor to another.
fn handoff_cost() -> f64 {
    let (sender, receiver) = shared_channel::new_bounded::<([u8; 76], u16)>(4096);
    let cpu0 = process_cpu();
    let producer = LocalExecutorBuilder::new(Placement::Fixed(0))
        .io_memory(512 << 10)
        .spawn(move || async move {
            let sender = sender.connect().await;
            for i in 0..MESSAGES {
                let mut packet = [0u8; 76];
                packet[0] = i as u8;
                sender.send((packet, 12978)).await.unwrap();
            }
        })
        .unwrap();
    let consumer = LocalExecutorBuilder::new(Placement::Fixed(1))
        .io_memory(512 << 10)
        .spawn(move || async move {
            let receiver = receiver.connect().await;
            let mut n = 0u64;
            let mut check = 0u64;
            while let Some((packet, _)) = receiver.recv().await {
                check = check.wrapping_add(u64::from(packet[0]));
                n += 1;
            }
            (n, check)
        })
        .unwrap();
    producer.join().unwrap();
    let (n, _) = consumer.join().unwrap();
    let cpu = process_cpu() - cpu0;
    cpu.as_nanos() as f64 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let (mut plain, mut steered, mut handoff) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        plain.push(receive_cost(false));
        steered.push(receive_cost(true));
        handoff.push(handoff_cost());
    }
    let (plain, steered, handoff) = (median(plain), median(steered), median(handoff));
    println!("CPU per datagram / message, median of {ROUNDS} interleaved rounds:");
    println!("  send + receive, kernel hash only     {plain:8.0} ns");
    println!(
        "  send + receive, CBPF steering        {steered:8.0} ns  ({:+.0} ns)",
        steered - plain
    );
    println!("  cross-core hand-off (glommio channel){handoff:8.0} ns  on top of the receive");
}
