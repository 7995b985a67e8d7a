#!/bin/sh
# Installs what the cluster's tests need (relay/tests/cluster_*.rs, testkit/src/redis.rs):
# Debian's redis-server (Redis 7), which the tests start themselves on free loopback ports (as
# primaries, replicas, and sentinels: `redis-server --sentinel`, the same binary; its redis-tools
# dependency brings the redis-cli the tests ask them with), and openssl, which makes the
# certificates of the TLS Redis (rediss://) a test starts.
#
#   scripts/install-redis.sh           install what is missing (root), nothing when all is there
#   scripts/install-redis.sh --check   exit 0 when all is there, 1 otherwise; installs nothing
#
# Runs `apt-get update` first unless MOOSE_APT_UPDATED says scripts/test.sh already did.
# Quiet unless it fails.
set -eu

packages=""
[ -x /usr/bin/redis-server ] || packages="$packages redis-server"
[ -x /usr/bin/openssl ] || packages="$packages openssl"

if [ "${1:-}" = --check ]; then
    [ -z "$packages" ]
    exit
fi
if [ -z "$packages" ]; then
    exit 0
fi

# Where systemd is the init, Debian's package starts a system Redis on port 6379; the tests start
# their own and need no system one (apt_install disables it).
. "$(dirname "$0")/lib/apt.sh"
apt_install install-redis.sh redis-server "$packages"
