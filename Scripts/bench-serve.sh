#!/bin/bash
# Serving benchmark: per-token latency through the HTTP front against the ZeroMQ client on the same cluster, and
# (with --llama) one expert served by mope against llama.cpp's llama-server at 1, 8 and 16 concurrent streams.
#
# Starts `mope cluster --insecure --serve` (one expert, on loopback ports) with the model, then
#   latency: --requests streamed requests one after another through `mope serve` (Scripts/bench-serve.py
#            latency) and the same through `mope generate` (bench-serve.py zmq): the mean time per token after the
#            first, each measured at the client from its first text to its last; prints both and the ratio.
#   --llama: builds llama-server from the llama-cpp-python==0.3.36 sdist (as Scripts/bench-engine.sh builds
#            llama.cpp, into .cache/llama.cpp/build-server), serves the same model file with --streams slots,
#            and runs bench-serve.py load against both servers at each stream count: requests/s and tokens/s,
#            with the ratio mope / llama-server.
# One run; both sides in the same run, on the same machine, model and thread count.
#
# Usage: Scripts/bench-serve.sh [--model FILE] [--tokens 64] [--requests 10] [--threads 2] [--llama]
#                               [--streams 1,8,16] [--load-requests 32] [--mope BIN]
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
. Scripts/lib/cluster.sh

model="models/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$model" ] || model="/work/main/models/SmolLM2-135M-Instruct.Q4_1.gguf"
tokens=64
requests=10
threads=2
llama=0
streams="1,8,16"
load_requests=32
mope=""
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --tokens) tokens="$2"; shift 2 ;;
        --requests) requests="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --llama) llama=1; shift ;;
        --streams) streams="$2"; shift 2 ;;
        --load-requests) load_requests="$2"; shift 2 ;;
        --mope) mope="$2"; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -f "$model" ] || { echo "model not found: $model (pass --model FILE)" >&2; exit 1; }
model="$(cd "$(dirname "$model")" && pwd)/$(basename "$model")"

if [ -z "$mope" ]; then
    echo "== building mope (release)" >&2
    swift build -c release --product mope >&2
    mope="$(swift build -c release --show-bin-path)/mope"
fi

# A free loopback port.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

