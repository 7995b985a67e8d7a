//! Every metric family the relay exports, in exposition order: the one list to extend when a
//! counter is added to `stats::CoreStats` (and a row to add to docs/metrics.md).

use super::Samples::{ByLabel, Histograms, PerCore, Process, Total};
use super::Unit::{Count, Nanos};
use super::{Family, Samples, Type, process};
use crate::cluster::stats::LinkDrop;
use crate::limits::handshakes::{HandshakeRefusal, HandshakeStage};
use crate::limits::replay::HelloRefusal;
use crate::limits::{AddressTable, ConnectionRefusal};
use crate::outbound::queue::Cut;
use crate::stats::{ControlKind, Drop, VorsDrop};

const fn counter(name: &'static str, help: &'static str, samples: Samples) -> Family {
    Family {
        name,
        help,
        kind: Type::Counter,
        samples,
    }
}

const fn gauge(name: &'static str, help: &'static str, samples: Samples) -> Family {
    Family {
        name,
        help,
        kind: Type::Gauge,
        samples,
    }
}

pub(crate) const FAMILIES: &[Family] = &[
    gauge(
        "moose_draining",
        "1 once a stop signal has started the drain.",
        Process(|scrape| u64::from(scrape.draining)),
    ),
    gauge(
        "moose_cores",
        "Executors (one pinned thread each).",
        Process(|scrape| scrape.cores.len() as u64),
    ),
    gauge(
        "moose_process_max_fds",
        "The soft limit on open file descriptors (RLIMIT_NOFILE).",
        Process(|_| process::max_fds()),
    ),
    gauge(
        "moose_process_resident_memory_bytes",
        "Resident memory of the process (VmRSS).",
        Process(|_| process::resident_memory_bytes()),
    ),
    gauge(
        "moose_process_memory_limit_bytes",
        "memory.max of the relay's cgroup, where the OOM killer ends it; 0 when there is none.",
        Process(|_| process::memory_limit_bytes()),
    ),
    counter(
        "moose_ws_messages_in_total",
        "Binary messages received from line peers.",
        Total(|c| c.ws_messages_in.get()),
    ),
    counter(
        "moose_ws_bytes_in_total",
        "Payload bytes of binary messages received from line peers.",
        Total(|c| c.ws_bytes_in.get()),
    ),
    counter(
        "moose_ws_frames_out_total",
        "WebSocket frames written to line peers.",
        Total(|c| c.ws_frames_out.get()),
    ),
    counter(
        "moose_ws_bytes_out_total",
        "Bytes written to line peers, framing included.",
        Total(|c| c.ws_bytes_out.get()),
    ),
    counter(
        "moose_ws_upgrades_total",
        "Peers admitted to lines.",
        Total(|c| c.ws_upgrades.get()),
    ),
    counter(
        "moose_ws_handoffs_total",
        "Connections moved to their line's owner core.",
        Total(|c| c.ws_handoffs.get()),
    ),
    counter(
        "moose_http_requests_total",
        "HTTP requests read.",
        Total(|c| c.http_requests.get()),
    ),
    counter(
        "moose_ws_dropped_total",
        "Messages and connections dropped or refused, by reason.",
        ByLabel {
            label: "reason",
            read: |c| Drop::ALL.map(|r| (r.label(), c.drops(r))).to_vec(),
        },
    ),
    counter(
        "moose_connections_refused_total",
        "TCP connections (HTTP/WebSocket and VoRS) closed as soon as they were accepted, by \
         reason.",
        ByLabel {
            label: "reason",
            read: |c| {
                ConnectionRefusal::ALL
                    .map(|r| (r.label(), c.connections_refused(r)))
                    .to_vec()
            },
        },
    ),
    counter(
        "moose_connections_cut_total",
        "Connections reset because their peer stopped taking what the relay had for it, by \
         reason: a control backlog past its bound, or no byte taken for --write-stall-timeout.",
        ByLabel {
            label: "reason",
            read: |c| {
                Cut::COUNTED
                    .map(|r| (r.label(), c.connections_cut(r)))
                    .to_vec()
            },
        },
    ),
    counter(
        "moose_vors_handshakes_refused_total",
        "VoRS connections closed before any handshake work, or before message 2, by the limit \
         they hit.",
        ByLabel {
            label: "reason",
            read: |c| {
                HandshakeRefusal::ALL
                    .map(|r| (r.label(), c.handshakes_refused(r)))
                    .to_vec()
            },
        },
    ),
    counter(
        "moose_vors_handshakes_evicted_total",
        "VoRS handshakes waiting for message 1 that were shut to make room for a newer one \
         (--max-handshakes per core).",
        Total(|c| c.vors_handshakes_evicted.get()),
    ),
    gauge(
        "moose_vors_handshakes_waiting",
        "VoRS handshakes waiting for their message 1, per core (sampled every second).",
        PerCore(|c| c.vors_handshakes_waiting.get(), Count),
    ),
    counter(
        "moose_vors_handshake_deadlines_total",
        "VoRS connections closed at a handshake stage's deadline, by stage.",
        ByLabel {
            label: "stage",
            read: |c| {
                HandshakeStage::ALL
                    .map(|s| (s.label(), c.handshake_deadlines(s)))
                    .to_vec()
            },
        },
    ),
    counter(
        "moose_vors_handshake_cpu_seconds_total",
        "Time the core spent decrypting message 1 and writing message 2 (what \
         --handshake-cpu-percent bounds).",
        PerCore(|c| c.vors_handshake_cpu_nanos.get(), Nanos),
    ),
    counter(
        "moose_address_evictions_total",
        "Clients forgotten by a full per-address rate table (the one touched longest ago), by \
         table.",
        ByLabel {
            label: "table",
            read: |c| {
                AddressTable::ALL
                    .map(|t| (t.label(), c.address_evictions(t)))
                    .to_vec()
            },
        },
    ),
    counter(
        "moose_vors_too_many_rooms_total",
        "VoRS members refused because their client already made --max-rooms-per-address rooms.",
        Total(|c| c.vors_too_many_rooms.get()),
    ),
    counter(
        "moose_vors_hellos_refused_total",
        "VoRS hellos refused for not being fresh: replayed (before any Noise work), stale or \
         untimed.",
        ByLabel {
            label: "reason",
            read: |c| {
                HelloRefusal::ALL
                    .map(|r| (r.label(), c.hellos_refused(r)))
                    .to_vec()
            },
        },
    ),
    counter(
        "moose_vors_hello_cache_evictions_total",
        "Client ephemeral keys the VoRS replay cache forgot early because it was full.",
        Total(|c| c.vors_hello_cache_evictions.get()),
    ),
    counter(
        "moose_vors_server_full_total",
        "VoRS members refused because their new room would pass --max-rooms.",
        Total(|c| c.vors_server_full.get()),
    ),
    counter(
        "moose_vors_handshakes_total",
        "VoRS handshakes that reached the room decision.",
        Total(|c| c.vors_handshakes.get()),
    ),
    counter(
        "moose_vors_handshake_failures_total",
        "VoRS connections that ended before the room decision.",
        Total(|c| c.vors_handshake_failures.get()),
    ),
    counter(
        "moose_vors_handoffs_total",
        "VoRS connections moved to their room's owner core.",
        Total(|c| c.vors_handoffs.get()),
    ),
    counter(
        "moose_vors_joins_total",
        "VoRS members admitted.",
        Total(|c| c.vors_joins.get()),
    ),
    counter(
        "moose_vors_rejects_total",
        "VoRS members refused (room full, name taken, wrong password, server full).",
        Total(|c| c.vors_rejects.get()),
    ),
    counter(
        "moose_vors_rate_limited_total",
        "VoRS chat messages dropped, and mute changes deferred, for their member's rate.",
        ByLabel {
            label: "kind",
            read: |c| {
                ControlKind::ALL
                    .map(|k| (k.label(), c.vors_rate_limits(k)))
                    .to_vec()
            },
        },
    ),
    counter(
        "moose_vors_datagrams_in_total",
        "UDP datagrams received.",
        Total(|c| c.vors_datagrams_in.get()),
    ),
    counter(
        "moose_vors_bytes_in_total",
        "UDP bytes received.",
        Total(|c| c.vors_bytes_in.get()),
    ),
    counter(
        "moose_vors_packets_forwarded_total",
        "Media packets verified and forwarded.",
        Total(|c| c.vors_packets_forwarded.get()),
    ),
    counter(
        "moose_vors_datagrams_out_total",
        "Media copies sent to members.",
        Total(|c| c.vors_datagrams_out.get()),
    ),
    counter(
        "moose_vors_bytes_out_total",
        "UDP bytes sent.",
        Total(|c| c.vors_bytes_out.get()),
    ),
    counter(
        "moose_vors_send_dropped_total",
        "Media copies dropped because the socket buffer was full.",
        Total(|c| c.vors_send_dropped.get()),
    ),
    counter(
        "moose_vors_dropped_total",
        "Datagrams dropped at the edge, by reason.",
        ByLabel {
            label: "reason",
            read: |c| VorsDrop::ALL.map(|r| (r.label(), c.vors_drops(r))).to_vec(),
        },
    ),
    gauge(
        "moose_vors_rooms",
        "VoRS rooms open, per core.",
        PerCore(|c| c.vors_rooms.get(), Count),
    ),
    gauge(
        "moose_vors_members",
        "VoRS members, per core.",
        PerCore(|c| c.vors_members.get(), Count),
    ),
    gauge(
        "moose_vors_members_silent",
        "VoRS members getting no media because nothing came from their address for 4 s, per core.",
        PerCore(|c| c.vors_members_silent.get(), Count),
    ),
    counter(
        "moose_vors_silence_pauses_total",
        "Times a VoRS member was paused for silence.",
        Total(|c| c.vors_silence_pauses.get()),
    ),
    gauge(
        "moose_lines",
        "Moose lines open, per core.",
        PerCore(|c| c.lines.get(), Count),
    ),
    gauge(
        "moose_line_peers",
        "Peers on Moose lines, per core.",
        PerCore(|c| c.line_peers.get(), Count),
    ),
    gauge(
        "moose_accepting",
        "1 while the core's HTTP and VoRS TCP listeners are open, 0 once the drain closed them.",
        PerCore(|c| c.accepting.get(), Count),
    ),
    gauge(
        "moose_cluster_state",
        "Where the relay stands with its cluster: 0 standalone, 1 up, 2 Redis unreachable, 3 \
         registering again.",
        Process(|scrape| scrape.cluster.state() as u64),
    ),
    gauge(
        "moose_cluster_relays",
        "Live relays in the cluster's Redis table at the last sweep, this one included.",
        Process(|scrape| scrape.cluster.relays()),
    ),
    counter(
        "moose_cluster_redis_errors_total",
        "Redis commands and connections of the cluster threads that failed.",
        Process(|scrape| scrape.cluster.redis_errors()),
    ),
    counter(
        "moose_cluster_reregistrations_total",
        "Times the relay registered again and restored its rooms (Redis back, or swept).",
        Process(|scrape| scrape.cluster.reregistrations()),
    ),
    counter(
        "moose_cluster_evicted_members_total",
        "Members whose session ended when the relay restored its rooms: taken meanwhile.",
        Process(|scrape| scrape.cluster.evicted_members()),
    ),
    counter(
        "moose_cluster_swept_relays_total",
        "Dead relays this relay removed from the cluster (their members got DEL).",
        Process(|scrape| scrape.cluster.swept_relays()),
    ),
    counter(
        "moose_cluster_events_in_total",
        "Room events read from this relay's inbox in Redis.",
        Process(|scrape| scrape.cluster.events_in()),
    ),
    counter(
        "moose_cluster_events_dropped_total",
        "Inbox events that were malformed or did not open under the cluster key.",
        Process(|scrape| scrape.cluster.events_dropped()),
    ),
    counter(
        "moose_cluster_joins_unavailable_total",
        "VoRS joins refused because Redis could not be reached.",
        Process(|scrape| scrape.cluster.joins_unavailable()),
    ),
    counter(
        "moose_cluster_link_datagrams_in_total",
        "Relay-link datagrams received, before any check.",
        Total(|c| c.link_datagrams_in.get()),
    ),
    counter(
        "moose_cluster_link_accepted_total",
        "Relay-link datagrams accepted and handed to their room.",
        Total(|c| c.link_accepted.get()),
    ),
    counter(
        "moose_cluster_link_datagrams_out_total",
        "Relay-link datagrams sent: one per media packet per remote relay hosting the room.",
        Total(|c| c.link_datagrams_out.get()),
    ),
    counter(
        "moose_cluster_link_send_dropped_total",
        "Relay-link datagrams dropped because the socket buffer was full.",
        Total(|c| c.link_send_dropped.get()),
    ),
    counter(
        "moose_cluster_link_dropped_total",
        "Relay-link datagrams dropped on arrival, by reason.",
        ByLabel {
            label: "reason",
            read: |c| LinkDrop::ALL.map(|r| (r.label(), c.link_drops(r))).to_vec(),
        },
    ),
    Family {
        name: "moose_forward_latency_seconds",
        help: "Time from a message's receive to the send call that hands it to the kernel, per \
               recipient copy (ws) or per packet (vors).",
        kind: Type::Histogram,
        samples: Histograms {
            label: "protocol",
            read: |c| {
                vec![
                    ("ws", c.ws_forward_latency.snapshot()),
                    ("vors", c.vors_forward_latency.snapshot()),
                ]
            },
        },
    },
    counter(
        "moose_executor_task_seconds_total",
        "Time the core's executor spent running tasks (glommio executor_runtime).",
        PerCore(|c| c.executor_task_nanos.get(), Nanos),
    ),
    counter(
        "moose_executor_busy_seconds_total",
        "Time the core's executor spent running tasks and polling for I/O, not sleeping \
         (glommio total_runtime).",
        PerCore(|c| c.executor_busy_nanos.get(), Nanos),
    ),
    counter(
        "moose_executor_tasks_total",
        "Task polls the core's executor ran.",
        PerCore(|c| c.executor_tasks.get(), Count),
    ),
    counter(
        "moose_executor_scheduler_runs_total",
        "Times the core's scheduler picked a task queue to run.",
        PerCore(|c| c.executor_scheduler_runs.get(), Count),
    ),
];
