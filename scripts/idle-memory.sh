#!/usr/bin/env bash
# Relay memory per idle VoRS member and per idle line peer, as docs/benchmarks.md reports it.
#
#   scripts/idle-memory.sh [SMALL] [LARGE] [RUNS]     (defaults: 400 2000 3)
#
# For each protocol (VoRS rooms of 4, PCM lines of 2) and each of SMALL and LARGE streams,
# RUNS times: a fresh release relay, `moose-bench --idle-seconds 3` (every stream set up,
# then idle for 3 s, then the relay's VmRSS sampled), a short load to prove the streams
# worked. Prints every sample and, per protocol, the median RSS at each size and the slope
# between them: the memory each further idle stream costs, without the relay's fixed costs.
# Needs `ulimit -n` above 2 * LARGE + 100 (a VoRS stream holds a TCP and a UDP socket in the
# bench, the relay one TCP socket per stream).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

small=${1:-400}
large=${2:-2000}
runs=${3:-3}
work=$(mktemp -d)
relay_pid=
cleanup() {
    [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cargo build --quiet --release -p moose-relay -p moose-bench
bin=target/release

# Starts a fresh relay; sets relay_pid, http, vors_addr and pubkey.
start_relay() {
    "$bin/moose-relay" --open --listen 127.0.0.1:0 --vors-listen 127.0.0.1:0 \
        --admin-listen 127.0.0.1:0 --vors-key "$work/vors.key" \
        --max-connections-per-address 0 --max-handshakes-per-address 0 \
        --handshakes-per-minute 0 --max-lines 100000 --max-rooms 100000 \
        >"$work/relay.out" 2>"$work/relay.err" &
    relay_pid=$!
    for _ in $(seq 100); do
        grep -q '^listening ' "$work/relay.out" 2>/dev/null && break
        sleep 0.1
    done
    local ready
    ready=$(grep '^listening ' "$work/relay.out") || {
        cat "$work/relay.err" >&2
        echo "idle-memory.sh: the relay did not start" >&2
        exit 1
    }
    field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$ready"; }
    http=$(field http)
    vors_addr=$(field vors)
    pubkey=$(field vors_pubkey)
}

stop_relay() {
    kill "$relay_pid"
    wait "$relay_pid" 2>/dev/null || true
    relay_pid=
}

# One sample: prints "BEFORE IDLE LOST" for PROTOCOL with STREAMS streams.
sample() {
    local protocol=$1 streams=$2
    start_relay
    case $protocol in
    vors) "$bin/moose-bench" vors --target "$vors_addr" --pubkey "$pubkey" --room-size 4 \
        --streams "$streams" --idle-seconds 3 --seconds 0.5 --quiet --json "$work/out.json" \
        >"$work/bench.txt" 2>&1 ;;
    ws) "$bin/moose-bench" ws --target "$http" --room-size 2 \
        --streams "$streams" --idle-seconds 3 --seconds 0.5 --quiet --json "$work/out.json" \
        >"$work/bench.txt" 2>&1 ;;
    esac
    stop_relay
    python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
m = r["relay_memory_kib"]
print(m["before"], m["idle"], r["lost"] + r["corrupted"])' "$work/out.json"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for protocol in vors ws; do
    for streams in "$small" "$large"; do
        : >"$work/$protocol-$streams"
        for run in $(seq "$runs"); do
            read -r before idle bad < <(sample "$protocol" "$streams")
            echo "$protocol $streams streams, run $run: RSS $before KiB before, $idle KiB idle, $bad lost or corrupted"
            if [ "$bad" != 0 ]; then
                echo "idle-memory.sh: the streams did not work; the sample is void" >&2
                exit 1
            fi
            echo "$idle" >>"$work/$protocol-$streams"
        done
    done
    at_small=$(median <"$work/$protocol-$small")
    at_large=$(median <"$work/$protocol-$large")
    awk -v p="$protocol" -v s="$small" -v l="$large" -v a="$at_small" -v b="$at_large" 'BEGIN {
        printf "%s: median idle RSS %d KiB at %d streams, %d KiB at %d: %.1f KiB per further idle stream\n",
            p, a, s, b, l, (b - a) / (l - s)
    }'
done
