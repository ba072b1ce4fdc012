#!/usr/bin/env bash
# The merged job end to end: mope's cluster against the script a user would write with llama-cpp-python.
#
# Three experts of one model file (concise, friendly, knowledgeable under their Personalized Soups prompts, the
# real SmolLM2-135M-Instruct Q4_1), a top-64 probability merge with equal weights, greedy, REQUESTS requests of
# up to MAX_TOKENS tokens one after the other.
#   mope:      `mope cluster` in its default topology (it prints the one it chose for the cores present), then
#              `mope generate` per request; the time runs from the first request's start to the last one's end.
#   reference: Scripts/lib/merged-reference.py, three llama-cpp-python `Llama`s in one process, the same merge.
# Both run REPEAT times, alternating; the figure is tokens per second (median), and the ratio mope / reference.
#
#   Scripts/bench-merged.sh [--repeat 3] [--max-tokens 64] [--threads N] [--no-build]
#
# Installs llama-cpp-python==0.3.36 from its sdist (a native build of the llama.cpp it vendors; several minutes)
# when it is missing. --threads sets the reference's threads and mope's threads per worker (default: mope's own
# default, the reference 2).
set -euo pipefail
cd "$(dirname "$0")/.."
. Scripts/lib/cluster.sh
repeat=3
max_tokens=64
threads=""
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --repeat) repeat="$2"; shift 2 ;;
        --max-tokens) max_tokens="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-merged: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
MODEL=$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf
MOPE=.build/release/mope
PROMPTS=("Explain how a rainbow forms." "What should I pack for a weekend hike?"
         "Why do cats purr?" "How does a bicycle stay upright?")

[ -f "$MODEL" ] || Scripts/setup.sh
[ "$build" = 0 ] || swift build -c release 2>&1 | grep -v "prohibited flag" | tail -1
if ! python3 -c 'import llama_cpp' 2>/dev/null; then
    echo "bench-merged: installing llama-cpp-python==0.3.36 from its sdist (native build, several minutes)"
    CMAKE_ARGS="-DGGML_NATIVE=ON" python3 -m pip install -q --disable-pip-version-check --no-binary llama-cpp-python \
        llama-cpp-python==0.3.36
fi

with_launcher_cleanup

cat >"$work/merged.json" <<JSON
{
  "coordinator": "ipc://$work/coordinator.sock", "clientEndpoint": "ipc://$work/clients.sock",
  "heartbeatIntervalMs": 60000, "stepDeadlineMs": 300000, "openDeadlineMs": 600000,
  "topK": 64, "merge": "probability", "maxNewTokens": $max_tokens,
  "experts": [ { "name": "concise", "model": "$MODEL" }, { "name": "friendly", "model": "$MODEL" },
               { "name": "knowledgeable", "model": "$MODEL" } ]
}
JSON
thread_args=()
[ -z "$threads" ] || thread_args=(--threads "$threads")
"$MOPE" cluster --config "$work/merged.json" "${thread_args[@]}" --keys "$work/keys" \
    >"$work/cluster.out" 2>"$work/cluster.err" &
cluster=$!
export MOPE_CURVE_SERVER_KEY_FILE=$work/keys/coordinator.pub MOPE_CURVE_SECRET_KEY_FILE=$work/keys/client.key
wait_ready "$MOPE" "ipc://$work/clients.sock" 120 "$cluster" || { cat "$work/cluster.err" >&2; exit 1; }
echo "mope: $(grep '^topology:' "$work/cluster.out"), $(nproc) cores"

# One pass of the requests through the cluster: prints "TOKENS SECONDS".
mope_pass() {
    local tokens=0 start end n
    start=$(date +%s.%N)
    for prompt in "${PROMPTS[@]}"; do
        "$MOPE" generate --coordinator "ipc://$work/clients.sock" --preference "concise, friendly, knowledgeable" \
            --temperature 0 --max-tokens "$max_tokens" "$prompt" >/dev/null 2>"$work/generate.err" \
            || { cat "$work/generate.err" >&2; exit 1; }
        n=$(grep -oE '[0-9]+ tokens' "$work/generate.err" | head -1 | grep -oE '[0-9]+')
        tokens=$((tokens + n))
    done
    end=$(date +%s.%N)
    echo "$tokens $(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')"
}

ref_threads=${threads:-2}
mope_pass >/dev/null  # warm-up: page the weights in
mope_rates=() ref_rates=()
for i in $(seq 1 "$repeat"); do
    read -r tokens seconds <<<"$(mope_pass)"
    rate=$(awk -v t="$tokens" -v s="$seconds" 'BEGIN { print t / s }')
    mope_rates+=("$rate")
    printf 'run %d  mope:      %4d tokens in %6.2f s  %7.1f tok/s\n' "$i" "$tokens" "$seconds" "$rate"
    json=$(python3 Scripts/lib/merged-reference.py --model "$MODEL" --threads "$ref_threads" \
        --max-tokens "$max_tokens" "${PROMPTS[@]}")
    rate=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["tokens_per_second"])' "$json")
    ref_rates+=("$rate")
    printf 'run %d  reference: %s\n' "$i" "$json"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
m=$(median "${mope_rates[@]}")
r=$(median "${ref_rates[@]}")
printf 'merged job, %d requests × up to %d tokens, median of %d: mope %.1f tok/s, llama-cpp-python %.1f tok/s: %.2f×\n' \
    "${#PROMPTS[@]}" "$max_tokens" "$repeat" "$m" "$r" "$(awk -v a="$m" -v b="$r" 'BEGIN { print a / b }')"
