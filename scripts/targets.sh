#!/usr/bin/env bash
# Issue 4's targets, measured as docs/benchmarks.md "Targets" reports them.
#
#   scripts/targets.sh [RUNS]     (default 3)
#
# 1. Saturation: `moose-bench --ramp --baseline` for VoRS (rooms of 4) and PCM (lines of 2):
#    the relay and moose-baseline stepped up side by side until each breaks the SLO (loss
#    over 0.1 % or p99 over 5 ms); target: the relay's max_streams at least 90 % of the
#    baseline's.
# 2. Half load: RUNS runs of each protocol at half the relay's max_streams with `--baseline`;
#    target: relay p99 minus baseline p99 (median of the runs) under 250 us for VoRS and
#    under 1 ms for PCM, and nothing lost.
# 3. Memory: scripts/idle-memory.sh (target: under 16 KiB per idle member or peer).
# Each phase runs against a fresh relay. The bench, the relay and the baseline share the
# machine's cores: run it on an otherwise idle machine. Ramp steps: VORS_RAMP and PCM_RAMP
# ("START STEP", defaults "600 100" and "40 20").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=${1:-3}
read -r vors_start vors_step <<<"${VORS_RAMP:-600 100}"
read -r pcm_start pcm_step <<<"${PCM_RAMP:-40 20}"
. scripts/lib/relay.sh

# bench PROTOCOL JSON FLAG...: one moose-bench run against the running relay.
bench() {
    local protocol=$1 json=$2
    shift 2
    case $protocol in
    vors) "$bin/moose-bench" vors --target "$vors_addr" --pubkey "$pubkey" --room-size 4 \
        --quiet --json "$json" "$@" ;;
    ws) "$bin/moose-bench" ws --target "$http" --room-size 2 --quiet --json "$json" "$@" ;;
    esac
}

# json FILE EXPRESSION: a figure from a JSON report (`r` is the report).
json() { python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $(git rev-parse --short HEAD)"
for protocol in vors ws; do
    if [ "$protocol" = vors ]; then
        start=$vors_start step=$vors_step room=4 target_us=250
    else
        start=$pcm_start step=$pcm_step room=2 target_us=1000
    fi
    start_relay
    bench "$protocol" "$work/ramp.json" --ramp --baseline --ramp-start "$start" \
        --ramp-step "$step" >"$work/ramp.txt" 2>&1
    stop_relay
    relay_max=$(json "$work/ramp.json" 'r["max_streams"]')
    base_max=$(json "$work/ramp.json" 'r["baseline_max_streams"]')
    echo "$protocol saturation: relay $relay_max streams, baseline $base_max:" \
        "ratio $(json "$work/ramp.json" 'r["ratio"]["max_streams"]') (target >= 0.9)"
    python3 - "$work/ramp.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
for who, steps in (("relay", r["ramp"]), ("baseline", r["baseline_ramp"])):
    for s in steps:
        verdict = "ok" if s["ok"] else "broke"
        print(f"  {who} step {s['streams']}: p99 {s['p99_us']} us, loss {s['loss']:.4f}, {verdict}")
EOF

    half=$((relay_max / 2 / room * room))
    if [ "$half" -lt "$room" ]; then
        echo "$protocol: the relay met the SLO at no step; no half load to measure" >&2
        continue
    fi
    : >"$work/added"
    for run in $(seq "$runs"); do
        start_relay
        bench "$protocol" "$work/half.json" --streams "$half" --seconds 5 --baseline \
            >"$work/half.txt" 2>&1
        stop_relay
        relay_p99=$(json "$work/half.json" 'r["latency_us"]["p99"]')
        base_p99=$(json "$work/half.json" 'r["baseline"]["latency_us"]["p99"]')
        lost=$(json "$work/half.json" 'r["lost"] + r["baseline"]["lost"]')
        added=$(python3 -c "print(round($relay_p99 - $base_p99, 1))")
        echo "$added" >>"$work/added"
        echo "  $protocol half load ($half streams), run $run: relay p99 $relay_p99 us," \
            "baseline p99 $base_p99 us, added $added us, lost $lost"
    done
    echo "$protocol half load: median added p99 $(median <"$work/added") us (target < $target_us us)"
done
scripts/idle-memory.sh 400 2000 "$runs"
