#!/bin/sh
# Installs what moose-call's terminal UI test needs (bench/tests/moose_call_tui.rs,
# testkit/src/tmux.rs): Debian's tmux, in which the test runs moose-call full screen, types
# keys and reads the screen.
#
#   scripts/install-terminal.sh           install what is missing (root), nothing when all is there
#   scripts/install-terminal.sh --check   exit 0 when all is there, 1 otherwise; installs nothing
#
# Runs `apt-get update` first unless MOOSE_APT_UPDATED says scripts/test.sh already did.
# Quiet unless it fails.
set -eu

# The packages still missing, space-separated.
missing() {
    command -v tmux >/dev/null 2>&1 || printf ' tmux'
}

case "${1:-}" in
--check) [ -z "$(missing)" ]; exit ;;
esac
[ -n "$(missing)" ] || exit 0

# tmux starts no system service; the service name given to apt_install is a placeholder.
. "$(dirname "$0")/lib/apt.sh"
apt_install install-terminal.sh tmux.service "$(missing)"
