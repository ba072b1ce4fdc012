#!/usr/bin/env bash
# Starts the coordinator of a mope cluster on this machine.
#
#   Deploy/start-coordinator.sh CONFIG [ENDPOINT] [-- extra mope coordinator options]
#
# ENDPOINT defaults to the config's "coordinator"; to accept workers and clients from other machines bind
# every interface, e.g. tcp://0.0.0.0:5555 (refused in plain text: give CURVE keys, or --insecure after --).
# With MOPE_CURVE_SECRET_KEY_FILE naming the coordinator's secret key file (mope keygen --out), traffic is
# CURVE-encrypted and the public key is logged at start (give the .pub file to workers and clients); with
# MOPE_CURVE_WORKER_KEYS / MOPE_CURVE_AUTHORIZED_KEYS (files of public keys, one per line) only the listed
# workers / clients may connect (clients use the next port). mope reads the variables itself: no key reaches
# the command line. MOPE overrides the binary.
# The coordinator drains on SIGTERM/SIGINT: running requests finish, new ones are refused.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
MOPE=${MOPE:-.build/release/mope}
config=$1; shift
args=(coordinator --config "$config")
if [ $# -gt 0 ] && [ "$1" != "--" ]; then args+=(--endpoint "$1"); shift; fi
[ $# -gt 0 ] && [ "$1" = "--" ] && shift
exec "$MOPE" "${args[@]}" "$@"
