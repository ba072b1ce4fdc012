#!/usr/bin/env bash
# Starts one expert worker on this machine against a coordinator anywhere.
#
#   Deploy/start-worker.sh COORDINATOR CONFIG EXPERT [ID] [-- extra mope worker options]
#
# COORDINATOR is the coordinator's address as this machine reaches it, e.g. tcp://10.0.0.5:5555.
# CONFIG is a cluster config with the expert's model path (relative paths resolve from the working
# directory, then from the config's folder) and system prompt. ID defaults to EXPERT-HOSTNAME-PID; give
# replicas distinct ids. EXPERT may list several experts of one model file, comma-separated, to serve them
# from one process (then ID lists one id per expert). With MOPE_CURVE_SERVER_KEY_FILE naming the
# coordinator's public key file the connection is CURVE-encrypted (MOPE_CURVE_SECRET_KEY_FILE: this worker's
# own secret key file, mode 0600, for a coordinator that admits listed keys only); mope reads both variables
# itself. MOPE overrides the mope binary; MOPE_THREADS sets the forward-pass threads.
# The worker drains on SIGTERM/SIGINT.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 3 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
MOPE=${MOPE:-.build/release/mope}
coordinator=$1 config=$2 expert=$3; shift 3
args=(worker --coordinator "$coordinator" --config "$config" --expert "$expert")
if [ $# -gt 0 ] && [ "$1" != "--" ]; then args+=(--id "$1"); shift; fi
[ $# -gt 0 ] && [ "$1" = "--" ] && shift
[ -n "${MOPE_THREADS:-}" ] && args+=(--threads "$MOPE_THREADS")
exec "$MOPE" "${args[@]}" "$@"
