#!/usr/bin/env bash
# Sets up (idempotent), builds, and runs every test. This is the README's test command and what CI runs.
#   Scripts/test.sh [extra `swift test` arguments]
set -uo pipefail
cd "$(dirname "$0")/.."
Scripts/setup.sh || exit 1
# pkg-config's libzmq flags make SwiftPM warn about "prohibited flags" on every build: harmless, hidden.
quiet() { grep -v "prohibited flag" || true; }
swift build --build-tests 2>&1 | quiet
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || { echo "test.sh: build failed" >&2; exit "$rc"; }
swift test --skip-build "$@" 2>&1 | quiet
exit "${PIPESTATUS[0]}"
