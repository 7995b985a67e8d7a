#!/usr/bin/env bash
# A VoRS room across three relays (issue 14), as docs/benchmarks.md reports it.
#
#   scripts/cluster-bench.sh [latency]       spread rooms against local rooms, side by side
#   scripts/cluster-bench.sh memory          relay memory per remote member, Redis per member
#
# Both modes start a real redis-server (Debian's, scripts/install-redis.sh) on a free loopback
# port, with no persistence, in the scratch directory, a cluster key (`moose-relay keygen`),
# and three release relays A, B, C on loopback with --cluster-redis, --cluster-key, their own
# --cluster-listen port, one --vors-key, --cores 1 and the per-address limits lifted (as
# scripts/lib/relay.sh does), and wait until each relay's /metrics shows
# `moose_cluster_relays 3`. Everything (relays, redis-server, the bench) is stopped on exit.
#
# Pinning (the development machine has 2 CPUs): the three relays share CPU RELAY_CPUS (default
# 0), the bench and redis-server run on BENCH_CPUS (default 1), as in the pinned arrangement of
# docs/benchmarks.md ("Targets"). So spread rooms and local rooms get the same CPU for their
# forwarding (one, whether one relay or three do it), and the bench's own work does not land in
# the relays' latency differently in the two arrangements. Redis is off the media path and
# idle during the load (heartbeats and sweeps only). PIN=0 runs everything unpinned.
#
# latency: RUNS times (default 3), alternating, `moose-bench vors` with STREAMS streams
# (default 120) in rooms of ROOM (default 6) for SECONDS_LOAD (default 20), in three
# arrangements of the same load:
#   spread: rooms spread over the three relays (`--target A,B,C`: members 0 and 3 of a room
#           on A, 1 and 4 on B, 2 and 5 on C);
#   whole:  every room whole on one of the three relays (`--target A,B,C --place rooms`: room
#           r on the (r mod 3)-th): the same three processes woken by the same packets, with
#           no relay link, so that spread ÷ whole is the cascade's own cost;
#   local:  every room on relay A (`--target A`): one process does all the forwarding.
# Prints each run's same-relay and cross-relay p50/p99 and loss and the relays' CPU per
# delivered message, then the medians.
# The CPU is the relays' utime + stime (/proc/PID/stat; all three relays for spread and whole
# rooms, relay A alone for local rooms) over the steady part of the load: from the bench's
# first progress line (1 s in) to its last before the end of sending, divided by the
# deliveries the same two lines count between them. Setup (handshakes, joins through Redis)
# and teardown are left out. The bench's own figure for the one-relay run (load and grace) is
# shown beside it.
#
# memory: for each of SMALL and LARGE streams (defaults 400 and 1600) in rooms of 8, RUNS
# times, on a fresh cluster each time, `moose-bench --idle-seconds 3` (every stream set up,
# then idle) with relay A's VmRSS sampled by the bench at the end of the idle time:
#   local:  `--target A` (all 8 members of each room on A);
#   spread: `--target A,B,C,B,C,B,C,B` (1 member of each room on A, 7 on B and C: remote
#           members for A, of rooms that also have a member on A).
# The RSS slope between the two sizes is A's cost per further stream: per local member in the
# first, (1 local + 7 remote) / 8 in the second, so per remote member
# (8 × spread slope − local slope) / 7. Redis's `used_memory` (`redis-cli INFO memory`) is read
# before the bench and once every member of every relay has joined (the relays'
# moose_vors_members), with the streams idle: its growth divided by the streams is Redis's cost
# per member (rooms included), and the slope between the sizes its cost per further member.
#
# A run whose setup never completes (`only N of M streams were ready`) is repeated, up to
# TRIES times (default 10), and counted. Two join races made that common (docs/benchmarks.md,
# "A room across three relays"; both fixed since): kept as a guard, so that a new one shows as
# a count instead of a failed measurement.
#
# RELAY=PATH runs another build of moose-relay. Needs `ulimit -n` above 2 × LARGE + 100.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=${1:-latency}
runs=${RUNS:-3}
streams=${STREAMS:-120}
room=${ROOM:-6}
seconds=${SECONDS_LOAD:-20}
small=${SMALL:-400}
large=${LARGE:-1600}
pin=${PIN:-1}
tries=${TRIES:-10}
relay_cpus=${RELAY_CPUS:-0}
bench_cpus=${BENCH_CPUS:-1}
case $mode in
latency | memory) ;;
*)
    echo "usage: $0 [latency|memory]" >&2
    exit 2
    ;;
