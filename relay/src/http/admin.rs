//! The admin endpoint (`--admin-listen`, loopback by default): `/metrics` in Prometheus text
//! format, `/healthz` (the process is alive) and `/readyz` (it serves: 503 once draining). It
//! runs on core 0 and reads every core's single-writer counters. docs/metrics.md describes
//! every metric.

use std::fmt::Write as _;
use std::rc::Rc;

use futures_lite::io::AsyncWriteExt;
use std::os::fd::OwnedFd;

use glommio::net::TcpStream;
use moose_proto::http::{self, Parse, Status};

use crate::accept::{Accepted, Acceptor, WhenExhausted};
use crate::limits::ConnectionRefusal;
use crate::limits::handshakes::HandshakeRefusal;
use crate::shard::Shard;
use crate::stats::{CoreStats, Drop, HistogramSnapshot, LATENCY_BOUNDS, VorsDrop};

/// Accepts admin connections for as long as the relay runs. Out of file descriptors, it still
/// answers one request at a time on a spare descriptor's slot (see `accept`), so `/readyz` and
/// `/metrics` stay answerable while the relay sheds everything else.
pub async fn serve(shard: Rc<Shard>, listener: OwnedFd) {
    let mut acceptor = Acceptor::new(listener, WhenExhausted::Serve);
    loop {
        match acceptor.next(&shard).await {
            Accepted::Stream(stream) => {
                glommio::spawn_local(handle(shard.clone(), stream)).detach();
            }
            Accepted::OnSpare(stream) => {
                handle(shard.clone(), stream).await;
                shard.spares.refill();
            }
        }
    }
}

