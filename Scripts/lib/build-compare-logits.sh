#!/usr/bin/env bash
# Builds Scripts/compare-logits.swift with the engine's sources (Inference and CPUKernels compiled into one
# module, their cross-module imports dropped; the C kernels linked in by Scripts/lib/ckernels.sh) into the path given, default ${TMPDIR:-/tmp}/mope-compare-logits.
#   Scripts/lib/build-compare-logits.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-${TMPDIR:-/tmp}/mope-compare-logits}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for file in $(find Sources/Inference Sources/CPUKernels -name '*.swift'); do
    mkdir -p "$work/$(dirname "$file")"
    sed -e '/^import CPUKernels$/d' "$file" > "$work/$file"
done
ckernels=$(Scripts/lib/ckernels.sh "$work/ckernels")
# shellcheck disable=SC2086
swiftc -Ounchecked -wmo -target-cpu native -parse-as-library -module-name CompareLogits -o "$out" \
    Scripts/compare-logits.swift $(find "$work/Sources" -name '*.swift') $ckernels >&2
echo "$out"
