#!/usr/bin/env bash
# Runs every check and every test of the workspace; the README's test command and what CI runs.
#
#   scripts/test.sh
#
# On a fresh Debian 12 machine (root, with cargo and gcc) it first installs what the tests need
# and is missing (cargo-nextest and cargo-deny from crates.io, Chromium for the real-browser
# call, CMake for the bundled libopus, nginx and systemd-analyze for the deployment tests,
# redis-server for the cluster's tests, promtool (Debian's prometheus) for the monitoring
# kit's, tmux for moose-call's terminal UI test, ALSA's headers for moose-call's sound devices,
# GNU patch for step 4), raises the
# locked-memory limit glommio needs, then runs, stopping at the first failing step:
#   1. cargo fmt --check
#   2. cargo clippy on every target, warnings denied
#   3. cargo deny: dependency licenses, bans and sources (deny.toml; no advisory database)
#   4. the glommio patch of docs/benchmarks.md ("Experiment") still applies
#   5. the doc tests
#   6. every test with cargo-nextest (settings in .config/nextest.toml; the programs the tests
#      start are built first, as the test kit builds them)
#   7. every fuzz target for 10 s (scripts/fuzz.sh: nightly and cargo-fuzz, installed if missing)
# Every build is --locked: a Cargo.lock that no longer matches the manifests fails the run
# instead of being rewritten, so what was tested is what the lock file says. Every build and
# check also has moose-call's sound devices (`--features moose-bench/sound-devices`, the same
# everywhere so that no step builds the workspace a second time with other features; the test
# kit builds the programs with the features of its own build, testkit/src/binary.rs).
# Exit status: 0 when everything passed, otherwise that of the failing step (78 when the
# machine cannot run the relay at all).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=$SECONDS
if [ -n "${CI:-}" ]; then
    # Logs, not terminals: no colour codes, no incremental caches in a fresh clone.
    export CARGO_TERM_COLOR=never CARGO_INCREMENTAL=0
fi
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
color="${CARGO_TERM_COLOR:-auto}"

say() { printf '==> %s\n' "$*"; }
fail() {
    printf 'test.sh: %s\n' "$*" >&2
    exit "${2:-1}"
}

# Runs one step, prints how long it took, and stops the script with the step's status if it
# failed.
step() {
    local name=$1
    shift
    say "$name"
    local t0=$SECONDS status=0
    "$@" || status=$?
    if [ "$status" -ne 0 ]; then
        printf 'test.sh: FAILED: %s (exit %d, after %ds; %ds in all)\n' \
            "$name" "$status" $((SECONDS - t0)) $((SECONDS - started)) >&2
        exit "$status"
    fi
    printf '    ok: %s (%ds)\n' "$name" $((SECONDS - t0))
}

# --- What the tests need from the machine ------------------------------------------------

command -v cargo >/dev/null || fail "cargo is not on PATH (install Rust with rustup)"
for tool in fmt clippy; do
    cargo "$tool" --version >/dev/null 2>&1 ||
        fail "cargo $tool is missing: rustup component add $([ $tool = fmt ] && echo rustfmt || echo clippy)"
done
if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest (crates.io)"
    cargo install --quiet --locked cargo-nextest || fail "cargo install cargo-nextest failed"
fi
if ! cargo deny --version >/dev/null 2>&1; then
    say "installing cargo-deny (crates.io)"
    cargo install --quiet --locked cargo-deny || fail "cargo install cargo-deny failed"
fi

