#!/bin/bash
# llama.cpp's top-20 logits for the prompts of the numpy reference (Tests/Fixtures/reference-smollm2.json),
# written to Tests/Fixtures/reference-llamacpp-smollm2.json, then compared with mope's engine.
#
# Compiles Scripts/llamacpp-logits.cpp against the llama.cpp tree that Scripts/bench-engine.sh builds in
# .cache/llama.cpp/ (run that first, e.g. `Scripts/bench-engine.sh --build-only`), and
# Scripts/compare-logits.swift with the engine sources (Scripts/lib/build-compare-logits.sh).
#
# With --lora, the same for the model with a seeded LoRA adapter (Scripts/make-test-lora.py, rank 8, F16, every
# projection of every block; regenerated, not stored), written to Tests/Fixtures/reference-llamacpp-smollm2-lora.json,
# which the engine's tests compare with mope's unmerged adapter.
#
# Usage: Scripts/llamacpp-logits.sh [--model FILE] [--lora] [--build-only] [--compare-only]
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
model="models/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$model" ] || model="/work/main/models/SmolLM2-135M-Instruct.Q4_1.gguf"
build_only=0
compare_only=0
lora=0
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --build-only) build_only=1; shift ;;
        --compare-only) compare_only=1; shift ;;
        --lora) lora=1; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

cache="$root/.cache/llama.cpp"
tool="$cache/bin/llamacpp-logits"
reference="Tests/Fixtures/reference-smollm2.json"
fixture="Tests/Fixtures/reference-llamacpp-smollm2.json"
adapter_args=()
if [ "$lora" = 1 ]; then
    fixture="Tests/Fixtures/reference-llamacpp-smollm2-lora.json"
    adapter="$cache/smollm2-test-lora.gguf"
    mkdir -p "$cache"
    python3 Scripts/make-test-lora.py "$model" "$adapter" --rank 8 --seed 1 --type f16
    adapter_args=("$adapter")
fi

if [ "$compare_only" = 0 ]; then
    if [ ! -x "$tool" ] || [ Scripts/llamacpp-logits.cpp -nt "$tool" ]; then
        build_dir="$cache/build"
        # Scripts/bench-serve.sh --llama's build of llama-server has libllama too.
        [ -d "$build_dir" ] || build_dir="$cache/build-server"
        [ -d "$build_dir" ] || { echo "no llama.cpp build: run Scripts/bench-engine.sh --build-only" >&2; exit 1; }
        echo "== building llamacpp-logits" >&2
        # libllama and the ggml libraries (static); llama-bench's build produces them all.
        cmake --build "$build_dir" --config Release -j "$(nproc)" --target llama ggml >&2
        libs=("$build_dir/src/libllama.a")
        for name in ggml ggml-cpu ggml-base; do libs+=("$(find "$build_dir" -name "lib$name.a" | head -1)"); done
        mkdir -p "$cache/bin"
        g++ -O2 -std=c++17 -I "$cache/src/include" -I "$cache/src/ggml/include" Scripts/llamacpp-logits.cpp \
            "${libs[@]}" -fopenmp -lpthread -ldl -o "$tool"
    fi
    [ "$build_only" = 1 ] && exit 0

    echo "== llama.cpp logits for the prompts of $reference" >&2
    python3 - "$tool" "$model" "$reference" "$fixture" "${adapter_args[@]}" <<'PY'
import json, subprocess, sys
tool, model, reference, fixture = sys.argv[1:5]
adapter = sys.argv[5:]
cases = json.load(open(reference))
lines = "".join(" ".join(str(t) for t in c["tokens"]) + "\n" for c in cases)
out = subprocess.run([tool, model, "20", "1"] + adapter, input=lines, capture_output=True, text=True, check=True).stdout
rows = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
assert len(rows) == len(cases), (len(rows), len(cases))
result = [{"prompt": c["prompt"], "tokens": c["tokens"], "top_ids": r["top_ids"], "top_logits": r["top_logits"]}
          for c, r in zip(cases, rows)]
with open(fixture, "w") as f:
    json.dump(result, f, indent=1)
    f.write("\n")
print(f"wrote {fixture} ({len(result)} prompts)", file=sys.stderr)
PY
fi

if [ "$lora" = 1 ]; then
    echo "== compare: swift test --filter 'RealModelTests.*LoRA' (it regenerates the adapter)" >&2
    exit 0
fi
echo "== comparing mope's logits with llama.cpp's and numpy's" >&2
out=$(Scripts/lib/build-compare-logits.sh)
"$out" "$model" "$fixture" "$reference"
