#!/bin/sh
# Installs what the `opus` crate needs to build: its `opusic-sys` dependency compiles the
# bundled libopus with CMake and links it statically, so the only host tools it needs are
# cmake and a C compiler. Idempotent: does nothing when both are already on PATH.
# Needs root (apt-get) only when something is missing. Quiet unless it fails.
set -eu
if command -v cmake >/dev/null 2>&1 && command -v cc >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# scripts/test.sh refreshes the package lists once for every install script and says so.
if ! { { [ -n "${MOOSE_APT_UPDATED:-}" ] || apt-get update -qq; } && apt-get install -y -qq --no-install-recommends cmake make gcc libc6-dev; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-opus.sh: apt-get failed" >&2
    exit 1
fi
command -v cmake >/dev/null 2>&1 || { echo "install-opus.sh: cmake still not on PATH" >&2; exit 1; }
