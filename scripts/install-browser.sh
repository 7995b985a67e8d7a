#!/bin/sh
# Installs Debian's chromium for the real-browser call test (relay/tests/browser_call.rs).
# Idempotent: does nothing when chromium is already on PATH. Needs root (apt-get).
set -eu
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# scripts/test.sh refreshes the package lists once for every install script and says so.
[ -n "${MOOSE_APT_UPDATED:-}" ] || apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "chromium still not on PATH" >&2; exit 1; }
