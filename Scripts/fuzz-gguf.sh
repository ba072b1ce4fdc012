#!/usr/bin/env bash
# Builds the libFuzzer target over the GGUF reader and the tokenizer loader (AddressSanitizer on) and runs it,
# bounded by time or by the number of inputs.
#
# usage: Scripts/fuzz-gguf.sh [--seconds N | --runs N] [--out DIR] [-- extra libFuzzer flags]
#   --seconds N   how long to fuzz (default 60)
#   --runs N      how many inputs to run instead (libFuzzer's -runs)
#   --out DIR     where the binaries, corpus and crash artifacts go (default .build/fuzz-gguf)
#
# The Inference sources are compiled with the optimisation their release build uses (-O: bounds and overflow
# checks kept); the hot kernels, when they are a target of their own, with theirs (-Ounchecked). DIR/seeds is
# regenerated each run from the tiny models in Tests/Fixtures; DIR/corpus persists between runs. A finding leaves
# its input in DIR/artifacts/ (crash-*, leak-*, timeout-*, oom-*) and the script exits non-zero;
# replay one with: DIR/fuzz-gguf DIR/artifacts/crash-<hash>
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=60
runs=""
out="$root/.build/fuzz-gguf"
extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds) seconds="${2:-}"; shift 2 ;;
        --runs) runs="${2:-}"; shift 2 ;;
        --out) out="${2:-}"; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "fuzz-gguf: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz-gguf: --seconds needs a whole number" >&2; exit 2; }
[[ -z "$runs" || "$runs" =~ ^[0-9]+$ ]] || { echo "fuzz-gguf: --runs needs a whole number" >&2; exit 2; }

swiftc=${SWIFTC:-swiftc}
cpu=()
[[ -n "${MOPE_PORTABLE:-}" ]] || cpu=(-target-cpu native)
mkdir -p "$out/corpus" "$out/artifacts" "$out/modules"

# The kernels' own target, where the package has one; before that split they are part of Inference.
kernels_dir=""
for candidate in CPUKernels Kernels; do
    if [[ -d "$root/Sources/$candidate" ]]; then kernels_dir="$root/Sources/$candidate"; break; fi
done
mapfile -t inference_sources < <(find "$root/Sources/Inference" -name '*.swift' | sort)

# ld.gold warns about ASan's local symbols on every link; those warnings are harmless.
quiet_link() { grep -v "Cannot export local symbol" || true; }

# build OPT SANITIZE MAIN PRODUCT MODULE [FLAGS...]: the kernels module (when separate), then the Inference
# sources with MAIN into PRODUCT, at optimisation OPT. Skipped when PRODUCT is newer than every source.
build() {
    local opt=$1 sanitize=$2 main=$3 product=$4 name=$5
    shift 5
    if [[ -x "$product" ]] && [[ -z $(find "$root/Sources/Inference" ${kernels_dir:+"$kernels_dir"} "$main" \
        "$0" -newer "$product" -print -quit) ]]; then
        echo "fuzz-gguf: $(basename "$product") is up to date"
        return 0
    fi
    local kernel_args=()
    if [[ -n "$kernels_dir" ]]; then
        local kernels_module
        kernels_module=$(basename "$kernels_dir")
        mapfile -t kernel_sources < <(find "$kernels_dir" -name '*.swift' | sort)
        "$swiftc" -Ounchecked "${cpu[@]}" -g $sanitize -parse-as-library -wmo -module-name "$kernels_module" \
            -emit-module -emit-module-path "$out/modules/$kernels_module.swiftmodule" -emit-object \
            "${kernel_sources[@]}" -o "$out/modules/$kernels_module-$name.o"
        kernel_args=(-I "$out/modules" "$out/modules/$kernels_module-$name.o")
    fi
    "$swiftc" "$opt" "${cpu[@]}" -g $sanitize "$@" -module-name "$name" ${kernel_args[@]+"${kernel_args[@]}"} \
        "${inference_sources[@]}" "$main" -o "$product"
}

echo "fuzz-gguf: building the fuzz target (-sanitize=fuzzer,address)"
if ! build -O "-sanitize=fuzzer,address" "$root/Scripts/fuzz/FuzzGGUF.swift" "$out/fuzz-gguf" GGUFFuzz \
    -parse-as-library 2>&1 | quiet_link; then
    echo "fuzz-gguf: building the fuzz target failed" >&2
    exit 1
fi
[[ -x "$out/fuzz-gguf" ]] || { echo "fuzz-gguf: building the fuzz target failed" >&2; exit 1; }

echo "fuzz-gguf: building the seed writer"
build -Onone "" "$root/Scripts/fuzz/gguf-seeds/main.swift" "$out/gguf-seeds" GGUFSeeds
rm -rf "$out/seeds"
"$out/gguf-seeds" "$out/seeds" "$root/Tests/Fixtures"

bound=(-max_total_time="$seconds")
[[ -z "$runs" ]] || bound=(-runs="$runs")
export SWIFT_BACKTRACE=enable=no
echo "fuzz-gguf: fuzzing (${bound[*]}, corpus $out/corpus)"
"$out/fuzz-gguf" "${bound[@]}" -max_len=524288 -timeout=10 -rss_limit_mb=2048 -len_control=200 \
    -dict="$root/Scripts/fuzz/gguf.dict" -artifact_prefix="$out/artifacts/" -print_final_stats=1 \
    ${extra[@]+"${extra[@]}"} "$out/corpus" "$out/seeds"
