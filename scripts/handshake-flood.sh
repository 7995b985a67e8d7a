#!/usr/bin/env bash
# VoRS calls in progress while a handshake flood from many addresses hits the relay: the
# latency and loss the flood adds (docs/benchmarks.md, "Calls under a handshake flood").
#
#   scripts/handshake-flood.sh [SECONDS] [VORS_STREAMS] [FLOOD_RATE]     (defaults: 20 64 0)
#
# Three runs, each against a fresh release relay with its defaults for handshakes (the
# per-address limits lifted only for the measuring load, which comes from one address):
# the calls alone, the calls while `moose-bench handshake-flood` sends garbage messages 1
# from 127.3.0.0/16, and the calls while it sends valid ones. The calls (VORS_STREAMS in
# rooms of 4) join first; the flood starts once they are sending and lasts SECONDS / 2 (its
# valid messages 1 are made before it starts, which takes a few seconds more). FLOOD_RATE is
# connections per second (0: as fast as they connect; valid messages 1 past the first 2000
# are then made on the fly, and the flood competes for the CPUs). RELAY=PATH measures
# another build of moose-relay (one without --handshake-cpu-percent runs unbudgeted);
# MOOSE_HANDSHAKE_CPU_PERCENT sets the budget. Prints each run's table, the flood's line, the
# relay's handshake counters and one summary line per run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-20}
streams=${2:-64}
rate=${3:-0}
export MOOSE_HANDSHAKE_CPU_PERCENT=${MOOSE_HANDSHAKE_CPU_PERCENT:-25}
. scripts/lib/relay.sh

admin_metric() {
    curl --silent "http://$admin/metrics" | awk -v name="$1" '$1 == name { print $2 }'
}

run() {
    local flood=$1
    start_relay
    admin=$(relay_field admin "$(grep '^listening ' "$work/relay.out")")
    "$bin/moose-bench" vors --target "$vors_addr" --pubkey "$pubkey" --streams "$streams" \
        --room-size 4 --seconds "$seconds" --quiet --json "$work/calls-$flood.json" \
        >"$work/calls-$flood.txt" 2>&1 &
    local calls=$!
    # The calls join in well under 3 s; the flood then hits calls in progress only.
    sleep 3
    if [ "$flood" != none ]; then
        local pool=2000
        [ "$rate" = 0 ] || pool=$((rate * seconds / 2))
        "$bin/moose-bench" handshake-flood --target "$vors_addr" --pubkey "$pubkey" \
            --hellos "$flood" --rate "$rate" --seconds "$((seconds / 2))" --threads 2 \
            --pool "$pool" --json "$work/flood-$flood.json"
    fi
    wait "$calls" || { cat "$work/calls-$flood.txt"; echo "handshake-flood.sh: calls failed" >&2; exit 1; }
    cat "$work/calls-$flood.txt"
    curl --silent "http://$admin/metrics" | grep -E '^moose_vors_handshake|^moose_vors_handshakes|^moose_executor_(busy|task)' || true
    stop_relay
    python3 - "$work/calls-$flood.json" "$flood" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latency_us"]
print(f"summary {sys.argv[2]}: sent {r['sent']} received {r['received']} lost {r['lost']} "
      f"p50 {lat['p50']} p99 {lat['p99']} p99.9 {lat['p999']} max {lat['max']} us")
EOF
}

for flood in none garbage valid; do
    run "$flood"
done
