#!/usr/bin/env bash
# A cluster spread over "machines" that are Linux network namespaces on this host: the coordinator, two worker
# hosts and a client each get a namespace of their own, joined by veth pairs to a bridge that lives in a fifth
# namespace. Traffic goes over tcp between the namespaces' own addresses (10.213.0.0/24, which exist only
# inside these namespaces), as it would between machines. Optionally (when `tc` and netem work) every host
# gets 2 ms of added latency on its link, and the per-token latency is reported with and without it. Last,
# worker host 2 is cut off the network in the middle of an answer for longer than 3 heartbeat intervals (a
# partition): the answer must complete (its concise expert moved to host 1's replica; knowledgeable, which
# only host 2 serves, lost) and, once the link is back and the workers have registered again, the next
# answer must equal the one given before the partition.
#
#   Scripts/netns-cluster.sh [--seconds N] [--delay-ms D] [--max-tokens M] [--partition-seconds P]
#                            [--release] [--no-build] [--keep]
#
#   --seconds N     how long requests run, half without and half with the delay (default 30)
#   --delay-ms D    the netem delay added on each host's link (default 2; 0 skips that phase)
#   --max-tokens M  tokens per answer (default 32)
#   --partition-seconds P  how long host 2's link is down (default 8; 0 skips the partition)
#   --release       build and run the release binary (default: debug)
#   --no-build      use the binary already built
#   --keep          keep the logs (their folder is printed)
#
# Needs root and `ip netns` (iproute2); without them it prints SKIPPED and exits 0. Every namespace it made
# and every process in them is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. Scripts/lib/cluster.sh
. Scripts/lib/netns.sh

RUN_SECONDS=30 DELAY_MS=2 MAX_TOKENS=32 PARTITION=8 MODE=debug BUILD=1 KEEP=0
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) RUN_SECONDS=$2; shift 2 ;;
        --delay-ms) DELAY_MS=$2; shift 2 ;;
        --max-tokens) MAX_TOKENS=$2; shift 2 ;;
        --partition-seconds) PARTITION=$2; shift 2 ;;
        --release) MODE=release; shift ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage ;;
        *) echo "netns-cluster: unknown option $1" >&2; usage ;;
    esac
done
for value in "$RUN_SECONDS" "$DELAY_MS" "$MAX_TOKENS" "$PARTITION"; do
    [[ $value =~ ^[0-9]+$ ]] || { echo "netns-cluster: expected a whole number, got '$value'" >&2; exit 2; }
done

if [ "$(id -u)" != 0 ]; then echo "netns-cluster: SKIPPED (needs root to create network namespaces)"; exit 0; fi
if ! command -v ip >/dev/null || ! ip netns list >/dev/null 2>&1; then
    echo "netns-cluster: SKIPPED (ip netns is unavailable; apt-get install iproute2)"; exit 0
fi

if [ "$BUILD" = 1 ]; then swift build -c "$MODE" --product mope >&2; fi
MOPE=$PWD/.build/$MODE/mope
[ -x "$MOPE" ] || { echo "netns-cluster: $MOPE not found (build it or drop --no-build)" >&2; exit 2; }

# Names carry this run's pid so that two runs never share a namespace.
tag=$$
NS_BRIDGE=mope-br-$tag NS_C=mope-c-$tag NS_W1=mope-w1-$tag NS_W2=mope-w2-$tag NS_CL=mope-cl-$tag
HOSTS=("$NS_C" "$NS_W1" "$NS_W2" "$NS_CL")
declare -A ADDRESS=([$NS_C]=10.213.0.1 [$NS_W1]=10.213.0.11 [$NS_W2]=10.213.0.12 [$NS_CL]=10.213.0.21)
PORT=5555
ENDPOINT=tcp://${ADDRESS[$NS_C]}:$PORT
CLIENT_ENDPOINT=tcp://${ADDRESS[$NS_C]}:$((PORT + 1))  # the coordinator's clients' endpoint (its default)
work=$(mktemp -d "${TMPDIR:-/tmp}/mope-netns.XXXXXX")
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # Every process in these namespaces is one this script started.
    netns_cleanup
    if [ "$KEEP" = 1 ]; then echo "netns-cluster: logs kept in $work" >&2; else rm -rf "$work"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The network: a bridge in its own namespace, one veth pair per host (eth0 inside the host).
netns_host_network "$NS_BRIDGE" 10.213.0 \
    "${NS_C}=${ADDRESS[$NS_C]##*.}" "${NS_W1}=${ADDRESS[$NS_W1]##*.}" "${NS_W2}=${ADDRESS[$NS_W2]##*.}" "${NS_CL}=${ADDRESS[$NS_CL]##*.}"
echo "network: coordinator ${ADDRESS[$NS_C]} ($NS_C), workers ${ADDRESS[$NS_W1]} ($NS_W1) and" \
    "${ADDRESS[$NS_W2]} ($NS_W2), client ${ADDRESS[$NS_CL]} ($NS_CL), bridged in $NS_BRIDGE"