# Each install script checks for its tools and does nothing when they are there. apt's package
# lists are refreshed once, here, and only when one of them is going to install something;
# MOOSE_APT_UPDATED tells the scripts it was done.
needs_browser=0
needs_opus=0
needs_nginx=0
needs_redis=0
needs_prometheus=0
needs_patch=0
needs_terminal=0
needs_alsa=0
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || needs_browser=1
{ command -v cmake >/dev/null 2>&1 && command -v cc >/dev/null 2>&1; } || needs_opus=1
sh scripts/install-nginx.sh --check || needs_nginx=1
sh scripts/install-redis.sh --check || needs_redis=1
sh scripts/install-prometheus.sh --check || needs_prometheus=1
command -v patch >/dev/null 2>&1 || needs_patch=1
sh scripts/install-terminal.sh --check || needs_terminal=1
sh scripts/install-alsa.sh --check || needs_alsa=1
if [ $((needs_browser + needs_opus + needs_nginx + needs_redis + needs_prometheus + needs_patch + needs_terminal + needs_alsa)) -gt 0 ]; then
    say "installing test dependencies (apt)"
    [ "$(id -u)" -eq 0 ] ||
        fail "missing packages (chromium, cmake, nginx, redis-server, prometheus, tmux, libasound2-dev, ...) and not root to install them"
    export DEBIAN_FRONTEND=noninteractive
    apt_log=$(mktemp)
    if ! apt-get update -qq >"$apt_log" 2>&1; then
        cat "$apt_log" >&2
        rm -f "$apt_log"
        fail "apt-get update failed"
    fi
    rm -f "$apt_log"
    export MOOSE_APT_UPDATED=1
    if [ "$needs_opus" -eq 1 ]; then
        sh scripts/install-opus.sh || fail "scripts/install-opus.sh failed"
    fi
    if [ "$needs_browser" -eq 1 ]; then
        sh scripts/install-browser.sh || fail "scripts/install-browser.sh failed"
    fi
    if [ "$needs_nginx" -eq 1 ]; then
        sh scripts/install-nginx.sh || fail "scripts/install-nginx.sh failed"
    fi
    if [ "$needs_redis" -eq 1 ]; then
        sh scripts/install-redis.sh || fail "scripts/install-redis.sh failed"
    fi
    if [ "$needs_prometheus" -eq 1 ]; then
        sh scripts/install-prometheus.sh || fail "scripts/install-prometheus.sh failed"
    fi
    if [ "$needs_terminal" -eq 1 ]; then
        sh scripts/install-terminal.sh || fail "scripts/install-terminal.sh failed"
    fi
    if [ "$needs_alsa" -eq 1 ]; then
        sh scripts/install-alsa.sh || fail "scripts/install-alsa.sh failed"
    fi
    if [ "$needs_patch" -eq 1 ]; then
        apt-get install -y -qq patch >/dev/null || fail "apt-get install patch failed"
    fi
    echo "    ok: test dependencies installed"
fi

# glommio registers its io_uring buffers as locked memory: the relay needs 768 KiB per core
# (relay/src/preflight.rs), and the tests run several 2-core relays at once, which for a
# user without CAP_IPC_LOCK count against one limit. The relay raises its own soft limit up to
# the hard one; here both go as high as this shell may take them, so a low default (64 KiB on
# older kernels and in some containers) does not fail every relay test.
if [ "$(ulimit -l)" != unlimited ]; then
    ulimit -l unlimited 2>/dev/null || ulimit -l "$(ulimit -H -l)" 2>/dev/null || true
fi
memlock=$(ulimit -l)
if [ "$memlock" != unlimited ] && [ "$memlock" -lt 4096 ]; then
    fail "RLIMIT_MEMLOCK is ${memlock} KiB and cannot be raised; the relay tests need at \
least 4096 KiB. As root: ulimit -l unlimited; for a container: --ulimit memlock=-1." 78
fi
say "machine: $(nproc) CPUs, memlock $(ulimit -l) KiB, $(cargo --version)"
features=(--features moose-bench/sound-devices)

# --- Checks and tests --------------------------------------------------------------------

step "cargo fmt --check" cargo fmt --all --check -- --color "$color"
step "cargo clippy (all targets, -D warnings)" \
    cargo clippy --locked --quiet --workspace --all-targets "${features[@]}" --color "$color" -- -D warnings
# Only the checks that need no network beyond crates.io: `advisories` would fetch a database.
# Duplicate versions are reported as warnings and do not fail the step.
step "cargo deny (licenses, bans, sources)" \
    cargo deny --locked --color "$color" check licenses bans sources
step "the glommio COOP_TASKRUN patch applies" bash scripts/build-coop-relay.sh --check
# Doc tests are compile-checked examples (cargo-nextest does not run them); before the main run
# so that nextest's summary is the last thing printed.
step "doc tests" cargo test --locked --quiet --workspace --doc "${features[@]}" --color "$color"
step "build the tests" \
    cargo nextest run --locked --workspace --all-targets "${features[@]}" --no-run --cargo-quiet --color "$color"
# The programs the scenario tests start (relay, moose-call, moose-bench) come from one build of
# their own (testkit/src/binary.rs, `BUILD`): made here, it is a step with its own time, not a
# wait inside the first test that asks.
step "build the programs the tests run" \
    cargo build --quiet --locked -p moose-relay -p moose-bench \
    --bin moose-relay --bin moose-call --bin moose-bench "${features[@]}" --color "$color"
step "run every test (cargo nextest)" \
    cargo nextest run --locked --workspace --all-targets "${features[@]}" --cargo-quiet --color "$color"
step "fuzz every decoder briefly" bash scripts/fuzz.sh 10

elapsed=$((SECONDS - started))
say "all checks and tests passed in $((elapsed / 60))m$((elapsed % 60))s"
