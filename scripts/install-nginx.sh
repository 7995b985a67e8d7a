#!/bin/sh
# Installs what the deployment tests need (relay/tests/behind_nginx.rs,
# relay/tests/deploy_configs_valid.rs): Debian's nginx with its stream module (the VoRS TCP and
# UDP proxy of deploy/nginx/), openssl (the tests' self-signed certificate), systemd (only for
# `systemd-analyze verify` on deploy/moose-relay.service: the package installs the tools, it
# does not make systemd this machine's init), curl (the unit's readiness check, which verify
# requires to exist), PyYAML (to parse the Kubernetes manifest) and strace (to check that the
# relay makes no syscall the seccomp profile refuses).
#
#   scripts/install-nginx.sh           install what is missing (root), nothing when all is there
#   scripts/install-nginx.sh --check   exit 0 when all is there, 1 otherwise; installs nothing
#
# Runs `apt-get update` first unless MOOSE_APT_UPDATED says scripts/test.sh already did.
# Quiet unless it fails.
set -eu

packages=""
[ -x /usr/sbin/nginx ] || packages="$packages nginx"
# Debian builds the stream module as a dynamic module that nginx.conf loads (load_module).
[ -f /usr/lib/nginx/modules/ngx_stream_module.so ] || packages="$packages libnginx-mod-stream"
command -v openssl >/dev/null 2>&1 || packages="$packages openssl"
command -v systemd-analyze >/dev/null 2>&1 || packages="$packages systemd"
[ -x /usr/bin/curl ] || packages="$packages curl"
command -v strace >/dev/null 2>&1 || packages="$packages strace"
python3 -c 'import yaml' >/dev/null 2>&1 || /usr/bin/python3 -c 'import yaml' >/dev/null 2>&1 ||
    packages="$packages python3-yaml"

if [ "${1:-}" = --check ]; then
    [ -z "$packages" ]
    exit
fi
if [ -z "$packages" ]; then
    exit 0
fi

# Where systemd is the init, Debian's package starts nginx on port 80; the tests start their
# own nginx and need no system one (apt_install disables it).
. "$(dirname "$0")/lib/apt.sh"
apt_install install-nginx.sh nginx "$packages"
