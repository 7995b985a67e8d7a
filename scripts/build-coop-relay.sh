#!/usr/bin/env bash
# Builds the relay against glommio 0.9.0 with scripts/glommio/coop-taskrun.patch applied: its
# rings are created with IORING_SETUP_COOP_TASKRUN. A measurement build and a proposal for
# glommio, not the shipped relay (docs/benchmarks.md, "Experiment"; architecture.md section 11).
#
#   scripts/build-coop-relay.sh           builds it and prints the path of that moose-relay
#   scripts/build-coop-relay.sh --check   only checks that the patch applies to the glommio
#                                         of Cargo.lock (scripts/test.sh runs this)
#
# The crate from cargo's registry is copied to target/glommio-coop and patched there; the
# build goes to target/coop, so the ordinary build in target/ is left alone. Cargo.lock is
# restored afterwards (the [patch] turns glommio into a path dependency while it builds).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

check=0
case "${1:-}" in
--check) check=1 ;;
"") ;;
*)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac

command -v patch >/dev/null || {
    echo "$0: needs GNU patch (apt-get install patch)" >&2
    exit 1
}
cargo fetch --locked >/dev/null
# Where cargo unpacked the locked glommio (its Cargo.toml's directory).
glommio=$(cargo metadata --locked --format-version 1 |
    grep -o '"manifest_path":"[^"]*/glommio-[^"/]*/Cargo.toml"' | sed 's/.*:"//; s|/Cargo.toml"||')
[ "$(basename "${glommio:-none}")" = glommio-0.9.0 ] || {
    echo "$0: the patch is for glommio 0.9.0, the lock file has ${glommio:-none}" >&2
    exit 1
}

if [ "$check" -eq 1 ]; then
    patch --dry-run --quiet -F0 -d "$glommio" -p1 <scripts/glommio/coop-taskrun.patch
    exit
fi

patched=$PWD/target/glommio-coop
rm -rf "$patched"
mkdir -p target
cp -r "$glommio" "$patched"
patch --quiet -F0 -d "$patched" -p1 <scripts/glommio/coop-taskrun.patch

cp Cargo.lock target/coop-Cargo.lock
trap 'mv target/coop-Cargo.lock Cargo.lock' EXIT
# The patched crate is a path dependency, so its own warnings are not capped: keep the log and
# show it only when the build fails.
CARGO_TARGET_DIR=target/coop cargo build --release -p moose-relay \
    --config "patch.crates-io.glommio.path=\"$patched\"" >target/coop-build.log 2>&1 || {
    cat target/coop-build.log >&2
    exit 1
}
echo "$PWD/target/coop/release/moose-relay"
