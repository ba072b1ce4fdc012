#!/usr/bin/env bash
# Benchmarks a local cluster of the real model: three experts (concise, friendly, knowledgeable; or the first
# BENCH_EXPERTS of them), one worker process each, one coordinator, real ZeroMQ sockets.
#
#   Scripts/bench-cluster.sh [--no-build]
#
# 1. Overhead: one request of MAX_TOKENS greedy tokens. The coordinator logs, per request, its wall time and
#    the sum over steps of the slowest expert's forward-pass time (WorkerTiming.computeMicros in the dists of
#    the same run). Per-token latency of the cluster vs the slowest expert's own step time = the cost of
#    ZeroMQ, the merge, sampling and the loops (goal: at most 5%). The headline figure is decoding: from the
#    first token to the end, against the same steps' compute; the whole request (prefill, tokenization and
#    KV-cache set-up included) follows.
# 2. Throughput: aggregate tokens/s with 1, 8 and 32 concurrent sessions (`mope generate --concurrency N`).
#
#    The rest is split into the time from a worker reading its step to the start of its pass (other sessions'
#    passes), and the time outside the workers' loops: the sockets, the merge, sampling, and any wait for a core
#    before a process gets to read its message. The kernel's run-queue accounting (schedstat) of the cluster's
#    threads says how long they were runnable but waiting for a core.
#
# With 3 single-threaded workers and the coordinator on 2 cores, the CPUs are oversubscribed: a worker often waits
# for a core before it reads its step, which counts as overhead here. BENCH_EXPERTS=2 measures without that.
# By default both topologies run, one after the other: one worker process per expert, then the experts in one
# worker process (`mope cluster --shared-workers`, 2 threads by default): each expert keeps its own connection,
# and one batched forward pass computes the step of all of them, so the "slowest expert's forward pass" is that
# shared pass. BENCH_SHARED=0 or 1 runs only one of them.
#
# The deadlines are long on purpose: a worker cannot send heartbeats during a forward pass, and a batched
# prefill of 32 prompts on a busy 2-core machine takes minutes; this measures speed, not failover.
#
# Environment: BENCH_MAX_TOKENS (default 128), BENCH_LOAD_TOKENS (default 64), BENCH_THREADS (threads per
# worker process, default 1, or 2 with BENCH_SHARED=1), BENCH_SHARED (0, 1 or both, default both), BENCH_EXPERTS
# (1 to 3, default 3), BENCH_ENDPOINT (default ipc:// in a temporary folder; e.g. tcp://127.0.0.1:5570) and BENCH_CLIENT_ENDPOINT (the clients'),
# BENCH_TIMELINE=1: every process also timestamps each step (MOPE_TIMELINE) and Scripts/timeline.py breaks the
# timed request's steps down: wake (the step reaching the worker), service, back, the coordinator's turn. The
# timestamps cost a little; compare the overhead figure with a run without them.
set -euo pipefail
cd "$(dirname "$0")/.."
. Scripts/lib/cluster.sh
MAX_TOKENS=${BENCH_MAX_TOKENS:-128}
LOAD_TOKENS=${BENCH_LOAD_TOKENS:-64}
SHARED=${BENCH_SHARED:-both}
case "$SHARED" in
    0) THREADS=${BENCH_THREADS:-1}; SHARE_FLAG=() ;;
    1) THREADS=${BENCH_THREADS:-2}; SHARE_FLAG=(--shared-workers) ;;
    both)
        # Both topologies, one after the other, on one build.
        [ "${1:-}" = "--no-build" ] || swift build -c release
        echo "== one worker process per expert"
        BENCH_SHARED=0 "$0" --no-build
        echo
        echo "== the experts in one worker process"
        exec env BENCH_SHARED=1 "$0" --no-build ;;
    *) echo "bench-cluster: BENCH_SHARED must be 0, 1 or both" >&2; exit 2 ;; esac
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
MOPE=.build/release/mope
PROMPT="Explain how a rainbow forms."
EXPERTS=${BENCH_EXPERTS:-3}
case "$EXPERTS" in 1|2|3) ;; *) echo "bench-cluster: BENCH_EXPERTS must be 1, 2 or 3" >&2; exit 2 ;; esac
NAMES=(concise friendly knowledgeable)
NAMES=("${NAMES[@]:0:$EXPERTS}")
PREFERENCE=$(IFS=,; echo "${NAMES[*]}" | sed 's/,/, /g')

[ "${1:-}" = "--no-build" ] || swift build -c release
[ -f "$MODEL" ] || Scripts/setup.sh

