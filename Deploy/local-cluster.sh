#!/usr/bin/env bash
# Runs a whole cluster on this machine: the coordinator and one worker per expert replica of CONFIG.
#
#   Deploy/local-cluster.sh [CONFIG] [-- extra mope cluster options, e.g. --threads 1]
#
# CONFIG defaults to Configs/psoups-local.json. Prints "cluster ready" once the coordinator's status says every
# expert has its replicas live (`mope status --coordinator CLIENT-ADDR` shows it too);
# Ctrl-C (or SIGTERM) stops every process. CURVE is on: give --keys DIR to keep the client key
# (DIR/client.key, DIR/coordinator.pub) for mope generate and mope status. MOPE overrides the mope binary.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
MOPE=${MOPE:-.build/release/mope}
config=Configs/psoups-local.json
if [ $# -gt 0 ] && [ "$1" != "--" ]; then config=$1; shift; fi
[ $# -gt 0 ] && [ "$1" = "--" ] && shift
exec "$MOPE" cluster --config "$config" "$@"
