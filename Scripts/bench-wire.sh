#!/usr/bin/env bash
# Builds mope in release mode and times step→dist round trips through the codec and ZeroMQ with worker
# processes, next to a raw ZeroMQ echo measured in the same run.
#   Scripts/bench-wire.sh [extra `mope bench wire` arguments, e.g. --workers 1,2,4 --steps 50000]
set -euo pipefail
cd "$(dirname "$0")/.."
# pkg-config's libzmq flags make SwiftPM warn about "prohibited flags" on every build: harmless, hidden.
swift build -c release --product mope 2>&1 | { grep -v "prohibited flag" || true; }
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "bench-wire.sh: build failed" >&2; exit 1; }
exec "$(swift build -c release --show-bin-path)/mope" bench wire "$@"
