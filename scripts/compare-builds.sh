#!/usr/bin/env bash
# Two builds of the relay side by side: did a change move the hot path?
#
#   scripts/compare-builds.sh BEFORE AFTER [RUNS]      (default 3)
#
# BEFORE and AFTER are folders holding a release `moose-relay` each (for example one built from
# the commit before a change with `cargo build --release --target-dir`, and this tree's
# target/release). For each protocol (PCM lines of 2, VoRS rooms of 4) the two builds take
# turns, RUNS runs each, every run a fresh relay measured by `moose-bench --baseline` (the
# baseline beside every run, so a noisy moment shows in both). Pinned as in docs/benchmarks.md:
# the relay (`--cores 1`) and the baseline on CPU 0, the bench on CPU 1. The bench and the
# baseline come from AFTER for both builds. Prints every run, then per build the medians of the
# relay's CPU per message, p50 and p99, and of the relay/baseline ratios.
# Loads: PCM_STREAMS (default 100), VORS_STREAMS (default 800), SECONDS_EACH (default 5).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ $# -ge 2 ] || {
    sed -n '2,14p' "$0" >&2
    exit 2
}
before=$(cd "$1" && pwd) after=$(cd "$2" && pwd) runs=${3:-3}
pcm_streams=${PCM_STREAMS:-100} vors_streams=${VORS_STREAMS:-800} seconds=${SECONDS_EACH:-5}
for dir in "$before" "$after"; do
    [ -x "$dir/moose-relay" ] || { echo "no moose-relay in $dir" >&2; exit 2; }
done
[ -x "$after/moose-bench" ] || { echo "no moose-bench in $after" >&2; exit 2; }

work=$(mktemp -d)
relay_pid=
cleanup() {
    [ -z "$relay_pid" ] || kill "$relay_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# run BUILD_DIR PROTOCOL JSON: one pinned relay, one bench run with the baseline beside it.
run() {
    local dir=$1 protocol=$2 json=$3
    taskset -c 0 "$dir/moose-relay" --open --cores 1 --listen 127.0.0.1:0 \
        --vors-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --vors-key "$work/vors.key" \
        --max-connections-per-address 0 --max-handshakes-per-address 0 \
        --handshakes-per-minute 0 --max-lines 100000 --max-rooms 100000 \
        >"$work/relay.out" 2>"$work/relay.err" &
    relay_pid=$!
    for _ in $(seq 100); do
        grep -q '^listening ' "$work/relay.out" 2>/dev/null && break
        sleep 0.1
    done
    local ready field
    ready=$(grep '^listening ' "$work/relay.out") || {
        cat "$work/relay.err" >&2
        exit 1
    }
    field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$ready"; }
    case $protocol in
    ws) taskset -c 1 "$after/moose-bench" ws --target "$(field http)" --room-size 2 \
        --streams "$pcm_streams" --seconds "$seconds" --relay-pid "$relay_pid" --baseline \
        --baseline-cpus 0 --quiet --json "$json" >/dev/null ;;
    vors) taskset -c 1 "$after/moose-bench" vors --target "$(field vors)" \
        --pubkey "$(field vors_pubkey)" --room-size 4 --streams "$vors_streams" \
        --seconds "$seconds" --relay-pid "$relay_pid" --baseline --baseline-cpus 0 --quiet \
        --json "$json" >/dev/null ;;
    esac
    kill "$relay_pid"
    wait "$relay_pid" 2>/dev/null || true
    relay_pid=
}

echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "before: $before  after: $after  runs: $runs  pcm: $pcm_streams  vors: $vors_streams  ${seconds}s"
for protocol in ws vors; do
    for i in $(seq "$runs"); do
        for build in before after; do
            dir=$before
            [ "$build" = after ] && dir=$after
            run "$dir" "$protocol" "$work/$protocol-$build-$i.json"
        done
    done
done

python3 - "$work" "$runs" <<'EOF'
import json, statistics, sys
work, runs = sys.argv[1], int(sys.argv[2])
for protocol in ("ws", "vors"):
    print(f"\n{protocol}:")
    print(f"  {'build':6} {'run':>3} {'cpu/msg ns':>10} {'p50 us':>8} {'p99 us':>8} {'lost':>5}"
          f" {'base cpu':>8} {'base p50':>8} {'base p99':>8} {'cpu x':>6} {'p50 x':>6} {'p99 x':>6}")
    summary = {}
    for build in ("before", "after"):
        rows = []
        for i in range(1, runs + 1):
            r = json.load(open(f"{work}/{protocol}-{build}-{i}.json"))
            b = r["baseline"]
            row = dict(cpu=r["relay_cpu_ns_per_message"], p50=r["latency_us"]["p50"],
                       p99=r["latency_us"]["p99"], lost=r["lost"] + b["lost"],
                       bcpu=b["relay_cpu_ns_per_message"], bp50=b["latency_us"]["p50"],
                       bp99=b["latency_us"]["p99"])
            row["cpux"] = row["cpu"] / row["bcpu"]
            row["p50x"] = row["p50"] / row["bp50"]
            row["p99x"] = row["p99"] / row["bp99"]
            rows.append(row)
            print(f"  {build:6} {i:>3} {row['cpu']:>10.0f} {row['p50']:>8.1f} {row['p99']:>8.1f}"
                  f" {row['lost']:>5} {row['bcpu']:>8.0f} {row['bp50']:>8.1f} {row['bp99']:>8.1f}"
                  f" {row['cpux']:>6.2f} {row['p50x']:>6.2f} {row['p99x']:>6.2f}")
        summary[build] = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
        spread = {k: (min(row[k] for row in rows), max(row[k] for row in rows)) for k in rows[0]}
        summary[build]["spread"] = spread
    for build in ("before", "after"):
        m = summary[build]
        s = m["spread"]
        print(f"  median {build:6}: cpu/msg {m['cpu']:.0f} ns ({s['cpu'][0]:.0f}-{s['cpu'][1]:.0f}),"
              f" p50 {m['p50']:.1f} us, p99 {m['p99']:.1f} us; relay/baseline cpu"
              f" {m['cpux']:.2f} ({s['cpux'][0]:.2f}-{s['cpux'][1]:.2f}), p99 {m['p99x']:.2f}")
EOF
