# What the install scripts share (install-nginx.sh, install-redis.sh, install-prometheus.sh):
# installs Debian packages quietly, showing apt's output only when it fails. Source it from a
# POSIX sh script, then call
#
#   apt_install NAME SERVICE PACKAGES
#
# NAME names the calling script in errors; SERVICE is the system service the package starts
# where systemd is the init, disabled again (the tests start their own); PACKAGES is the list,
# space-separated. `apt-get update` runs first unless MOOSE_APT_UPDATED says scripts/test.sh
# already did. Afterwards the caller's own `--check` must pass.

apt_install() {
    name=$1 service=$2 packages=$3
    export DEBIAN_FRONTEND=noninteractive
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    if [ -z "${MOOSE_APT_UPDATED:-}" ] && ! apt-get update -qq >"$log" 2>&1; then
        cat "$log" >&2
        echo "$name: apt-get update failed" >&2
        exit 1
    fi
    # shellcheck disable=SC2086 # the package list is meant to split
    if ! apt-get install -y -qq --no-install-recommends $packages >"$log" 2>&1; then
        cat "$log" >&2
        echo "$name: apt-get install$packages failed" >&2
        exit 1
    fi
    if [ -d /run/systemd/system ]; then
        systemctl disable --now "$service" >/dev/null 2>&1 || true
    fi
    if ! sh "$0" --check; then
        echo "$name: still missing after apt-get install:$packages" >&2
        exit 1
    fi
}

# The tail of an install script: with MODE `--check`, exit 0 when PACKAGES is empty and 1
# otherwise; else install PACKAGES (nothing when empty) as apt_install does.
#
#   check_or_install NAME SERVICE PACKAGES "${1:-}"
check_or_install() {
    if [ "$4" = --check ]; then
        [ -z "$3" ]
        exit
    fi
    if [ -z "$3" ]; then
        exit 0
    fi
    apt_install "$1" "$2" "$3"
}