esac
for tool in redis-server redis-cli python3; do
    command -v "$tool" >/dev/null || {
        echo "$(basename "$0"): $tool is missing (scripts/install-redis.sh installs Redis)" >&2
        exit 1
    }
done

. scripts/lib/relay.sh
: >"$work/failed-setups"

# The command prefixes that pin (taskset execs its command, so $! is the pinned process).
relay_pin=()
bench_pin=()
if [ "$pin" = 1 ]; then
    relay_pin=(taskset -c "$relay_cpus")
    bench_pin=(taskset -c "$bench_cpus")
fi

# A port free on loopback at this instant, TCP or UDP.
free_port() {
    python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1] == "udp" else socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' "$1"
}

redis_pid=
redis_port=
pids=()
admins=()
vors=()
names=(A B C)

start_redis() {
    mkdir -p "$work/redis"
    for _ in 1 2 3 4 5; do
        redis_port=$(free_port tcp)
        "${bench_pin[@]}" redis-server --port "$redis_port" --bind 127.0.0.1 --protected-mode no \
            --save '' --appendonly no --daemonize no --dir "$work/redis" \
            --logfile "$work/redis/redis.log" >/dev/null 2>&1 &
        redis_pid=$!
        for _ in $(seq 100); do
            [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] && return 0
            kill -0 "$redis_pid" 2>/dev/null || break
            sleep 0.05
        done
        kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
        redis_pid=
    done
    cat "$work/redis/redis.log" >&2
    echo "$(basename "$0"): redis-server did not start" >&2
    exit 1
}

redis_used_memory() {
    redis-cli -p "$redis_port" INFO memory | tr -d '\r' | sed -n 's/^used_memory:\([0-9]*\)$/\1/p'
}

# start_cluster_relay I: relay I (0, 1, 2) of the cluster, pinned to the relays' CPU.
start_cluster_relay() {
    local i=$1 out="$work/relay$1.out" err="$work/relay$1.err" link
    link=$(free_port udp)
    "${relay_pin[@]}" env MOOSE_MAX_ROOMS_PER_ADDRESS=0 \
        MOOSE_HANDSHAKE_CPU_PERCENT="${MOOSE_HANDSHAKE_CPU_PERCENT:-100}" \
        "${RELAY:-$bin/moose-relay}" --open --cores 1 \
        --listen 127.0.0.1:0 --vors-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --vors-key "$work/vors.key" \
        --max-connections-per-address 0 --max-handshakes-per-address 0 \
        --handshakes-per-minute 0 --max-lines 100000 --max-rooms 100000 \
        --cluster-redis "redis://127.0.0.1:$redis_port" --cluster-key "$work/cluster.key" \
        --cluster-listen "127.0.0.1:$link" >"$out" 2>"$err" &
    pids[i]=$!
    local ready
    ready=$(await_listening "$out" "$err" "${pids[i]}" "relay ${names[i]}") || exit 1
    admins[i]=$(relay_field admin "$ready")
    vors[i]=$(relay_field vors "$ready")
    pubkey=$(relay_field vors_pubkey "$ready")
}

# metric RELAY NAME: the sum of NAME's samples on relay RELAY's /metrics (0 when absent).
metric() {
    curl -sf "http://${admins[$1]}/metrics" |
        awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $2; f = 1 } END { print f ? s : 0 }'
}

start_cluster() {
    start_redis
    "$bin/moose-relay" keygen >"$work/cluster.key"
    for i in 0 1 2; do start_cluster_relay "$i"; done
    for i in 0 1 2; do
        for _ in $(seq 100); do
            [ "$(metric "$i" moose_cluster_relays)" = 3 ] && continue 2
            sleep 0.1
        done
        echo "$(basename "$0"): relay ${names[i]} never saw the three relays live" >&2
        exit 1
    done
}

stop_cluster() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    pids=()
    if [ -n "$redis_pid" ]; then
        kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
        redis_pid=
    fi
}

