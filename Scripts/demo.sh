#!/usr/bin/env bash
# The mope demo: one question answered by the same cluster under two different preferences.
#
#   Scripts/demo.sh [PROMPT]
#
# Installs what is missing (Scripts/setup.sh: libzmq, the SmolLM2-135M-Instruct model), builds the release
# binary, starts a local cluster from Configs/psoups-local.json -- the coordinator and six expert workers (one
# per Personalized Soups dimension: the same model, each with its tuned offset, Configs/pcm/<pole>.bias.json,
# and each told the request's preference, the prompts of its three dimensions, as its system prompt) as real
# processes talking over real ZeroMQ sockets -- then asks the question under "concise, friendly, elementary"
# and under "informative, unfriendly, knowledgeable". Only the three experts a preference names take part in
# its answer, weighed at every token by the learned Preference Control Model the config names
# (Configs/pcm/pcm.json). The cluster also runs the OpenAI-compatible HTTP front (mope cluster --serve), and the
# demo asks it once with curl and once with the openai Python client. Everything is stopped on exit (the
# cluster's whole process group).
#
# The demo's config is Configs/psoups-local.json with longer deadlines (heartbeat 10 s, step deadline 60 s):
# a worker cannot send heartbeats during a forward pass, and on a busy 2-core machine one prefill of the
# real model can take several seconds.
#
# Environment: MOPE_DEMO_ENDPOINT (workers, default tcp://127.0.0.1:5555; clients on the next port), MOPE_DEMO_MAX_TOKENS (default 80),
# MOPE_DEMO_THREADS (forward-pass threads per worker, default 1: six workers share the machine's cores),
# MOPE_DEMO_HTTP (the HTTP front's HOST:PORT, default 127.0.0.1:8000).
set -euo pipefail
cd "$(dirname "$0")/.."
. Scripts/lib/cluster.sh
case "${1:-}" in -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac

PROMPT=${1:-"Why do leaves change color in the fall?"}
ENDPOINT=${MOPE_DEMO_ENDPOINT:-tcp://127.0.0.1:5555}
CLIENT_ENDPOINT=${ENDPOINT%:*}:$(( ${ENDPOINT##*:} + 1 ))  # the coordinator's clients' endpoint
MAX_TOKENS=${MOPE_DEMO_MAX_TOKENS:-80}
THREADS=${MOPE_DEMO_THREADS:-1}
HTTP=${MOPE_DEMO_HTTP:-127.0.0.1:8000}
CONFIG=Configs/psoups-local.json
MOPE=.build/release/mope
PREFERENCES=("concise, friendly, elementary" "informative, unfriendly, knowledgeable")

say() { printf '\033[1m[demo] %s\033[0m\n' "$*" >&2; }

Scripts/setup.sh
say "building the release binary"
swift build -c release

logs=$(mktemp -d)
python3 - "$CONFIG" "$logs/demo.json" <<'PY'
import json, os, sys
config = json.load(open(sys.argv[1]))
config.update(heartbeatIntervalMs=10000, stepDeadlineMs=60000, openDeadlineMs=120000)
for expert in config["experts"]:
    expert["model"] = os.path.abspath(expert["model"])
folder = os.path.dirname(sys.argv[1])
for expert in config["experts"]:
    if "bias" in expert:  # relative to the config's folder, like the PCM
        expert["bias"] = os.path.abspath(os.path.join(folder, expert["bias"]))
if "pcm" in config:
    config["pcm"] = os.path.abspath(os.path.join(folder, config["pcm"]))
json.dump(config, open(sys.argv[2], "w"), indent=2)
PY
CONFIG=$logs/demo.json
cluster=""
cleanup() {
    if [ -n "$cluster" ]; then
        say "stopping the cluster"
        stop_launcher "$cluster" 150
    fi
    rm -rf "$logs"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting the cluster: coordinator + 6 experts (logs in $logs)"
"$MOPE" cluster --config "$CONFIG" --endpoint "$ENDPOINT" --client-endpoint "$CLIENT_ENDPOINT" --threads "$THREADS" --keys "$logs/keys" --serve "$HTTP" >"$logs/cluster.out" 2>"$logs/cluster.err" &
cluster=$!
# The cluster runs CURVE with allow-lists (its default): status and the requests use the client key it wrote.
export MOPE_CURVE_SERVER_KEY_FILE=$logs/keys/coordinator.pub MOPE_CURVE_SECRET_KEY_FILE=$logs/keys/client.key
if ! wait_ready "$MOPE" "$CLIENT_ENDPOINT" 300 "$cluster"; then
    say "the cluster was not ready in 300 s:"; cat "$logs/cluster.err" >&2
    "$MOPE" status --coordinator "$CLIENT_ENDPOINT" --timeout 2 >&2 || true
    exit 1
fi
sed 's/^/    /' "$logs/cluster.out" >&2
grep -h "preference controller" "$logs/cluster.err" | sed 's/^[A-Z]* \[coordinator\] /    /' >&2 || true

for preference in "${PREFERENCES[@]}"; do
    echo
    say "preference: \"$preference\""
    say "prompt: $PROMPT"
    "$MOPE" generate --coordinator "$CLIENT_ENDPOINT" --preference "$preference" --max-tokens "$MAX_TOKENS" "$PROMPT"
done
echo

say "the same cluster over HTTP (mope cluster --serve $HTTP): curl"
curl -sS "http://$HTTP/v1/chat/completions" -H 'Content-Type: application/json' -d "$(python3 -c '
import json, sys
print(json.dumps({"model": "mope", "messages": [{"role": "user", "content": sys.argv[1]}],
                  "max_tokens": int(sys.argv[2]), "preference": "concise, friendly, elementary"}))' "$PROMPT" "$MAX_TOKENS")" |
    python3 -c 'import json, sys; a = json.load(sys.stdin); print(a["choices"][0]["message"]["content"]); print("mope:", json.dumps(a["mope"]))'
echo
say "and the openai Python client, streaming"
python3 - "http://$HTTP/v1" "$PROMPT" "$MAX_TOKENS" <<'PY'
import sys
import openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="unused")
stream = client.chat.completions.create(
    model="mope", messages=[{"role": "user", "content": sys.argv[2]}], max_tokens=int(sys.argv[3]), stream=True,
    extra_body={"preference": "informative, unfriendly, knowledgeable"})
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
print()
PY
