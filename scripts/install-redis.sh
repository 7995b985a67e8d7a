#!/bin/sh
# Installs what the cluster's tests need (relay/tests/cluster_*.rs, testkit/src/redis.rs):
# Debian's redis-server (Redis 7), which the tests start themselves on free loopback ports.
#
#   scripts/install-redis.sh           install what is missing (root), nothing when all is there
#   scripts/install-redis.sh --check   exit 0 when all is there, 1 otherwise; installs nothing
#
# Runs `apt-get update` first unless MOOSE_APT_UPDATED says scripts/test.sh already did.
# Quiet unless it fails.
set -eu

packages=""
[ -x /usr/bin/redis-server ] || packages="$packages redis-server"

if [ "${1:-}" = --check ]; then
    [ -z "$packages" ]
    exit
fi
if [ -z "$packages" ]; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [ -z "${MOOSE_APT_UPDATED:-}" ] && ! apt-get update -qq >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-redis.sh: apt-get update failed" >&2
    exit 1
fi
# shellcheck disable=SC2086 # the package list is meant to split
if ! apt-get install -y -qq --no-install-recommends $packages >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-redis.sh: apt-get install$packages failed" >&2
    exit 1
fi
# Where systemd is the init, Debian's package starts a system Redis on port 6379; the tests start
# their own and need no system one.
if [ -d /run/systemd/system ]; then
    systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
if ! sh "$0" --check; then
    echo "install-redis.sh: still missing after apt-get install:$packages" >&2
    exit 1
fi
