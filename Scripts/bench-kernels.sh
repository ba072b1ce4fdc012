#!/bin/sh
# Micro-benchmark of the matmul kernels on SmolLM2-135M's matrix shapes.
# Compiles Scripts/bench-kernels.swift with the kernel sources (release flags of the Inference target) and
# runs it. Usage: Scripts/bench-kernels.sh [threads...]   (default: 1 2)
set -eu
cd "$(dirname "$0")/.."
out="${TMPDIR:-/tmp}/mope-bench-kernels"
swiftc -Ounchecked -wmo -target-cpu native -parse-as-library -module-name BenchKernels -o "$out" \
    Scripts/bench-kernels.swift Sources/Inference/Kernels/*.swift Sources/Inference/GGUF/GGMLType.swift
exec "$out" "$@"