cleanup_cluster() {
    stop_cluster
    cleanup
}
trap cleanup_cluster EXIT

# CPU ticks (utime + stime) of the given pids, summed, in nanoseconds.
cpu_ns() {
    local hz pid total=0 t
    hz=$(getconf CLK_TCK)
    for pid in "$@"; do
        # Fields 14 and 15, counted after the command's closing parenthesis.
        t=$(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')
        total=$((total + t))
    done
    echo $((total * 1000000000 / hz))
}

# latency_run spread|whole|local: one bench run; writes to $work/result
# "P50_SAME P99_SAME LOST_SAME P50_CROSS P99_CROSS LOST_CROSS CPU_NS_PER_MSG BENCH_CPU SENT".
latency_run() {
    local kind=$1 target measured place=members
    case $kind in
    spread | whole)
        target="${vors[0]},${vors[1]},${vors[2]}"
        measured=("${pids[@]}")
        [ "$kind" = whole ] && place=rooms
        ;;
    local)
        target="${vors[0]}"
        measured=("${pids[0]}")
        ;;
    esac
    local try bench seen n line elapsed received
    for try in $(seq "$tries"); do
    rm -f "$work/bench.err" "$work/out.json"
    "${bench_pin[@]}" "$bin/moose-bench" vors --target "$target" --place "$place" \
        --pubkey "$pubkey" --relay-pid "${pids[0]}" --streams "$streams" --room-size "$room" \
        --setup-timeout 15 \
        --seconds "$seconds" --json "$work/out.json" >"$work/bench.out" 2>"$work/bench.err" &
    bench=$! seen=0
    local first_cpu='' first_received='' last_cpu='' last_received='' cpu
    # Follow the progress lines ("  1.1 s  sent N  received N ..."), sampling the relays'
    # CPU as each appears, while they are within the sending time.
    while kill -0 "$bench" 2>/dev/null; do
        n=$(grep -c ' s  sent ' "$work/bench.err" 2>/dev/null || true)
        if [ "${n:-0}" -gt "$seen" ]; then
            cpu=$(cpu_ns "${measured[@]}")
            seen=$n
            line=$(grep ' s  sent ' "$work/bench.err" | tail -1)
            elapsed=$(awk '{ print $1 }' <<<"$line")
            received=$(awk '{ for (i = 1; i < NF; i++) if ($i == "received") print $(i + 1) }' <<<"$line")
            if awk -v e="$elapsed" -v s="$seconds" 'BEGIN { exit !(e <= s - 0.5) }'; then
                if [ -z "$first_cpu" ]; then
                    first_cpu=$cpu first_received=$received
                else
                    last_cpu=$cpu last_received=$received
                fi
            fi
        fi
        sleep 0.02
    done
    if wait "$bench"; then break; fi
    if grep -q 'streams were ready after' "$work/bench.err" && [ "$try" -lt "$tries" ]; then
        grep 'streams were ready after' "$work/bench.err" >&2
        echo "$kind" >>"$work/failed-setups"
        continue
    fi
    cat "$work/bench.err" >&2
    echo "$(basename "$0"): moose-bench failed" >&2
    exit 1
    done
    [ -n "$last_cpu" ] || {
        echo "$(basename "$0"): too few progress lines to measure CPU (SECONDS_LOAD >= 4)" >&2
        exit 1
    }
    python3 - "$work/out.json" "$kind" "$((last_cpu - first_cpu))" \
        "$((last_received - first_received))" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
kind, cpu, delivered = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if r["corrupted"]:
    sys.exit(f"cluster-bench.sh: {r['corrupted']} corrupted deliveries")
if kind != "local":
    s, c = r["same_relay"], r["cross_relay"]
else:
    s, c = r, {"received": 0, "lost": 0, "latency_us": {"p50": "-", "p99": "-"}}
bench_cpu = r["relay_cpu_ns_per_message"] if kind == "local" else None
print(s["latency_us"]["p50"], s["latency_us"]["p99"], s["lost"],
      c["latency_us"]["p50"], c["latency_us"]["p99"], c["lost"],
      round(cpu / delivered) if delivered else "-",
      round(bench_cpu) if bench_cpu else "-", r["sent"])
EOF
} >"$work/result"

