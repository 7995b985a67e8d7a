//! What the forward-latency histogram costs on the hot path: the clock read at receive and at
//! send submission, and one `LatencyHistogram::record` (bucket search and two single-writer
//! counter additions). docs/metrics.md quotes the figures.
//!
//! `cargo run --release -p moose-relay --example latency_cost`

use std::hint::black_box;
use std::time::{Duration, Instant};

use moose_relay::stats::LatencyHistogram;

const ROUNDS: u32 = 5;
const N: u32 = 2_000_000;

fn per_op(f: impl Fn()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..N {
            f();
        }
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(N));
    }
    best
}

fn main() {
    let histogram = LatencyHistogram::default();
    let clock = per_op(|| {
        black_box(Instant::now());
    });
    // Latencies spread over the buckets a real relay sees (a few µs to a few ms).
    let latencies: Vec<Duration> = (0..1024u64)
        .map(|i| Duration::from_nanos(2_000 + (i * 7_919) % 3_000_000))
        .collect();
    let next = std::cell::Cell::new(0usize);
    let record = per_op(|| {
        let i = next.get();
        next.set((i + 1) & 1023);
        histogram.record(black_box(latencies[i]));
    });
    let both = per_op(|| {
        let received = Instant::now();
        histogram.record(black_box(received.elapsed()));
    });
    println!("Instant::now():                       {clock:.1} ns");
    println!("LatencyHistogram::record:             {record:.1} ns");
    println!("receive clock + send clock + record:  {both:.1} ns");
    println!(
        "({} samples recorded; best of {ROUNDS} rounds of {N})",
        histogram.snapshot().count()
    );
}
