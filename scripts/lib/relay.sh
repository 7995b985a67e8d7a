# Starting and stopping a release relay for the measuring scripts (soak.sh, idle-memory.sh,
# targets.sh). Source it after setting `work` (a scratch directory) and `bin` (the directory
# of the release binaries); RELAY=PATH runs another build of moose-relay instead.
#
# start_relay [FLAG...] starts one with the per-address limits lifted (one machine is one
# address: they would stop the load itself) and the line and room limits raised, plus any
# FLAGs, and sets relay_pid, http, vors_addr and pubkey. stop_relay stops it.

relay_pid=

start_relay() {
    "${RELAY:-$bin/moose-relay}" --open --listen 127.0.0.1:0 --vors-listen 127.0.0.1:0 \
        --admin-listen 127.0.0.1:0 --vors-key "$work/vors.key" \
        --max-connections-per-address 0 --max-handshakes-per-address 0 \
        --handshakes-per-minute 0 --max-lines 100000 --max-rooms 100000 "$@" \
        >"$work/relay.out" 2>"$work/relay.err" &
    relay_pid=$!
    for _ in $(seq 100); do
        grep -q '^listening ' "$work/relay.out" 2>/dev/null && break
        sleep 0.1
    done
    local ready
    ready=$(grep '^listening ' "$work/relay.out") || {
        cat "$work/relay.err" >&2
        echo "$(basename "$0"): the relay did not start" >&2
        exit 1
    }
    http=$(relay_field http "$ready")
    vors_addr=$(relay_field vors "$ready")
    pubkey=$(relay_field vors_pubkey "$ready")
}

# relay_field NAME LINE: the value of NAME=VALUE in the relay's `listening` line.
relay_field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

stop_relay() {
    [ -n "$relay_pid" ] || return 0
    kill "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
    relay_pid=
}
