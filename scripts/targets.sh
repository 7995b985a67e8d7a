#!/usr/bin/env bash
# The relay's targets against moose-baseline, measured in both loopback topologies of
# docs/benchmarks.md ("Two topologies"), as that section reports them.
#
#   scripts/targets.sh [RUNS]     (default 5, the fewest a point's median is taken from)
#
# Topologies (TOPOLOGIES, default "plain rfs"):
#   plain  loopback with no receive steering: rps_sock_flow_entries, lo's rps_flow_cnt and
#          rps_cpus all 0. The sender's CPU runs the receiver's TCP input in softirq.
#   rfs    loopback with receive flow steering, the analogue of a tuned host (RSS, RFS/aRFS):
#          net.core.rps_sock_flow_entries 32768, /sys/class/net/lo/queues/rx-0/rps_flow_cnt
#          32768, rps_cpus every CPU (3 on two), so each flow's receive work runs on the CPU
#          of the thread that reads it.
# The script sets these for each run and puts back what it found when it ends, on Ctrl-C or
# on an error too (root is needed to write them).
#
# Every run measures each point in both topologies, the topologies alternating (plain first
# in odd runs, rfs first in even ones) so that a drift of the machine's load spreads over
# both; the summary gives each figure's median and its spread (min–max) over the runs.
# Pinned as in issue 15: relay (--cores 1) and baseline (--baseline-cores 1) on RELAY_CPU
# (default 0), the bench on BENCH_CPU (default 1), one server at a time.
#
# Points, each with `--baseline`, against a fresh relay:
# 1. Saturation: `moose-bench --ramp --baseline`, relay and baseline stepped up side by side
#    until each breaks the SLO (loss over 0.1 % or p99 over 5 ms): max streams of each, their
#    ratio, and the CPU per message of each at its own max. VoRS in rooms of 4 (VORS_RAMP
#    "START STEP [MAX]", default "300 100"), PCM in lines of 2 (PCM_RAMP, default "40 20"),
#    RAMP_STEP_SECONDS per step (default 5).
# 2. Moderate load (LOADS, default "ws:20 ws:100 vors:400"; PROTOCOL:STREAMS), LOAD_SECONDS
#    each (default 5): latency p50/p99/p99.9 and CPU per message, relay and baseline.
# 3. Half load: half the relay's median max streams of that topology, LOAD_SECONDS: added
#    p99 (relay minus baseline) and messages lost.
# Then scripts/idle-memory.sh (MEMORY=0 skips it). PROTOCOLS (default "vors ws") limits 1
# and 3. Nothing else should run on the machine: other work shows up as spread.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=${1:-5}
topologies=${TOPOLOGIES:-plain rfs}
protocols=${PROTOCOLS:-vors ws}
loads=${LOADS:-ws:20 ws:100 vors:400}
read -r vors_start vors_step vors_max <<<"${VORS_RAMP:-300 100}"
read -r pcm_start pcm_step pcm_max <<<"${PCM_RAMP:-40 20}"
step_seconds=${RAMP_STEP_SECONDS:-5}
load_seconds=${LOAD_SECONDS:-5}
relay_cpu=${RELAY_CPU:-0}
bench_cpu=${BENCH_CPU:-1}
[ "$runs" -ge 5 ] || echo "targets.sh: $runs runs per point; the reported medians want 5" >&2

# --- Receive steering: the three settings, what they were, and putting them back -----------
flow_entries=/proc/sys/net/core/rps_sock_flow_entries
flow_cnt=/sys/class/net/lo/queues/rx-0/rps_flow_cnt
rps_cpus=/sys/class/net/lo/queues/rx-0/rps_cpus
steering=("$flow_entries" "$flow_cnt" "$rps_cpus")
saved=()
for file in "${steering[@]}"; do
    saved+=("$(cat "$file")")
    [ -w "$file" ] || {
        echo "targets.sh: cannot write $file (run as root, or TOPOLOGIES=plain" \
            "with steering already off)" >&2
        exit 1
    }
