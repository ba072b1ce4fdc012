#!/bin/sh
# Micro-benchmark of the matmul kernels on SmolLM2-135M's matrix shapes.
# Compiles Scripts/bench-kernels.swift with the kernel sources (release flags of the Inference target) and
# runs it. Usage: Scripts/bench-kernels.sh [threads...]   (default: 1 2)
# Environment:
#   BENCH_FILTER=text   only the shapes whose name contains text (e.g. "Q4_1", "576->1536")
#   BENCH_IN_CACHE=1    one copy of each matrix (cache-resident) instead of ~96 MB of copies (DRAM)
#   BENCH_MODEL=1       instead: all matmuls of one SmolLM2-135M forward pass (q/k/v and gate/up fused as the
#                       model calls them), Swift vs packed C kernels: ms per pass, ratio to a 1-row pass,
#                       speed-up, and each product's share of the time (BENCH_BATCHES=1,3,16: those batches),
#                       after the machine's streaming read bandwidth for the GB/s column
# Columns: "G params/s" is multiply-adds per wall-clock second; "G params/CPU-s" per second of CPU time
# (spinning included), which stays meaningful when other processes share the machine.
set -eu
cd "$(dirname "$0")/.."
out="${TMPDIR:-/tmp}/mope-bench-kernels"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ckernels=$(Scripts/lib/ckernels.sh "$work/ckernels")
# shellcheck disable=SC2086
swiftc -Ounchecked -wmo -target-cpu native -parse-as-library -module-name BenchKernels -o "$out" \
    Scripts/bench-kernels.swift Sources/CPUKernels/*.swift $ckernels
"$out" "$@"
