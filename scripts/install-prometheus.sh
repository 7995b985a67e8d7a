#!/bin/sh
# Installs what the monitoring kit's test needs (relay/tests/monitoring_rules_match_the_relay.rs):
# Debian's prometheus package, for `promtool check rules` and `promtool test rules` over
# deploy/monitoring/, and python3-yaml to read the rule files. The test runs promtool only; it
# starts no Prometheus server.
#
#   scripts/install-prometheus.sh           install what is missing (root), nothing when all is there
#   scripts/install-prometheus.sh --check   exit 0 when all is there, 1 otherwise; installs nothing
#
# Runs `apt-get update` first unless MOOSE_APT_UPDATED says scripts/test.sh already did.
# Quiet unless it fails.
set -eu

packages=""
[ -x /usr/bin/promtool ] || packages="$packages prometheus"
# The test reads the rule files through PyYAML (testkit/src/yaml.rs).
python3 -c 'import yaml' 2>/dev/null || packages="$packages python3-yaml"

# Where systemd is the init, Debian's package starts a system Prometheus on port 9090; the test
# needs no server (apt_install disables it).
. "$(dirname "$0")/lib/apt.sh"
check_or_install install-prometheus.sh prometheus "$packages" "${1:-}"