with_launcher_cleanup
# ipc on one machine (DESIGN.md), tcp:// across machines; tcp over loopback costs a little more per step.
ENDPOINT=${BENCH_ENDPOINT:-ipc://$work/coordinator.sock}
CLIENT_ENDPOINT=${BENCH_CLIENT_ENDPOINT:-ipc://$work/clients.sock}

experts=$(for name in "${NAMES[@]}"; do printf '{ "name": "%s", "model": "%s" }\n' "$name" "$PWD/$MODEL"; done |
    paste -sd, -)
cat >"$work/bench.json" <<JSON
{
  "coordinator": "$ENDPOINT", "clientEndpoint": "$CLIENT_ENDPOINT", "heartbeatIntervalMs": 60000, "stepDeadlineMs": 300000, "openDeadlineMs": 600000,
  "topK": 64, "maxNewTokens": $MAX_TOKENS,
  "experts": [ $experts ]
}
JSON

if [ "${BENCH_TIMELINE:-0}" = 1 ]; then mkdir -p "$work/timeline"; export MOPE_TIMELINE="$work/timeline"; fi
"$MOPE" cluster --config "$work/bench.json" --threads "$THREADS" "${SHARE_FLAG[@]}" --keys "$work/keys" \
    >"$work/cluster.out" 2>"$work/cluster.err" &
cluster=$!
# The cluster runs CURVE with allow-lists (its default); status and the requests use the client key it generated.
export MOPE_CURVE_SERVER_KEY_FILE=$work/keys/coordinator.pub MOPE_CURVE_SECRET_KEY_FILE=$work/keys/client.key
wait_ready "$MOPE" "$CLIENT_ENDPOINT" 120 "$cluster" || { cat "$work/cluster.err" >&2; exit 1; }
if [ "$SHARED" = 1 ]; then
    echo "cluster: $EXPERTS experts in one worker process ($THREADS thread(s)) + coordinator on $(nproc) cores, $MODEL"
else
    echo "cluster: $EXPERTS workers ($THREADS thread(s) each) + coordinator on $(nproc) cores, $MODEL"
fi

# Time the cluster's threads (coordinator and workers) spent runnable but waiting for a core, in nanoseconds:
# the kernel's own accounting (field 2 of /proc/PID/task/TID/schedstat; 0 where the kernel keeps none).
run_queue_wait() {
    local total=0 pid task wait
    for pid in $(pgrep -P "$cluster"); do
        for task in /proc/"$pid"/task/*; do
            wait=$(awk '{ print $2 }' "$task/schedstat" 2>/dev/null || echo 0)
            total=$((total + ${wait:-0}))
        done
    done
    echo "$total"
}

# Warm-up (page in the weights), then the timed request (the coordinator's log line gives its figures).
fail() { echo "bench: $1" >&2; cat "$work/cluster.err" >&2; exit 1; }
"$MOPE" generate --coordinator "$CLIENT_ENDPOINT" --preference "$PREFERENCE" --max-tokens 8 "$PROMPT" >/dev/null \
    2>"$work/single.err" || fail "the warm-up request failed: $(cat "$work/single.err")"
waited_before=$(run_queue_wait)
"$MOPE" generate --coordinator "$CLIENT_ENDPOINT" --preference "$PREFERENCE" --max-tokens "$MAX_TOKENS" "$PROMPT" \
    >/dev/null 2>"$work/single.err" || fail "the timed request failed: $(cat "$work/single.err")"
waited=$(( $(run_queue_wait) - waited_before ))
grep -q "lost expert" "$work/cluster.err" && fail "an expert was lost during the run"
line=$(grep "done:" "$work/cluster.err" | tail -1)
pattern='.*done: ([0-9]+) tokens in ([0-9]+) ms.*slowest expert compute ([0-9]+) ms, ([0-9]+) ms from receiving'
pattern+='.*first token: ([0-9]+) ms, slowest expert compute ([0-9]+) ms.*'
figures=$(sed -E "s/$pattern/\\1 \\2 \\3 \\4 \\5 \\6/" <<<"$line")
read -r tokens wall compute service dwall dcompute <<<"$figures"
echo
echo "single request: $(head -1 "$work/single.err")"
awk -v t="$tokens" -v w="$wall" -v c="$compute" -v s="$service" -v q="$waited" -v dw="$dwall" -v dc="$dcompute" 'BEGIN {
    printf "per-token latency, decoding (after the first token, %d steps): cluster %.2f ms, slowest expert forward\n",
        t - 1, dw / (t - 1)
    printf "  pass %.2f ms; overhead %.1f%%\n", dc / (t - 1), (dw - dc) / dc * 100
    printf "whole request (prefill included): cluster %.2f ms/token, slowest expert forward pass %.2f ms/token;\n",
        w / t, c / t
    printf "  overhead %.1f%%\n", (w - c) / c * 100
    printf "  the rest: %.2f ms/token from the moment a worker reads its step to the start of its pass; %.2f ms/token\n",
        (s - c) / t, (w - s) / t
    printf "  in the sockets, the merge and the loops (including any wait for a core before a message is read)\n"
    printf "  the cluster'"'"'s threads waited for a core %.2f ms/token in all (kernel run-queue accounting)\n",
        q / 1e6 / t }'
if [ "${BENCH_TIMELINE:-0}" = 1 ]; then
    session=$(sed -E 's/.*session ([0-9]+) done:.*/\1/' <<<"$line")
    echo
    python3 Scripts/timeline.py "$work/timeline" --session "$session"
fi

echo
for n in 1 8 32; do
    "$MOPE" generate --coordinator "$CLIENT_ENDPOINT" --preference "$PREFERENCE" --max-tokens "$LOAD_TOKENS" \
        --concurrency "$n" --timeout 3600 "$PROMPT" 2>&1 | sed "s/^/concurrency $n: /"
done