tiny_cluster_config "$work/cluster.json" "$ENDPOINT" 2000 20000 60000 "$MAX_TOKENS"

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# CURVE with one allow-list per endpoint: the coordinator binds an address other hosts reach, which it refuses
# in plain text. The key files stay in this run's private folder; processes get their paths.
for who in coordinator worker client; do "$MOPE" keygen --out "$work/$who" >/dev/null; done
WORKER_CURVE=(--curve-server-key-file "$work/coordinator.pub" --curve-secret-key-file "$work/worker.key")
CLIENT_CURVE=(--curve-server-key-file "$work/coordinator.pub" --curve-secret-key-file "$work/client.key")
in_ns "$NS_C" "$MOPE" coordinator --config "$work/cluster.json" --endpoint "$ENDPOINT" \
    --curve-secret-key-file "$work/coordinator.key" --curve-worker-keys "$work/worker.pub" \
    --curve-authorized-keys "$work/client.pub" >"$work/coordinator.log" 2>&1 &
disown $!  # Killed on exit on purpose (as every process in the namespaces): no job notice.
# Worker host 1 serves friendly and concise-2; host 2 serves knowledgeable and concise-1: concise has a replica
# on each host, so whichever one the answer uses (equal replicas take turns), cutting host 2 off loses only
# knowledgeable or moves concise to host 1.
declare -A PLACEMENT=([concise-2]=$NS_W1 [friendly-1]=$NS_W1 [knowledgeable-1]=$NS_W2 [concise-1]=$NS_W2)
for id in "${!PLACEMENT[@]}"; do
    in_ns "${PLACEMENT[$id]}" "$MOPE" worker --config "$work/cluster.json" --expert "${id%-*}" --id "$id" \
        --coordinator "$ENDPOINT" "${WORKER_CURVE[@]}" --threads 1 >"$work/worker-$id.log" 2>&1 &
    disown $!
done
# The status is asked from the client's namespace, as any client reaches the coordinator.
STATUS_MOPE="in_ns $NS_CL env MOPE_CURVE_SERVER_KEY_FILE=$work/coordinator.pub MOPE_CURVE_SECRET_KEY_FILE=$work/client.key $MOPE"
if ! wait_ready "$STATUS_MOPE" "$CLIENT_ENDPOINT" 180; then
    echo "netns-cluster: the workers did not all register:" >&2
    in_ns "$NS_CL" "$MOPE" status --coordinator "$CLIENT_ENDPOINT" "${CLIENT_CURVE[@]}" >&2 || true
    tail -5 "$work"/*.log >&2; exit 1
fi
echo "cluster up: coordinator on $ENDPOINT, workers ${!PLACEMENT[*]} registered over tcp from their namespaces"

PROMPTS=("Tell me about cats." "Why is the sky blue?" "Write a haiku about rain.")
PREFERENCE="concise, friendly, knowledgeable"
failures=0

# Runs requests from the client namespace for SECONDS s; writes "<requests> <mean ms per token>" to NAME.result.
phase() {  # NAME SECONDS
    local stop=$(( $(date +%s) + $2 )) n=0 out err
    : >"$work/$1.latency"
    while [ "$n" -eq 0 ] || [ "$(date +%s)" -lt "$stop" ]; do
        out=$work/$1-$n.out err=$work/$1-$n.err
        if in_ns "$NS_CL" "$MOPE" generate --coordinator "$CLIENT_ENDPOINT" "${CLIENT_CURVE[@]}" --preference "$PREFERENCE" \
            --max-tokens "$MAX_TOKENS" --timeout 120 "${PROMPTS[$((n % ${#PROMPTS[@]}))]}" >"$out" 2>"$err"; then
            # "finish: maxTokens, 32 tokens in 0.41 s, …": milliseconds per token of this request.
            sed -nE 's/^finish: [^,]*, ([0-9]+) tokens in ([0-9.]+) s.*/\1 \2/p' "$err" \
                | awk '$1 > 0 { printf "%.3f\n", $2 * 1000 / $1 }' >>"$work/$1.latency"
            if grep -q "degraded" "$err"; then
                echo "  $1 request $n was degraded: $(grep degraded "$err")"; failures=$((failures + 1))
            fi
            if [ "$n" -lt 3 ]; then
                echo "  [$1] ${PROMPTS[$((n % ${#PROMPTS[@]}))]} → $(head -c 80 "$out" | tr '\n' ' ')"
            fi
        else
            echo "  $1 request $n failed: $(tail -1 "$err")"; failures=$((failures + 1))
        fi
        n=$((n + 1))
    done
    awk -v n="$n" '{ s += $1; c++ } END { printf "%d %.2f\n", n, c ? s / c : 0 }' "$work/$1.latency" >"$work/$1.result"
}

half=$(( RUN_SECONDS / 2 ))
echo "phase 1: no added latency, $half s"
phase plain "$half"
read -r plain_n plain_ms <"$work/plain.result"
echo "  $plain_n requests, mean $plain_ms ms per token"

