#!/usr/bin/env bash
# The long soak: PCM lines and VoRS rooms through one release relay at once, for minutes,
# while the relay's resident memory and open descriptors are sampled every 10 s.
#
#   scripts/soak.sh [SECONDS] [PCM_STREAMS] [VORS_STREAMS]     (defaults: 600 100 400)
#
# Pick the stream counts at about half of what `moose-bench --ramp` finds on the machine
# (docs/benchmarks.md). Prints one sample line every 10 s, then both benches' tables and a
# verdict. Exits 0 when nothing was lost or damaged, the descriptors ended where they were
# once the load was up, and memory grew by less than 10 % over the second half of the run;
# 1 otherwise. relay/tests/soak_stays_flat.rs is the same check in seconds, for CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-600}
pcm=${2:-100}
vors=${3:-400}
. scripts/lib/relay.sh
start_relay

"$bin/moose-bench" ws --target "$http" --streams "$pcm" --room-size 2 --seconds "$seconds" \
    --quiet --json "$work/ws.json" >"$work/ws.txt" 2>&1 &
ws_pid=$!
"$bin/moose-bench" vors --target "$vors_addr" --pubkey "$pubkey" --streams "$vors" \
    --room-size 4 --seconds "$seconds" --quiet --json "$work/vors.json" >"$work/vors.txt" 2>&1 &
vors_pid=$!

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$relay_pid/status"; }
fds() { ls "/proc/$relay_pid/fd" | wc -l; }
# Setup (handshakes) takes a few seconds; sample from when the connections are all open.
sleep 10
printf '%8s %10s %6s\n' elapsed rss_kib fds
samples=()
start=$SECONDS
while kill -0 "$ws_pid" 2>/dev/null && [ $((SECONDS - start)) -lt $((seconds - 10)) ]; do
    sample="$(rss) $(fds)"
    samples+=("$sample")
    printf '%7ds %10s %6s\n' $((SECONDS - start)) $sample
    sleep 10
done
ws_status=0
vors_status=0
wait "$ws_pid" || ws_status=$?
wait "$vors_pid" || vors_status=$?
cat "$work/ws.txt" "$work/vors.txt"

verdict=0
for run in ws vors; do
    status_var="${run}_status"
    if [ "${!status_var}" -ne 0 ]; then
        echo "soak.sh: moose-bench $run failed" >&2
        verdict=1
        continue
    fi
    python3 - "$work/$run.json" "$run" <<'EOF' || verdict=1
import json, sys
r = json.load(open(sys.argv[1]))
ok = r["lost"] == 0 and r["corrupted"] == 0
print(f"{sys.argv[2]}: sent {r['sent']} received {r['received']} lost {r['lost']} "
      f"corrupted {r['corrupted']} p99 {r['latency_us']['p99']} us")
sys.exit(0 if ok else 1)
EOF
done
n=${#samples[@]}
if [ "$n" -ge 2 ]; then
    read -r first_rss first_fds <<<"${samples[0]}"
    read -r mid_rss _ <<<"${samples[$((n / 2))]}"
    read -r last_rss last_fds <<<"${samples[$((n - 1))]}"
    echo "memory: ${first_rss} KiB first, ${mid_rss} KiB middle, ${last_rss} KiB last; descriptors: ${first_fds} first, ${last_fds} last"
    [ "$last_fds" -eq "$first_fds" ] || { echo "soak.sh: descriptors moved" >&2; verdict=1; }
    [ "$last_rss" -le $((mid_rss + mid_rss / 10)) ] || {
        echo "soak.sh: memory grew by more than 10 % over the second half" >&2
        verdict=1
    }
else
    echo "soak.sh: too short to sample (give at least 40 s)" >&2
    verdict=1
fi
[ "$verdict" -eq 0 ] && echo "soak: flat and lossless" || echo "soak: FAILED"
exit "$verdict"
