#!/usr/bin/env bash
# Relay memory per idle VoRS member and per idle line peer, as docs/benchmarks.md reports it.
#
#   scripts/idle-memory.sh [SMALL] [LARGE] [RUNS]     (defaults: 400 2000 3)
#
# For each protocol (VoRS rooms of 4, PCM lines of 2) and each of SMALL and LARGE streams,
# RUNS times: a fresh release relay, `moose-bench --idle-seconds 3` (every stream set up,
# then idle for 3 s, then the relay's VmRSS sampled), then half a second of load to prove
# the streams work (at 2000 PCM streams that load is far past the machine, so losses are
# expected and shown; a run is void only if nothing arrived or anything arrived damaged).
# Prints every sample and, per protocol, the median RSS at each size and the slope between
# them: the memory each further idle stream costs, without the relay's fixed costs.
# RELAY=PATH measures another build of moose-relay (to compare two commits side by side).
# Needs `ulimit -n` above 2 * LARGE + 100 (a VoRS stream holds a TCP and a UDP socket in the
# bench, the relay one TCP socket per stream).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

small=${1:-400}
large=${2:-2000}
runs=${3:-3}
. scripts/lib/relay.sh

# One sample: prints "BEFORE IDLE RECEIVED LOST CORRUPTED" for PROTOCOL with STREAMS streams.
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
print(m["before"], m["idle"], r["received"], r["lost"], r["corrupted"])' "$work/out.json"
}

for protocol in vors ws; do
    for streams in "$small" "$large"; do
        : >"$work/$protocol-$streams"
        for run in $(seq "$runs"); do
            read -r before idle received lost corrupted < <(sample "$protocol" "$streams")
            echo "$protocol $streams streams, run $run: RSS $before KiB before, $idle KiB idle;" \
                "then $received delivered, $lost lost, $corrupted corrupted"
            if [ "$received" = 0 ] || [ "$corrupted" != 0 ]; then
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