latency_mode() {
    start_cluster
    echo "three relays (--cores 1) on CPU(s) ${relay_cpus}, bench and redis-server on ${bench_cpus} (PIN=$pin);" \
        "$streams streams in rooms of $room, ${seconds} s, $runs runs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
    printf '%-7s %3s %9s %9s %6s %9s %9s %6s %10s %10s %8s\n' rooms run same_p50 same_p99 lost \
        cross_p50 cross_p99 lost cpu_ns/msg bench_cpu sent
    : >"$work/spread.txt"
    : >"$work/whole.txt"
    : >"$work/local.txt"
    for run in $(seq "$runs"); do
        for kind in spread whole local; do
            latency_run "$kind"
            read -r sp50 sp99 slost cp50 cp99 clost cpu bcpu sent <"$work/result"
            printf '%-7s %3d %9s %9s %6s %9s %9s %6s %10s %10s %8s\n' "$kind" "$run" "$sp50" \
                "$sp99" "$slost" "$cp50" "$cp99" "$clost" "$cpu" "$bcpu" "$sent"
            echo "$sp50 $sp99 $slost $cp50 $cp99 $clost $cpu" >>"$work/$kind.txt"
        done
    done
    col() { awk -v c="$2" '{ print $c }' "$work/$1.txt" | median; }
    echo "medians of $runs:"
    echo "  spread rooms: same-relay p50 $(col spread 1) µs, p99 $(col spread 2) µs, lost $(col spread 3);" \
        "cross-relay p50 $(col spread 4) µs, p99 $(col spread 5) µs, lost $(col spread 6);" \
        "CPU of the three relays $(col spread 7) ns per delivered message"
    echo "  whole rooms:  p50 $(col whole 1) µs, p99 $(col whole 2) µs, lost $(col whole 3);" \
        "CPU of the three relays $(col whole 7) ns per delivered message"
    echo "  local rooms:  p50 $(col local 1) µs, p99 $(col local 2) µs, lost $(col local 3);" \
        "CPU of relay A $(col local 7) ns per delivered message"
    # The targets compare figures of one run (cross and same of one spread run; spread and
    # the whole or local run beside it): each run's difference or ratio, then their median.
    per_run() { paste -d' ' "$work/spread.txt" "$work/$1.txt" | awk "{ print $2 }" | median; }
    printf '  cross − same, median of the runs'"'"' differences: p50 %+.1f µs (target ≤ +50), p99 %+.1f µs (target ≤ +250)\n' \
        "$(per_run spread '$4 - $1')" "$(per_run spread '$5 - $2')"
    printf '  CPU, median of the runs'"'"' ratios: spread ÷ whole %.2f, spread ÷ local %.2f (target ≤ 1.5)\n' \
        "$(per_run whole '$7 / $14')" "$(per_run local '$7 / $14')"
    local cross_lost
    cross_lost=$(awk '{ s += $3 + $6 } END { print s }' "$work/spread.txt" "$work/whole.txt" \
        "$work/local.txt")
    echo "  lost over every run: $cross_lost"
    echo "  runs whose setup failed and were repeated: $(grep -c spread "$work/failed-setups" || true) spread," \
        "$(grep -c whole "$work/failed-setups" || true) whole, $(grep -c local "$work/failed-setups" || true) local"
}

# memory_sample local|spread STREAMS: one sample on a fresh cluster; writes to $work/result
# "RSS_BEFORE RSS_IDLE REDIS_BEFORE REDIS_IDLE RECEIVED CORRUPTED".
memory_sample() {
    local try
    for try in $(seq "$tries"); do
        if memory_try "$@"; then return 0; fi
        [ "$try" -lt "$tries" ] || break
        echo "$1" >>"$work/failed-setups"
    done
    cat "$work/bench.txt" >&2
    echo "$(basename "$0"): moose-bench failed" >&2
    exit 1
}