done
restore_steering() {
    local i
    for i in "${!steering[@]}"; do
        echo "${saved[$i]}" >"${steering[$i]}" 2>/dev/null || true
    done
}
# A mask of every online CPU, as rps_cpus takes it ("3" for two).
all_cpus=$(printf '%x' $(((1 << $(nproc)) - 1)))
set_topology() {
    case $1 in
    plain) echo 0 >"$rps_cpus"; echo 0 >"$flow_cnt"; echo 0 >"$flow_entries" ;;
    rfs) echo 32768 >"$flow_entries"; echo 32768 >"$flow_cnt"; echo "$all_cpus" >"$rps_cpus" ;;
    *) echo "targets.sh: unknown topology $1 (plain, rfs)" >&2; exit 1 ;;
    esac
}

. scripts/lib/relay.sh
# relay.sh's EXIT trap stops the relay and removes the scratch directory; the steering goes
# back first. A signal exits, which runs the EXIT trap.
trap 'restore_steering; cleanup' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

results=$work/results.tsv
: >"$results"

# bench PROTOCOL JSON FLAG...: one moose-bench run on BENCH_CPU against the running relay,
# with the baseline on RELAY_CPU.
bench() {
    local protocol=$1 json=$2
    shift 2
    local common=(--quiet --json "$json" --baseline --baseline-cores 1 --baseline-cpus "$relay_cpu")
    case $protocol in
    vors) taskset -c "$bench_cpu" "$bin/moose-bench" vors --target "$vors_addr" \
        --pubkey "$pubkey" --room-size 4 "${common[@]}" "$@" ;;
    ws) taskset -c "$bench_cpu" "$bin/moose-bench" ws --target "$http" --room-size 2 \
        "${common[@]}" "$@" ;;
    esac
}

# pinned_relay: a fresh relay with one core, every thread of it on RELAY_CPU.
pinned_relay() {
    start_relay --cores 1
    taskset -apc "$relay_cpu" "$relay_pid" >/dev/null
}

# measure PROTOCOL NAME BENCH-ARGS...: one bench run against a fresh pinned relay; its report
# in $work/NAME.json, its output in $work/NAME.txt.
measure() {
    local protocol=$1 name=$2
    shift 2
    pinned_relay
    bench "$protocol" "$work/$name.json" "$@" >"$work/$name.txt" 2>&1
    stop_relay
}

# announce WHAT N: the last N figures recorded, as NAME=VALUE, after WHAT.
announce() {
    echo "$1: $(tail -n "$2" "$results" | cut -f4,5 | tr '\t\n' '= ')"
}

# record POINT PROTOCOL TOPOLOGY JSON NAME=EXPRESSION...: figures of a JSON report (`r`),
# one line each in the results.
record() {
    local point=$1 protocol=$2 topology=$3 json=$4
    shift 4
    python3 - "$json" "$point" "$protocol" "$topology" "$@" >>"$results" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
point, protocol, topology = sys.argv[2:5]
for pair in sys.argv[5:]:
    name, expression = pair.split("=", 1)
    try:
        value = eval(expression)
    except (KeyError, TypeError):
        value = None
    print(f"{point}\t{protocol}\t{topology}\t{name}\t{'' if value is None else value}")
EOF
}

# order RUN: the topologies in this run's order (reversed every other run).
order() {
    if [ $(($1 % 2)) -eq 1 ]; then echo "$topologies"; else echo "$topologies" | tr ' ' '\n' | tac | tr '\n' ' '; fi
}

cpu_figures=(
    'relay_cpu_ns=r["relay_cpu_ns_per_message"]'
    'baseline_cpu_ns=r["baseline"]["relay_cpu_ns_per_message"]'
    'cpu_ratio=r["ratio"]["relay_cpu_ns_per_message"]'
)

echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
    "$(git rev-parse --short HEAD), $(date -u '+%F %H:%M UTC'); $runs runs;" \
    "relay and baseline on CPU $relay_cpu, bench on CPU $bench_cpu"

