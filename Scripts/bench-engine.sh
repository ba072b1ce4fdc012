#!/bin/bash
# Engine benchmark against llama.cpp, both measured in the same run on the same model and thread count.
#
# Builds llama.cpp's llama-bench and llama-batched-bench (CPU only, native, Release) from the sources vendored
# in the PyPI sdist llama-cpp-python==0.3.36 into .cache/llama.cpp/ if they are not there yet, builds mope in
# release, then for each thread count runs
#   llama-bench -p P -n D                               prefill (ppP) and single-stream decode (tgD)
#   llama-batched-bench -npp 32 -ntg D -npl S           aggregate decode over S sequences (S_TG t/s)
#   mope bench engine                                   the same three figures
# and prints one table per thread count: figure, llama.cpp, mope, ratio (mope / llama.cpp).
#
# Usage: Scripts/bench-engine.sh [--threads 1,2] [--model FILE] [--prompt-tokens 512] [--decode-tokens 64]
#                                [--sessions 16] [--repeat 3] [--build-only]
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

threads="2"
model="models/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$model" ] || model="/work/main/models/SmolLM2-135M-Instruct.Q4_1.gguf"
prompt_tokens=512
decode_tokens=64
sessions=16
batched_prompt=32
repeat=3
build_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads="$2"; shift 2 ;;
        --model) model="$2"; shift 2 ;;
        --prompt-tokens) prompt_tokens="$2"; shift 2 ;;
        --decode-tokens) decode_tokens="$2"; shift 2 ;;
        --sessions) sessions="$2"; shift 2 ;;
        --repeat) repeat="$2"; shift 2 ;;
        --build-only) build_only=1; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

version="0.3.36"
cache="$root/.cache/llama.cpp"
src="$cache/src"
build="$cache/build"
bin="$build/bin"

# --- llama.cpp ---------------------------------------------------------------------------------------------------
fetch_llama_sources() {
    [ -f "$src/CMakeLists.txt" ] && return
    mkdir -p "$cache/dl"
    local sdist="$cache/dl/llama_cpp_python-$version.tar.gz"
    if [ ! -f "$sdist" ]; then
        echo "== downloading the llama-cpp-python $version sdist" >&2
        # pip prepares the package metadata of an sdist even for `download`; with cmake on the PATH that is quick.
        pip download --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$cache/dl" >&2 ||
            pip download --no-deps --no-binary :all: --no-build-isolation "llama-cpp-python==$version" \
                -d "$cache/dl" >&2
    fi
    echo "== unpacking vendor/llama.cpp" >&2
    rm -rf "$src" "$cache/unpack"
    mkdir -p "$cache/unpack"
    tar xzf "$sdist" -C "$cache/unpack" "llama_cpp_python-$version/vendor/llama.cpp"
    mv "$cache/unpack/llama_cpp_python-$version/vendor/llama.cpp" "$src"
    rm -rf "$cache/unpack"
}

build_llama() {
    if [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-batched-bench" ]; then return; fi
    command -v cmake >/dev/null || { echo "cmake is missing: apt-get install -y cmake" >&2; exit 1; }
    fetch_llama_sources
    echo "== building llama-bench and llama-batched-bench (this takes several minutes)" >&2
    cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
        -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF >&2
    cmake --build "$build" --config Release -j "$(nproc)" --target llama-bench llama-batched-bench >&2
}

build_llama
[ -x Scripts/llamacpp-logits.sh ] && [ "$build_only" = 1 ] && Scripts/llamacpp-logits.sh --build-only
[ "$build_only" = 1 ] && exit 0

# --- mope ----------------------------------------------------------------------------------------------------------
echo "== building mope (release)" >&2
swift build -c release --product mope >&2
mope="$(swift build -c release --show-bin-path)/mope"
# `mope bench engine` (the benchmark group), or `mope engine` in a tree without the group.
if "$mope" --help | grep -q "^  bench "; then engine=(bench engine); else engine=(engine); fi

[ -f "$model" ] || { echo "model not found: $model (pass --model FILE)" >&2; exit 1; }

# --- runs --------------------------------------------------------------------------------------------------------
# Median of a column of numbers on stdin.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2];
    else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "== load before: $(uptime)" >&2
# Other processes on the same CPUs distort both sides, llama.cpp's spinning threads most: say so.
if awk -v n="$(nproc)" '{ exit !($1 > n) }' /proc/loadavg; then
    echo "warning: load average $(cut -d' ' -f1 /proc/loadavg) exceeds $(nproc) CPUs; figures are unreliable" >&2
fi
IFS=',' read -r -a thread_list <<< "$threads"
for t in "${thread_list[@]}"; do
    echo "== $t thread(s)" >&2
    # llama-bench: one JSON object per test, avg_ts is the mean over -r repetitions.
    lb_json="$("$bin/llama-bench" -m "$model" -t "$t" -p "$prompt_tokens" -n "$decode_tokens" -r "$repeat" -o json \
        2>/dev/null)"
    read -r llama_pp llama_tg < <(python3 -c '
import json, sys
runs = json.loads(sys.stdin.read())
pp = [r["avg_ts"] for r in runs if r["n_prompt"] > 0 and r["n_gen"] == 0]
tg = [r["avg_ts"] for r in runs if r["n_gen"] > 0 and r["n_prompt"] == 0]
print(pp[0] if pp else "nan", tg[0] if tg else "nan")' <<< "$lb_json")

    # llama-batched-bench: the table row "|  PP |  TG |  B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | ...";
    # S_TG = B * TG / T_TG counts generated tokens only. Repeat the run and take the median.
    llama_agg="$(for _ in $(seq "$repeat"); do
        "$bin/llama-batched-bench" -m "$model" -t "$t" -tb "$t" -c $(( sessions * (batched_prompt + decode_tokens) + 64 )) \
            -b 2048 -ub 512 -npp "$batched_prompt" -ntg "$decode_tokens" -npl "$sessions" 2>&1 |
            awk -F'|' -v b="$sessions" '$4 + 0 == b && NF > 9 { gsub(/ /, "", $9); print $9 }'
    done | median)"

    mope_json="$("$mope" "${engine[@]}" --model "$model" --threads "$t" --prompt-tokens "$prompt_tokens" \
        --decode-tokens "$decode_tokens" --sessions "$sessions" --repeat "$repeat" | grep '^{')"
    read -r mope_pp mope_tg mope_agg < <(python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
print(r["prefill_tok_s"], r["decode_tok_s"], r["aggregate_decode_tok_s"])' <<< "$mope_json")

    python3 - "$t" "$prompt_tokens" "$decode_tokens" "$sessions" \
        "$llama_pp" "$mope_pp" "$llama_tg" "$mope_tg" "$llama_agg" "$mope_agg" <<'EOF'
import sys
t, p, d, s = sys.argv[1:5]
vals = [float(x) for x in sys.argv[5:]]
rows = [(f"prefill pp{p} (tok/s)", vals[0], vals[1]),
        (f"decode tg{d}, 1 stream (tok/s)", vals[2], vals[3]),
        (f"decode, {s} sessions aggregate (tok/s)", vals[4], vals[5])]
print(f"\n{t} thread(s)")
print(f"{'figure':<40} {'llama.cpp':>10} {'mope':>10} {'ratio':>7}")
for name, a, b in rows:
    print(f"{name:<40} {a:>10.1f} {b:>10.1f} {b / a:>6.2f}x")
EOF
done
echo "== load after: $(uptime)" >&2
