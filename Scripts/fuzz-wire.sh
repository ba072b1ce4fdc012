#!/usr/bin/env bash
# Builds the Wire codec's libFuzzer target (AddressSanitizer on) and runs it for a bounded time.
#
# usage: Scripts/fuzz-wire.sh [--seconds N] [--out DIR] [-- extra libFuzzer flags]
#   --seconds N   how long to fuzz (default 60)
#   --out DIR     where the binaries, corpus and crash artifacts go (default .build/fuzz-wire)
#
# The corpus in DIR/corpus persists between runs; DIR/seeds is regenerated from valid frames each run.
# A finding leaves its input in DIR/artifacts/ (crash-*, leak-*, timeout-*) and the script exits non-zero;
# replay one with: DIR/fuzz-wire DIR/artifacts/crash-<hash>
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=60
out="$root/.build/fuzz-wire"
extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "fuzz-wire: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz-wire: --seconds needs a whole number" >&2; exit 2; }

swiftc=${SWIFTC:-swiftc}
mkdir -p "$out/corpus" "$out/artifacts"
wire_sources=("$root"/Sources/Wire/*.swift)

# ld.gold warns about ASan's local symbols on every link; those warnings are harmless.
quiet_link() { grep -v "Cannot export local symbol" || true; }

echo "fuzz-wire: building the fuzz target (-sanitize=fuzzer,address)"
if ! "$swiftc" -O -g -sanitize=fuzzer,address -parse-as-library -module-name WireFuzz \
    "${wire_sources[@]}" "$root/Scripts/fuzz/FuzzWire.swift" -o "$out/fuzz-wire" 2>&1 | quiet_link; then
    echo "fuzz-wire: building the fuzz target failed" >&2
    exit 1
fi

echo "fuzz-wire: building the seed writer"
"$swiftc" -O -module-name WireSeeds "${wire_sources[@]}" "$root/Scripts/fuzz/seeds/main.swift" \
    -o "$out/wire-seeds"
rm -rf "$out/seeds"
"$out/wire-seeds" "$out/seeds"

echo "fuzz-wire: fuzzing for $seconds s (corpus $out/corpus)"
"$out/fuzz-wire" -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -dict="$root/Scripts/fuzz/wire.dict" -artifact_prefix="$out/artifacts/" -print_final_stats=1 \
    ${extra[@]+"${extra[@]}"} "$out/corpus" "$out/seeds"