work=$(mktemp -d)
cluster=""
server=""
cleanup() {
    [ -n "$cluster" ] && stop_launcher "$cluster" 150
    if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

workers=$(free_port)
clients=$(free_port)
http=$(free_port)
python3 - "$work/cluster.json" "$model" "$workers" "$clients" "$tokens" <<'PY'
import json, sys
out, model, workers, clients, tokens = sys.argv[1:6]
json.dump({"coordinator": f"tcp://127.0.0.1:{workers}", "clientEndpoint": f"tcp://127.0.0.1:{clients}",
           "heartbeatIntervalMs": 2000, "stepDeadlineMs": 30000, "openDeadlineMs": 60000, "maxNewTokens": int(tokens),
           "experts": [{"name": "concise", "model": model, "systemPrompt": ""}]}, open(out, "w"), indent=2)
PY
echo "== load before: $(uptime)" >&2
echo "== starting the cluster (one expert, $threads threads) and the HTTP front" >&2
"$mope" cluster --config "$work/cluster.json" --insecure --threads "$threads" --serve "127.0.0.1:$http" \
    >"$work/cluster.out" 2>"$work/cluster.err" &
cluster=$!
if ! wait_ready "$mope" "tcp://127.0.0.1:$clients" 300 "$cluster"; then
    echo "the cluster was not ready:" >&2; cat "$work/cluster.err" >&2; exit 1
fi
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$http/ready" >/dev/null && break; sleep 0.1; done

echo "== per-token latency, $requests requests of $tokens tokens each, one at a time" >&2
read -r _ http_ms _ http_tokens < <(python3 Scripts/bench-serve.py latency --base "http://127.0.0.1:$http" \
    --tokens "$tokens" --requests "$requests")
read -r _ zmq_ms _ zmq_tokens < <(python3 Scripts/bench-serve.py zmq --mope "$mope" \
    --coordinator "tcp://127.0.0.1:$clients" --tokens "$tokens" --requests "$requests")
python3 - "$http_ms" "$zmq_ms" "$http_tokens" "$zmq_tokens" <<'PY'
import sys
http, zmq = float(sys.argv[1]), float(sys.argv[2])
print(f"\nper-token latency (ms), one stream, {sys.argv[3]} / {sys.argv[4]} tokens")
print(f"{'HTTP (mope serve)':<28} {http:>9.3f}")
print(f"{'ZeroMQ (mope generate)':<28} {zmq:>9.3f}")
print(f"{'ratio HTTP / ZeroMQ':<28} {http / zmq:>9.3f}  ({100 * (http / zmq - 1):+.1f}%)")
PY

[ "$llama" = 1 ] || { echo "== load after: $(uptime)" >&2; exit 0; }

# --- llama-server --------------------------------------------------------------------------------------------------
version="0.3.36"
cache="$root/.cache/llama.cpp"
src="$cache/src"
build="$cache/build-server"
if [ ! -x "$build/bin/llama-server" ]; then
    if [ ! -f "$src/CMakeLists.txt" ]; then
        mkdir -p "$cache/dl"
        sdist="$cache/dl/llama_cpp_python-$version.tar.gz"
        if [ ! -f "$sdist" ]; then
            echo "== downloading the llama-cpp-python $version sdist" >&2
            pip download --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$cache/dl" >&2 ||
                pip download --no-deps --no-binary :all: --no-build-isolation "llama-cpp-python==$version" \
                    -d "$cache/dl" >&2
        fi
        rm -rf "$src" "$cache/unpack"
        mkdir -p "$cache/unpack"
        tar xzf "$sdist" -C "$cache/unpack" "llama_cpp_python-$version/vendor/llama.cpp"
        mv "$cache/unpack/llama_cpp_python-$version/vendor/llama.cpp" "$src"
        rm -rf "$cache/unpack"
    fi
    command -v cmake >/dev/null || { echo "cmake is missing: apt-get install -y cmake" >&2; exit 1; }
    echo "== building llama-server (this takes several minutes)" >&2
    cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=ON \
        -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF >&2
    cmake --build "$build" --config Release -j "$(nproc)" --target llama-server >&2
fi
IFS=',' read -r -a stream_list <<< "$streams"
most=0
for s in "${stream_list[@]}"; do [ "$s" -gt "$most" ] && most=$s; done
llama_port=$(free_port)
"$build/bin/llama-server" -m "$model" -t "$threads" --host 127.0.0.1 --port "$llama_port" -np "$most" \
    -c $(( most * (tokens + 128) )) >"$work/llama-server.log" 2>&1 &
server=$!
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$llama_port/health" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$llama_port/health" >/dev/null || { cat "$work/llama-server.log" >&2; exit 1; }

echo "== throughput, $load_requests requests of $tokens tokens at each stream count" >&2
# Every request sends the same prompt: llama-server's default reuses a slot's cached identical prompt and skips its
# prefill, which mope does not do; the table shows llama-server both ways.
printf '\n%-8s %12s %12s %7s %12s %12s %7s %14s %7s\n' streams "mope req/s" "llama req/s" ratio "mope tok/s" \
    "llama tok/s" ratio "llama, cached" ratio
for s in "${stream_list[@]}"; do
    read -r _ m_rps _ m_tps _ < <(python3 Scripts/bench-serve.py load --base "http://127.0.0.1:$http" \
        --tokens "$tokens" --streams "$s" --requests "$load_requests")
    read -r _ l_rps _ l_tps _ < <(python3 Scripts/bench-serve.py load --base "http://127.0.0.1:$llama_port" \
        --tokens "$tokens" --streams "$s" --requests "$load_requests" --field cache_prompt=false)
    read -r _ c_rps _ c_tps _ < <(python3 Scripts/bench-serve.py load --base "http://127.0.0.1:$llama_port" \
        --tokens "$tokens" --streams "$s" --requests "$load_requests")
    python3 -c 'import sys; s, a, b, c, d, e = sys.argv[1], *map(float, sys.argv[2:])
print(f"{s:<8} {a:>12.2f} {b:>12.2f} {a / b:>6.2f}x {c:>12.1f} {d:>12.1f} {c / d:>6.2f}x {e:>14.1f} {c / e:>6.2f}x")' \
        "$s" "$m_rps" "$l_rps" "$m_tps" "$l_tps" "$c_tps"
done
echo "== load after: $(uptime)" >&2