# memory_try: one attempt; status 1 when the bench failed (a setup that never completed).
memory_try() {
    local kind=$1 n=$2 target
    start_cluster
    if [ "$kind" = spread ]; then
        target="${vors[0]},${vors[1]},${vors[2]},${vors[1]},${vors[2]},${vors[1]},${vors[2]},${vors[1]}"
    else
        target="${vors[0]}"
    fi
    local redis_before redis_idle=
    redis_before=$(redis_used_memory)
    rm -f "$work/out.json"
    "${bench_pin[@]}" "$bin/moose-bench" vors --target "$target" --pubkey "$pubkey" \
        --relay-pid "${pids[0]}" --room-size 8 --streams "$n" --idle-seconds 3 --seconds 0.5 \
        --setup-timeout 20 --quiet --json "$work/out.json" >"$work/bench.txt" 2>&1 &
    local bench=$!
    # Every member joined on its relay (the relays count their local members), then a moment
    # for the announcements: the streams are idle for 3 s from when the last saw its ADDs.
    while kill -0 "$bench" 2>/dev/null; do
        if [ "$(($(metric 0 moose_vors_members) + $(metric 1 moose_vors_members) + $(metric 2 moose_vors_members)))" -ge "$n" ]; then
            sleep 1
            redis_idle=$(redis_used_memory)
            break
        fi
        sleep 0.2
    done
    local status=0
    wait "$bench" || status=$?
    stop_cluster
    if [ "$status" != 0 ]; then
        grep 'streams were ready after' "$work/bench.txt" >&2 || return 2
        return 1
    fi
    [ -n "$redis_idle" ] || {
        echo "$(basename "$0"): the members were never all joined" >&2
        exit 1
    }
    python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
m = r["relay_memory_kib"]
print(m["before"], m["idle"], sys.argv[2], sys.argv[3], r["received"], r["corrupted"])' \
        "$work/out.json" "$redis_before" "$redis_idle" >"$work/result"
}

memory_mode() {
    echo "relay A's RSS and Redis's used_memory, rooms of 8, $small and $large streams, $runs runs;" \
        "load average $(cut -d' ' -f1-3 /proc/loadavg)"
    for kind in local spread; do
        for n in "$small" "$large"; do
            : >"$work/$kind-$n.rss"
            : >"$work/$kind-$n.redis"
            for run in $(seq "$runs"); do
                memory_sample "$kind" "$n"
                read -r before idle rbefore ridle received corrupted <"$work/result"
                echo "$kind $n streams, run $run: relay A RSS $before KiB before, $idle KiB idle;" \
                    "Redis $rbefore B before, $ridle B idle; then $received delivered, $corrupted corrupted"
                if [ "$received" = 0 ] || [ "$corrupted" != 0 ]; then
                    echo "$(basename "$0"): the streams did not work; the sample is void" >&2
                    exit 1
                fi
                echo "$idle" >>"$work/$kind-$n.rss"
                echo "$((ridle - rbefore))" >>"$work/$kind-$n.redis"
            done
        done
    done
    awk -v s="$small" -v l="$large" \
        -v ls="$(median <"$work/local-$small.rss")" -v ll="$(median <"$work/local-$large.rss")" \
        -v ss="$(median <"$work/spread-$small.rss")" -v sl="$(median <"$work/spread-$large.rss")" \
        -v rls="$(median <"$work/local-$small.redis")" -v rll="$(median <"$work/local-$large.redis")" \
        -v rss_="$(median <"$work/spread-$small.redis")" -v rsl="$(median <"$work/spread-$large.redis")" 'BEGIN {
        local_slope = (ll - ls) / (l - s)
        spread_slope = (sl - ss) / (l - s)
        remote = (8 * spread_slope - local_slope) / 7
        printf "relay A, local rooms: median idle RSS %d KiB at %d streams, %d KiB at %d: %.2f KiB per further local member\n", ls, s, ll, l, local_slope
        printf "relay A, spread rooms (1 local + 7 remote per room): %d KiB at %d, %d KiB at %d: %.2f KiB per further stream\n", ss, s, sl, l, spread_slope
        printf "  so %.2f KiB per remote member (target: no more than a local member, under 8 KiB)\n", remote
        printf "Redis used_memory growth per member: local %.0f B at %d, %.0f B at %d (slope %.0f B);", rls / s, s, rll / l, l, (rll - rls) / (l - s)
        printf " spread %.0f B at %d, %.0f B at %d (slope %.0f B) (target under 1024 B)\n", rss_ / s, s, rsl / l, l, (rsl - rss_) / (l - s)
    }'
}

"${mode}_mode"