delayed="skipped"
if [ "$DELAY_MS" -gt 0 ]; then
    netem=1
    for ns in "${HOSTS[@]}"; do
        if ! ip netns exec "$ns" tc qdisc add dev eth0 root netem delay "${DELAY_MS}ms" 2>"$work/tc.err"; then
            netem=0; break
        fi
    done
    if [ "$netem" = 1 ]; then
        echo "phase 2: netem delay ${DELAY_MS} ms on every host's link (each step crosses two links each way), $half s"
        phase delayed "$half"
        read -r delay_n delay_ms <"$work/delayed.result"
        echo "  $delay_n requests, mean $delay_ms ms per token"
        delayed="$delay_ms ms per token over $delay_n requests"
        for ns in "${HOSTS[@]}"; do ip netns exec "$ns" tc qdisc del dev eth0 root 2>/dev/null || true; done
    else
        echo "phase 2 skipped: tc netem unavailable ($(head -1 "$work/tc.err"))"
    fi
fi

# The partition: host 2 (knowledgeable-1, concise-1) is cut off mid-answer for longer than 3 heartbeats.
partitioned="skipped"
if [ "$PARTITION" -gt 0 ]; then
    long=150 prompt="Tell me about cats."
    ask() {  # NAME: one long answer from the client namespace; NAME.out, NAME.err, NAME.rc
        local rc=0
        in_ns "$NS_CL" "$MOPE" generate --coordinator "$CLIENT_ENDPOINT" "${CLIENT_CURVE[@]}" --preference "$PREFERENCE" --max-tokens "$long" \
            --timeout 180 "$prompt" >"$work/$1.out" 2>"$work/$1.err" || rc=$?
        echo "$rc" >"$work/$1.rc"
    }
    registered() { registrations "$STATUS_MOPE" "$CLIENT_ENDPOINT" "$1"; }
    echo "phase 3: host 2 ($NS_W2) cut off for $PARTITION s in the middle of a $long-token answer"
    ask before
    before=$(registered knowledgeable-1)
    ask cut &
    client=$!
    # Cut as soon as the answer streams (a fixed wait let a fast machine finish the answer before the cut).
    for _ in $(seq 1 600); do
        [ -s "$work/cut.out" ] || [ -e "$work/cut.rc" ] && break
        sleep 0.05
    done
    ip -n "$NS_W2" link set eth0 down
    [ -e "$work/cut.rc" ] && early=1 || early=0
    sleep "$PARTITION"
    ip -n "$NS_W2" link set eth0 up
    wait "$client" || true
    if [ "$(cat "$work/before.rc")" != 0 ]; then
        partitioned="FAILED: the answer before the partition failed: $(tail -1 "$work/before.err")"
    elif [ "$early" = 1 ]; then
        partitioned="FAILED: the answer finished before the link went down, so the partition tested nothing"
    elif [ "$(cat "$work/cut.rc")" != 0 ]; then
        partitioned="FAILED: the answer during the partition failed: $(tail -1 "$work/cut.err")"
    else
        lost=$(sed -n 's/^degraded: lost expert //p' "$work/cut.err" | paste -sd, -)
        moved=$(sed -n 's/^failovers: \([0-9]*\).*/\1/p' "$work/cut.err")
        partitioned="answer during the partition completed: lost ${lost:-no expert}, ${moved:-0} failovers"
        if [ -z "$lost" ] && ! cmp -s "$work/cut.out" "$work/before.out"; then
            partitioned="FAILED: $partitioned, but its text differs from the answer before"
        fi
        end=$(( $(date +%s) + 60 ))
        until [ "$(registered knowledgeable-1)" -gt "$before" ] || [ "$(date +%s)" -ge "$end" ]; do sleep 0.2; done
        if [ "$(registered knowledgeable-1)" -le "$before" ]; then
            partitioned="FAILED: $partitioned; knowledgeable-1 did not register again within 60 s of the link's return"
        else
            ask after
            if [ "$(cat "$work/after.rc")" != 0 ] || grep -q degraded "$work/after.err" \
                || ! cmp -s "$work/after.out" "$work/before.out"; then
                partitioned="FAILED: $partitioned; after the link came back the answer differs:"
                partitioned+=" $(tail -2 "$work/after.err" | tr '\n' ' ')"
            else
                partitioned="$partitioned; after the link came back host 2 registered again and the answer is exact"
            fi
        fi
    fi
    echo "  $partitioned"
    case $partitioned in FAILED*) failures=$((failures + 1)) ;; esac
fi

echo
echo "== netns cluster summary ($MODE build, $MAX_TOKENS tokens, preference \"$PREFERENCE\")"
echo "no added latency: $plain_ms ms per token over $plain_n requests"
echo "netem ${DELAY_MS} ms per link: $delayed"
echo "partition of host 2 for $PARTITION s: $partitioned"
if [ "$failures" -gt 0 ]; then echo "FAILED: $failures requests failed or were degraded"; KEEP=1; exit 1; fi
echo "PASSED"
