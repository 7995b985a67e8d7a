#!/usr/bin/env bash
# Fuzzes every decoder of moose-proto with cargo-fuzz (libFuzzer), starting from the seeds.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; with no TARGET every target in fuzz/fuzz_targets runs,
# one after the other. cargo-fuzz needs a nightly toolchain: this installs it (rustup,
# minimal profile) and cargo-fuzz (cargo install --locked) when they are missing. It builds
# all targets once, then runs each on its working corpus fuzz/corpus/<target> (kept between
# runs, ignored by git) plus the checked-in seeds fuzz/seeds/<target>, and prints the
# executions of each from libFuzzer's final stats.
# Exit status: 0 when no target crashed; otherwise 1, after naming each crash's artifact
# (reproduce: cargo +nightly fuzz run <target> <artifact>). 2 for a usage error.
# FUZZ_JOBS=N runs N targets at once (default 1: CI machines are small).
set -euo pipefail

# The whole script is one block, read before it runs: editing this file during a long run
# cannot change what the run does.
{
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-60}
case $seconds in
'' | *[!0-9]*) echo "fuzz.sh: SECONDS_PER_TARGET must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac
shift $(($# > 0 ? 1 : 0))

toolchain=nightly
if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
    command -v rustup >/dev/null ||
        { echo "fuzz.sh: needs a nightly Rust toolchain, and rustup to install one" >&2; exit 2; }
    echo "==> installing the nightly toolchain (rustup)"
    rustup toolchain install --profile minimal nightly
fi
if ! cargo "+$toolchain" fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz (crates.io)"
    cargo install --quiet --locked cargo-fuzz
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo "+$toolchain" fuzz list)
fi
for t in "${targets[@]}"; do
    [ -f "fuzz/fuzz_targets/$t.rs" ] || { echo "fuzz.sh: no target '$t' (cargo +nightly fuzz list)" >&2; exit 2; }
done

echo "==> building ${#targets[@]} fuzz targets"
# cargo-fuzz takes no --locked: fetching with it first fails when fuzz/Cargo.lock no longer
# matches the manifests, and the build then resolves to exactly that lock.
(cd fuzz && cargo "+$toolchain" fetch --locked --quiet)
cargo "+$toolchain" fuzz build

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# Runs one target; its libFuzzer output goes to $logs/<target>.log, its status to .rc.
run_one() {
    local t=$1 status=0
    mkdir -p "fuzz/corpus/$t"
    # -timeout: an input that takes over 10 s is a hang, reported as a crash.
    cargo "+$toolchain" fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
        >"$logs/$t.log" 2>&1 || status=$?
    echo "$status" >"$logs/$t.rc"
}

failed=()
jobs_max=${FUZZ_JOBS:-1}
echo "==> fuzzing each target for ${seconds}s"
for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
    run_one "$t" &
done
wait

printf '%-14s %14s %12s %8s  %s\n' target executions exec/s corpus result
for t in "${targets[@]}"; do
    status=$(cat "$logs/$t.rc")
    log="$logs/$t.log"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    if [ "$status" -eq 0 ]; then
        result=ok
    else
        failed+=("$t")
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        result="CRASH: ${artifact:-see the log below}"
    fi
    printf '%-14s %14s %12s %8s  %s\n' "$t" "${runs:-?}" "${rate:-?}" "$corpus" "$result"
done

if [ ${#failed[@]} -gt 0 ]; then
    for t in "${failed[@]}"; do
        echo "---- $t: last lines of libFuzzer's output" >&2
        tail -n 40 "$logs/$t.log" >&2
    done
    echo "fuzz.sh: ${#failed[@]} target(s) crashed: ${failed[*]}." >&2
    echo "Reproduce: cargo +nightly fuzz run <target> <artifact>; keep the bytes as a unit test." >&2
    exit 1
fi
echo "==> no crash in ${#targets[@]} targets"
exit 0
}