# 1. Saturation.
for run in $(seq "$runs"); do
    for topology in $(order "$run"); do
        set_topology "$topology"
        for protocol in $protocols; do
            if [ "$protocol" = vors ]; then
                ramp=(--ramp-start "$vors_start" --ramp-step "$vors_step" ${vors_max:+--ramp-max "$vors_max"})
            else
                ramp=(--ramp-start "$pcm_start" --ramp-step "$pcm_step" ${pcm_max:+--ramp-max "$pcm_max"})
            fi
            measure "$protocol" ramp --ramp "${ramp[@]}" --ramp-step-seconds "$step_seconds"
            record saturation "$protocol" "$topology" "$work/ramp.json" \
                'relay_max=r["max_streams"]' 'baseline_max=r["baseline_max_streams"]' \
                'ratio=r["ratio"]["max_streams"]' "${cpu_figures[@]}"
            announce "run $run, $topology, $protocol saturation" 6
        done
    done
done

# 2. Moderate load.
for run in $(seq "$runs"); do
    for topology in $(order "$run"); do
        set_topology "$topology"
        for load in $loads; do
            protocol=${load%%:*} streams=${load#*:}
            measure "$protocol" load --streams "$streams" --seconds "$load_seconds"
            record "load $streams" "$protocol" "$topology" "$work/load.json" \
                'relay_p50_us=r["latency_us"]["p50"]' 'baseline_p50_us=r["baseline"]["latency_us"]["p50"]' \
                'relay_p99_us=r["latency_us"]["p99"]' 'baseline_p99_us=r["baseline"]["latency_us"]["p99"]' \
                'relay_p999_us=r["latency_us"]["p999"]' 'baseline_p999_us=r["baseline"]["latency_us"]["p999"]' \
                'lost=r["lost"] + r["baseline"]["lost"]' "${cpu_figures[@]}"
            announce "run $run, $topology, $protocol $streams streams" 10
        done
    done
done

# 3. Half load, at half of each topology's median relay max.
for run in $(seq "$runs"); do
    for topology in $(order "$run"); do
        set_topology "$topology"
        for protocol in $protocols; do
            room=$([ "$protocol" = vors ] && echo 4 || echo 2)
            max=$(awk -F'\t' -v p="$protocol" -v t="$topology" \
                '$1 == "saturation" && $2 == p && $3 == t && $4 == "relay_max" { print $5 }' \
                "$results" | median)
            half=$(python3 -c "print(int($max / 2 // $room * $room))")
            if [ "$half" -lt "$room" ]; then
                echo "run $run, $topology, $protocol: the relay met the SLO at no step;" \
                    "no half load to measure" >&2
                continue
            fi
            measure "$protocol" half --streams "$half" --seconds "$load_seconds"
            record "half load" "$protocol" "$topology" "$work/half.json" \
                "streams=$half" 'added_p99_us=r["latency_us"]["p99"] - r["baseline"]["latency_us"]["p99"]' \
                'lost=r["lost"] + r["baseline"]["lost"]'
            announce "run $run, $topology, $protocol half load" 3
        done
    done
done

# The summary: every figure's median and spread over the runs, by point and topology.
echo
echo "summary (median, min–max over the runs):"
python3 - "$results" <<'EOF'
import statistics, sys
from collections import OrderedDict
figures = OrderedDict()
for line in open(sys.argv[1]):
    point, protocol, topology, name, value = line.rstrip("\n").split("\t")
    if value == "":
        continue
    figures.setdefault((point, protocol, name), OrderedDict()).setdefault(topology, []).append(float(value))
def show(values):
    median = statistics.median(values)
    text = lambda v: f"{v:.3g}" if abs(v) < 10 else f"{v:.0f}"
    return f"{text(median)} ({text(min(values))}–{text(max(values))}, n={len(values)})"
for (point, protocol, name), by_topology in figures.items():
    cells = "; ".join(f"{topology} {show(values)}" for topology, values in by_topology.items())
    print(f"  {protocol:4} {point:10} {name:16} {cells}")
EOF

if [ "${MEMORY:-1}" != 0 ]; then
    scripts/idle-memory.sh 400 2000 "$runs"
fi