async fn handle(shard: Rc<Shard>, mut stream: TcpStream) {
    let Some((head, head_len)) = super::read_head(&mut stream, shard.config.header_timeout).await
    else {
        return;
    };
    let Ok(Parse::Complete { value: request, .. }) = http::parse_request(&head[..head_len]) else {
        return;
    };
    let (status, content_type, body) = match request.path {
        "/metrics" => (
            Status::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render_metrics(&shard.all_stats, shard.lifecycle.is_draining()),
        ),
        "/healthz" => (Status::OK, "text/plain; charset=utf-8", "ok\n".to_owned()),
        "/readyz" if shard.lifecycle.is_draining() => (
            Status::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "draining\n".to_owned(),
        ),
        "/readyz" => (
            Status::OK,
            "text/plain; charset=utf-8",
            "ready\n".to_owned(),
        ),
        _ => (
            Status::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n".to_owned(),
        ),
    };
    let mut out = Vec::with_capacity(body.len() + 200);
    http::write_response(status, content_type, &[], body.as_bytes(), &mut out);
    // Flushed before the stream is dropped, as `respond` does, so no part of the answer can
    // be left behind when the connection closes.
    if stream.write_all(&out).await.is_ok() {
        let _ = stream.flush().await;
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

/// Nanoseconds as decimal seconds, exactly (`1500` is `0.0000015`): no float rounding noise.
fn seconds(nanos: u64) -> String {
    let text = format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// How a per-core value is written.
#[derive(Clone, Copy)]
enum Unit {
    Count,
    /// Stored in nanoseconds, shown in seconds.
    Nanos,
}

/// A counter per core (`core` label), in base units.
fn per_core(
    out: &mut String,
    name: &str,
    help: &str,
    cores: &[std::sync::Arc<CoreStats>],
    get: impl Fn(&CoreStats) -> u64,
    unit: Unit,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (core, c) in cores.iter().enumerate() {
        let value = match unit {
            Unit::Count => get(c).to_string(),
            Unit::Nanos => seconds(get(c)),
        };
        let _ = writeln!(out, "{name}{{core=\"{core}\"}} {value}");
    }
}

/// The forward-latency histogram of each protocol, summed over cores.
fn latency_histograms(out: &mut String, cores: &[std::sync::Arc<CoreStats>]) {
    let name = "moose_forward_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from a message's receive to the send call that hands it to the \
         kernel, per recipient copy (ws) or per packet (vors).\n# TYPE {name} histogram"
    );
    type Pick = fn(&CoreStats) -> HistogramSnapshot;
    let protocols: [(&str, Pick); 2] = [
        ("ws", |c| c.ws_forward_latency.snapshot()),
        ("vors", |c| c.vors_forward_latency.snapshot()),
    ];
    for (protocol, pick) in protocols {
        let mut sum = HistogramSnapshot::default();
        for c in cores {
            sum.add(&pick(c));
        }
        let mut cumulative = 0;
        for (i, (_, le)) in LATENCY_BOUNDS.iter().enumerate() {
            cumulative += sum.buckets[i];
            let _ = writeln!(
                out,
                "{name}_bucket{{protocol=\"{protocol}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let count = sum.count();
        let _ = writeln!(
            out,
            "{name}_bucket{{protocol=\"{protocol}\",le=\"+Inf\"}} {count}\n\
             {name}_sum{{protocol=\"{protocol}\"}} {}\n\
             {name}_count{{protocol=\"{protocol}\"}} {count}",
            seconds(sum.sum_nanos)
        );
    }
}

/// Prometheus text exposition of every core's counters (base units, `_total` on counters).
pub fn render_metrics(cores: &[std::sync::Arc<CoreStats>], draining: bool) -> String {
    let mut out = String::with_capacity(8192);
    let _ = writeln!(
        out,
        "# HELP moose_draining 1 once a stop signal has started the drain.\n\
         # TYPE moose_draining gauge\nmoose_draining {}",
        u8::from(draining)
    );
    let _ = writeln!(
        out,
        "# HELP moose_cores Executors (one pinned thread each).\n\
         # TYPE moose_cores gauge\nmoose_cores {}",
        cores.len()
    );
    let sum = |f: &dyn Fn(&CoreStats) -> u64| -> u64 { cores.iter().map(|c| f(c)).sum() };
    counter(
        &mut out,
        "moose_ws_messages_in_total",
        "Binary messages received from line peers.",
        sum(&|c| c.ws_messages_in.get()),
    );
    counter(
        &mut out,
        "moose_ws_bytes_in_total",
        "Payload bytes of binary messages received from line peers.",
        sum(&|c| c.ws_bytes_in.get()),
    );
    counter(
        &mut out,
        "moose_ws_frames_out_total",
        "WebSocket frames written to line peers.",
        sum(&|c| c.ws_frames_out.get()),
    );
    counter(
        &mut out,
        "moose_ws_bytes_out_total",
        "Bytes written to line peers, framing included.",
        sum(&|c| c.ws_bytes_out.get()),
    );
    counter(
        &mut out,
        "moose_ws_upgrades_total",
        "Peers admitted to lines.",
        sum(&|c| c.ws_upgrades.get()),
    );
    counter(
        &mut out,
        "moose_ws_handoffs_total",
        "Connections moved to their line's owner core.",
        sum(&|c| c.ws_handoffs.get()),
    );
    counter(
        &mut out,
        "moose_http_requests_total",
        "HTTP requests read.",
        sum(&|c| c.http_requests.get()),
    );
    let _ = writeln!(
        out,
        "# HELP moose_ws_dropped_total Messages and connections dropped or refused, by reason.\n\
         # TYPE moose_ws_dropped_total counter"
    );
    for reason in Drop::ALL {
        let value = sum(&|c| c.drops(reason));
        let _ = writeln!(
            out,
            "moose_ws_dropped_total{{reason=\"{}\"}} {value}",
            reason.label()
        );
    }
    let _ = writeln!(
        out,
        "# HELP moose_connections_refused_total TCP connections (HTTP/WebSocket and VoRS) \
         closed as soon as they were accepted, by reason.\n\
         # TYPE moose_connections_refused_total counter"
    );
    for reason in ConnectionRefusal::ALL {
        let value = sum(&|c| c.connections_refused(reason));
        let _ = writeln!(
            out,
            "moose_connections_refused_total{{reason=\"{}\"}} {value}",
            reason.label()
        );
    }
    let _ = writeln!(
        out,
        "# HELP moose_vors_handshakes_refused_total VoRS connections closed before any \
         handshake work, by the limit they hit.\n\
         # TYPE moose_vors_handshakes_refused_total counter"
    );
    for reason in HandshakeRefusal::ALL {
        let value = sum(&|c| c.handshakes_refused(reason));
        let _ = writeln!(
            out,
            "moose_vors_handshakes_refused_total{{reason=\"{}\"}} {value}",
            reason.label()
        );
    }
    counter(
        &mut out,
        "moose_vors_server_full_total",
        "VoRS members refused because their new room would pass --max-rooms.",
        sum(&|c| c.vors_server_full.get()),
    );
    counter(
        &mut out,
        "moose_vors_handshakes_total",
        "VoRS handshakes that reached the room decision.",
        sum(&|c| c.vors_handshakes.get()),
    );
    counter(
        &mut out,
        "moose_vors_handshake_failures_total",
        "VoRS connections that ended before the room decision.",
        sum(&|c| c.vors_handshake_failures.get()),
    );
    counter(
        &mut out,
        "moose_vors_handoffs_total",
        "VoRS connections moved to their room's owner core.",
        sum(&|c| c.vors_handoffs.get()),
    );
    counter(
        &mut out,
        "moose_vors_joins_total",
        "VoRS members admitted.",
        sum(&|c| c.vors_joins.get()),
    );
    counter(
        &mut out,
        "moose_vors_rejects_total",
        "VoRS members refused (room full, name taken, wrong password, server full).",
        sum(&|c| c.vors_rejects.get()),
    );
    counter(
        &mut out,
        "moose_vors_datagrams_in_total",
        "UDP datagrams received.",
        sum(&|c| c.vors_datagrams_in.get()),
    );
    counter(
        &mut out,
        "moose_vors_bytes_in_total",
        "UDP bytes received.",
        sum(&|c| c.vors_bytes_in.get()),
    );
    counter(
        &mut out,
        "moose_vors_packets_forwarded_total",
        "Media packets verified and forwarded.",
        sum(&|c| c.vors_packets_forwarded.get()),
    );
    counter(
        &mut out,
        "moose_vors_datagrams_out_total",
        "Media copies sent to members.",
        sum(&|c| c.vors_datagrams_out.get()),
    );
    counter(
        &mut out,
        "moose_vors_bytes_out_total",
        "UDP bytes sent.",
        sum(&|c| c.vors_bytes_out.get()),
    );
    counter(
        &mut out,
        "moose_vors_send_dropped_total",
        "Media copies dropped because the socket buffer was full.",
        sum(&|c| c.vors_send_dropped.get()),
    );
    let _ = writeln!(
        out,
        "# HELP moose_vors_dropped_total Datagrams dropped at the edge, by reason.\n\
         # TYPE moose_vors_dropped_total counter"
    );
    for reason in VorsDrop::ALL {
        let value = sum(&|c| c.vors_drops(reason));
        let _ = writeln!(
            out,
            "moose_vors_dropped_total{{reason=\"{}\"}} {value}",
            reason.label()
        );
    }
    for (name, help, get) in [
        (
            "moose_vors_rooms",
            "VoRS rooms open, per core.",
            (|c: &CoreStats| c.vors_rooms.get()) as fn(&CoreStats) -> u64,
        ),
        (
            "moose_vors_members",
            "VoRS members, per core.",
            |c: &CoreStats| c.vors_members.get(),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (core, c) in cores.iter().enumerate() {
            let _ = writeln!(out, "{name}{{core=\"{core}\"}} {}", get(c));
        }
    }
    let _ = writeln!(
        out,
        "# HELP moose_lines Moose lines open, per core.\n# TYPE moose_lines gauge"
    );
    for (core, c) in cores.iter().enumerate() {
        let _ = writeln!(out, "moose_lines{{core=\"{core}\"}} {}", c.lines.get());
    }
    let _ = writeln!(
        out,
        "# HELP moose_line_peers Peers on Moose lines, per core.\n# TYPE moose_line_peers gauge"
    );
    for (core, c) in cores.iter().enumerate() {
        let _ = writeln!(
            out,
            "moose_line_peers{{core=\"{core}\"}} {}",
            c.line_peers.get()
        );
    }
    let _ = writeln!(
        out,
        "# HELP moose_accepting 1 while the core's HTTP and VoRS TCP listeners are open, 0 \
         once the drain closed them.\n# TYPE moose_accepting gauge"
    );
    for (core, c) in cores.iter().enumerate() {
        let _ = writeln!(
            out,
            "moose_accepting{{core=\"{core}\"}} {}",
            c.accepting.get()
        );
    }
    latency_histograms(&mut out, cores);
    per_core(
        &mut out,
        "moose_executor_task_seconds_total",
        "Time the core's executor spent running tasks (glommio executor_runtime).",
        cores,
        |c| c.executor_task_nanos.get(),
        Unit::Nanos,
    );
    per_core(
        &mut out,
        "moose_executor_busy_seconds_total",
        "Time the core's executor spent running tasks and polling for I/O, not sleeping \
         (glommio total_runtime).",
        cores,
        |c| c.executor_busy_nanos.get(),
        Unit::Nanos,
    );
    per_core(
        &mut out,
        "moose_executor_tasks_total",
        "Task polls the core's executor ran.",
        cores,
        |c| c.executor_tasks.get(),
        Unit::Count,
    );
    per_core(
        &mut out,
        "moose_executor_scheduler_runs_total",
        "Times the core's scheduler picked a task queue to run.",
        cores,
        |c| c.executor_scheduler_runs.get(),
        Unit::Count,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn seconds_are_exact_decimals() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(1_500), "0.0000015");
        assert_eq!(seconds(3_003_000), "0.003003");
        assert_eq!(seconds(2_000_000_000), "2");
        assert_eq!(seconds(12_345_678_901), "12.345678901");
    }

    #[test]
    fn metrics_sum_cores_and_label_reasons() {
        let cores: Vec<Arc<CoreStats>> = (0..2).map(|_| Arc::new(CoreStats::default())).collect();
        cores[0].ws_messages_in.add(3);
        cores[1].ws_messages_in.add(4);
        cores[1].dropped(Drop::SlowReceiver);
        cores[1].lines.set(5);
        cores[0]
            .ws_forward_latency
            .record(std::time::Duration::from_micros(3));
        cores[1]
            .ws_forward_latency
            .record(std::time::Duration::from_millis(3));
        let text = render_metrics(&cores, false);
        assert!(text.contains("\nmoose_ws_messages_in_total 7\n"), "{text}");
        assert!(text.contains("\nmoose_draining 0\n"), "{text}");
        let bucket = |le: &str| {
            format!("moose_forward_latency_seconds_bucket{{protocol=\"ws\",le=\"{le}\"}} ")
        };
        assert!(
            text.contains(&format!("{}0\n", bucket("0.000002"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{}1\n", bucket("0.000005"))),
            "{text}"
        );
        assert!(text.contains(&format!("{}2\n", bucket("0.005"))), "{text}");
        assert!(text.contains(&format!("{}2\n", bucket("+Inf"))), "{text}");
        assert!(text.contains("moose_forward_latency_seconds_count{protocol=\"ws\"} 2\n"));
        assert!(text.contains("moose_forward_latency_seconds_sum{protocol=\"ws\"} 0.003003\n"));
        assert!(text.contains("moose_ws_dropped_total{reason=\"slow_receiver\"} 1\n"));
        assert!(text.contains("moose_lines{core=\"1\"} 5\n"));
        cores[0].connection_refused(ConnectionRefusal::NoDescriptors);
        cores[1].connection_refused(ConnectionRefusal::NoDescriptors);
        cores[1].handshake_refused(HandshakeRefusal::Rate);
        let text = render_metrics(&cores, false);
        assert!(
            text.contains("moose_connections_refused_total{reason=\"no_descriptors\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("moose_connections_refused_total{reason=\"per_address\"} 0\n"));
        assert!(text.contains("moose_vors_handshakes_refused_total{reason=\"rate\"} 1\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("moose_"), "{line}");
        }
    }
}
