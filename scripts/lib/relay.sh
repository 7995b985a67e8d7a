# What the measuring scripts (soak.sh, idle-memory.sh, targets.sh) share. Source it from the
# repository root: it makes a scratch directory `work`, removed on exit together with the
# relay and any background job, builds the release binaries into `bin`, and defines the
# helpers below. RELAY=PATH runs another build of moose-relay instead; MOOSE_BIN=DIR takes
# every program (moose-relay, moose-bench, moose-baseline) from DIR and builds nothing.
#
# start_relay [FLAG...] starts one with the per-address limits lifted (one machine is one
# address: they would stop the load itself), the line and room limits raised and the
# handshake CPU budget off (MOOSE_HANDSHAKE_CPU_PERCENT, 100 unless set: the load joins all
# its streams at once), plus any FLAGs, and sets relay_pid, http, vors_addr and pubkey. The
# newer settings go in the environment, which builds that predate them ignore. stop_relay
# stops it. median prints the median of the numbers on its input, one per line. await_listening
# waits for a relay's ready line (start_relay uses it; scripts that start several relays too).

relay_pid=

start_relay() {
    MOOSE_MAX_ROOMS_PER_ADDRESS=0 \
        MOOSE_HANDSHAKE_CPU_PERCENT=${MOOSE_HANDSHAKE_CPU_PERCENT:-100} \
        "${RELAY:-$bin/moose-relay}" --open --listen 127.0.0.1:0 --vors-listen 127.0.0.1:0 \
        --admin-listen 127.0.0.1:0 --vors-key "$work/vors.key" \
        --max-connections-per-address 0 --max-handshakes-per-address 0 \
        --handshakes-per-minute 0 --max-lines 100000 --max-rooms 100000 "$@" \
        >"$work/relay.out" 2>"$work/relay.err" &
    relay_pid=$!
    local ready
    ready=$(await_listening "$work/relay.out" "$work/relay.err" "$relay_pid" "the relay") || exit 1
    http=$(relay_field http "$ready")
    vors_addr=$(relay_field vors "$ready")
    pubkey=$(relay_field vors_pubkey "$ready")
}

# await_listening OUT ERR PID WHAT waits up to 10 s for the ready line of the relay PID (its
# stdout in OUT) and prints it; if none comes (or the relay exits first), shows its stderr
# (ERR) and says WHAT did not start, and fails.
await_listening() {
    for _ in $(seq 100); do
        grep -q '^listening ' "$1" 2>/dev/null && break
        kill -0 "$3" 2>/dev/null || break
        sleep 0.1
    done
    grep '^listening ' "$1" || {
        cat "$2" >&2
        echo "$(basename "$0"): $4 did not start" >&2
        return 1
    }
}

# relay_field NAME LINE: the value of NAME=VALUE in the relay's `listening` line.
relay_field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

stop_relay() {
    [ -n "$relay_pid" ] || return 0
    kill "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
    relay_pid=
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

work=$(mktemp -d)
bin=${MOOSE_BIN:-target/release}
cleanup() {
    stop_relay
    jobs -p | xargs -r kill 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
[ -n "${MOOSE_BIN:-}" ] || cargo build --quiet --release -p moose-relay -p moose-bench
