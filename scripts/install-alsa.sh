#!/bin/sh
# Installs what moose-call's sound devices need (the `sound-devices` feature of moose-bench,
# which scripts/test.sh builds with): ALSA's headers and pkg-config, with which the `alsa-sys`
# crate builds against libasound, and alsa-utils (`arecord -L`, `aplay -L`: to see the devices
# by hand). The tests need no sound card: bench/tests/moose_call_devices.rs writes its own
# `.asoundrc` of `file` and `null` plugins.
#
#   scripts/install-alsa.sh           install what is missing (root), nothing when all is there
#   scripts/install-alsa.sh --check   exit 0 when all is there, 1 otherwise; installs nothing
#
# Runs `apt-get update` first unless MOOSE_APT_UPDATED says scripts/test.sh already did.
# Quiet unless it fails.
set -eu

# The packages still missing, space-separated.
missing() {
    [ -f /usr/include/alsa/asoundlib.h ] || printf ' libasound2-dev'
    command -v pkg-config >/dev/null 2>&1 || printf ' pkg-config'
    command -v arecord >/dev/null 2>&1 || printf ' alsa-utils'
}

case "${1:-}" in
--check) [ -z "$(missing)" ]; exit ;;
esac
[ -n "$(missing)" ] || exit 0

# alsa-utils brings alsa-restore and alsa-state units, which do nothing without a sound card;
# apt_install disables the one named here where systemd is the init.
. "$(dirname "$0")/lib/apt.sh"
apt_install install-alsa.sh alsa-restore.service "$(missing)"
