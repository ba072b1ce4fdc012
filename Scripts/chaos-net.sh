#!/usr/bin/env bash
# Network and process faults against a cluster spread over network namespaces, with every answer checked.
#
# The coordinator, three worker hosts and a client each get a Linux network namespace (10.214.0.0/24, bridged),
# and talk over tcp with CURVE keys from `mope keygen --cluster` and one allow-list per endpoint. Host 3 reaches
# the coordinator through a small delay proxy (Scripts/lib/delay-proxy.py) so that latency can be added on
# kernels without netem. Placement: host 1 serves concise-1 and friendly-1, host 2 concise-2 and knowledgeable-1
# (its only replica), host 3 friendly-2. While requests run from the client host, a schedule drawn from the seed
# injects faults:
#
#   kill -9 a worker (restarted 2-5 s later)      SIGSTOP a worker (SIGCONT 2-5 s later)
#   SIGTERM a worker (drain, restart once it exits) kill -9 the coordinator (restarted 1-3 s later)
#   kill -9 a client mid-answer (a disconnect)     packet loss 1, 5 or 20 % on a host (nftables numgen)
#   a bandwidth limit on a host (tc tbf)           added latency on host 3's link (the proxy; netem if present)
#   a partition of a host (link down, then up)     a hostile peer (no keys, wrong keys, garbage)
#
#   Scripts/chaos-net.sh [--seconds N] [--faults N] [--short] [--seed S] [--concurrency C] [--timeout T]
#                        [--max-tokens M] [--report FILE] [--release] [--no-build] [--binary PATH] [--keep]
#
#   --seconds N      the longest the faults run (default 600)
#   --faults N       stop after N faults (default 0: no limit; the full mode of 600 s injects about 250)
#   --short          each fault kind once (about a minute of faults), for the tests
#   --seed S         the schedule's seed (default 1): the same seed draws the same faults
#   --concurrency C  requests in flight at once (default 3)
#   --timeout T      each request's --timeout in seconds (default 60)
#   --max-tokens M   tokens per answer (default 24)
#   --report FILE    also write the report (the tables at the end) to FILE
#   --release        build and run the release binary (default: debug)
#   --no-build       use the binary already built
#   --binary PATH    run this mope binary (implies --no-build)
#   --keep           keep the logs (their folder is printed)
#
# Every answer is checked: one that lost no expert must equal the fault-free reference (greedy decoding, replays
# exact); one that lost experts must name experts of its preference ("degraded"); a failure must come from the
# coordinator with a reason within the request's deadline ("refused"); a client still running 20 s past its
# --timeout is killed ("hung"), and a client that hears nothing from a coordinator that no fault made unreachable
# counts as hung too. The coordinator's and the workers' VmRSS are sampled and must stay bounded. Hostile peers
# must be refused (the probes table). Exits 1 on any hung or wrong answer, failed probe, crash, leaked session or
# unbounded memory; 2 on usage errors. Needs root, `ip netns`, nftables (`nft`), `tc` and pyzmq; without root or
# ip netns it prints SKIPPED and exits 0. Every namespace and process it made is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. Scripts/lib/cluster.sh
. Scripts/lib/netns.sh

RUN_SECONDS=600 MAX_FAULTS=0 SHORT=0 SEED=1 CONCURRENCY=3 TIMEOUT=60 MAX_TOKENS=24 REPORT="" MODE=debug BUILD=1 KEEP=0
BINARY=""
usage() { sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) RUN_SECONDS=${2:-}; shift 2 ;;
        --faults) MAX_FAULTS=${2:-}; shift 2 ;;
        --short) SHORT=1; shift ;;
        --seed) SEED=${2:-}; shift 2 ;;
        --concurrency) CONCURRENCY=${2:-}; shift 2 ;;
        --timeout) TIMEOUT=${2:-}; shift 2 ;;
        --max-tokens) MAX_TOKENS=${2:-}; shift 2 ;;
        --report) REPORT=${2:-}; shift 2 ;;
        --release) MODE=release; shift ;;
        --no-build) BUILD=0; shift ;;
        --binary) BINARY=${2:-}; BUILD=0; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage ;;
        *) echo "chaos-net: unknown option $1" >&2; usage ;;
    esac
done
for value in "$RUN_SECONDS" "$MAX_FAULTS" "$SEED" "$CONCURRENCY" "$TIMEOUT" "$MAX_TOKENS"; do
    [[ $value =~ ^[0-9]+$ ]] || { echo "chaos-net: expected a whole number, got '$value'" >&2; exit 2; }
done
[ "$CONCURRENCY" -ge 1 ] || { echo "chaos-net: --concurrency must be at least 1" >&2; exit 2; }

netns_check chaos-net || exit 0
for tool in nft tc python3; do
    command -v "$tool" >/dev/null || { echo "chaos-net: needs $tool (Scripts/setup.sh installs it)" >&2; exit 1; }
done
python3 -c 'import zmq' 2>/dev/null || { echo "chaos-net: needs pyzmq (pip install pyzmq)" >&2; exit 1; }

if [ "$BUILD" = 1 ]; then swift build -c "$MODE" --product mope >&2; fi
MOPE=${BINARY:-$PWD/.build/$MODE/mope}
[ -x "$MOPE" ] || { echo "chaos-net: $MOPE not found (build it or drop --no-build)" >&2; exit 2; }

tag=$$
NS_BR=mope-xb-$tag NS_C=mope-xc-$tag NS_W1=mope-x1-$tag NS_W2=mope-x2-$tag NS_W3=mope-x3-$tag NS_CL=mope-xl-$tag
NET=10.214.0
C_ADDR=$NET.1
ENDPOINT=tcp://$C_ADDR:5555 CLIENT_ENDPOINT=tcp://$C_ADDR:5556 PROXY_ENDPOINT=tcp://$C_ADDR:5600
work=$(mktemp -d "${TMPDIR:-/tmp}/mope-chaos-net.XXXXXX")
mkdir -p "$work/req" "$work/ref" "$work/after" "$work/state" "$work/probe"
helpers=()

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${helpers[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    netns_cleanup
    if [ "$KEEP" = 1 ]; then echo "chaos-net: logs kept in $work" >&2; else rm -rf "$work"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
T0=$(now)
log() { printf '[chaos-net %6.1f s] %s\n' "$(awk -v a="$(now)" -v b="$T0" 'BEGIN { print a - b }')" "$*"; }
alive() {
    local state
    state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}
# (A background job must call `ip netns exec` itself, not this function: then `$!` is the command's pid, since
# ip execs the command.)
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

netns_host_network "$NS_BR" "$NET" "$NS_C=1" "$NS_W1=11" "$NS_W2=12" "$NS_W3=13" "$NS_CL=21"
log "network: coordinator $C_ADDR, worker hosts $NET.11-13, client $NET.21 (namespaces *-$tag)"

# The config: the tiny experts, concise and friendly with 2 replicas, knowledgeable with one.
tiny_cluster_config "$work/cluster.json" "$ENDPOINT" 1000 3000 10000 "$MAX_TOKENS"
python3 - "$work/cluster.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
for expert in config["experts"]:
    expert["replicas"] = {"concise": 2, "friendly": 2}.get(expert["name"], 1)
json.dump(config, open(sys.argv[1], "w"), indent=2)
PY
"$MOPE" keygen --cluster "$work/keys" >/dev/null
K=$work/keys
WORKER_CURVE=(--curve-server-key-file "$K/coordinator.pub" --curve-secret-key-file "$K/worker.key")
CLIENT_CURVE=(--curve-server-key-file "$K/coordinator.pub" --curve-secret-key-file "$K/client.key")

declare -A HOST_OF=([concise-1]=$NS_W1 [friendly-1]=$NS_W1 [concise-2]=$NS_W2 [knowledgeable-1]=$NS_W2 [friendly-2]=$NS_W3)
WORKERS=(concise-1 friendly-1 concise-2 knowledgeable-1 friendly-2)
declare -A HOST_NAME=([$NS_C]=coordinator [$NS_W1]=host1 [$NS_W2]=host2 [$NS_W3]=host3 [$NS_CL]=client)

start_coordinator() {
    ip netns exec "$NS_C" "$MOPE" coordinator --config "$work/cluster.json" --endpoint "$ENDPOINT" --drain-grace 5 \
        --curve-secret-key-file "$K/coordinator.key" --curve-worker-keys "$K/worker-keys" \
        --curve-authorized-keys "$K/authorized-keys" >>"$work/coordinator.log" 2>&1 &
    echo $! >"$work/state/coordinator.pid"
    disown $!  # Killed by the faults and on exit on purpose: no job notice.
    echo up >"$work/state/coordinator.state"
}
start_worker() {  # ID
    local id=$1 endpoint=$ENDPOINT
    [ "${HOST_OF[$id]}" = "$NS_W3" ] && endpoint=$PROXY_ENDPOINT
    ip netns exec "${HOST_OF[$id]}" "$MOPE" worker --config "$work/cluster.json" --expert "${id%-*}" --id "$id" \
        --coordinator "$endpoint" "${WORKER_CURVE[@]}" --threads 1 --drain-grace 2 >>"$work/worker-$id.log" 2>&1 &
    echo $! >"$work/state/$id.pid"
    disown $!
    echo up >"$work/state/$id.state"
}
# The delay proxy in the coordinator's namespace, in front of the workers' endpoint, for host 3.
: >"$work/proxy.delay"
ip netns exec "$NS_C" python3 Scripts/lib/delay-proxy.py "$C_ADDR:5600" "$C_ADDR:5555" "$work/proxy.delay" \
    >"$work/proxy.log" 2>&1 &
echo $! >"$work/state/proxy.pid"
disown $!

STATUS_MOPE="in_ns $NS_CL env MOPE_CURVE_SERVER_KEY_FILE=$K/coordinator.pub MOPE_CURVE_SECRET_KEY_FILE=$K/client.key $MOPE"
# status_summary: "ready running worker-sessions ids…" from the coordinator's status (empty when it does not answer).
status_summary() {
    $STATUS_MOPE status --coordinator "$CLIENT_ENDPOINT" --json --timeout 2 2>/dev/null | python3 -c '
import json, sys
try:
    s = json.load(sys.stdin)
except ValueError:
    sys.exit(0)
workers = [w for e in s.get("experts", []) for w in e.get("workers", [])]
print(int(s.get("ready", False)), s.get("sessionsRunning", 0), sum(w.get("sessions", 0) for w in workers),
      " ".join(sorted(w["id"] for w in workers)))
' || true
}
registered() { registrations "$STATUS_MOPE" "$CLIENT_ENDPOINT" "$1"; }

start_coordinator
for id in "${WORKERS[@]}"; do start_worker "$id"; done
if ! wait_ready "$STATUS_MOPE" "$CLIENT_ENDPOINT" 180; then
    echo "chaos-net: the workers did not all register:" >&2; tail -5 "$work"/*.log >&2; exit 1
fi
log "cluster up: coordinator $ENDPOINT (CURVE, allow-lists), workers ${WORKERS[*]}, host 3 via the proxy $PROXY_ENDPOINT"

NETEM=0
if in_ns "$NS_W3" tc qdisc add dev eth0 root netem delay 1ms 2>"$work/netem.err"; then
    NETEM=1; in_ns "$NS_W3" tc qdisc del dev eth0 root
fi
NETEM_NOTE=$([ "$NETEM" = 1 ] && echo "netem available: latency also on host links" \
    || echo "netem unavailable ($(head -1 "$work/netem.err")): latency through the delay proxy only")
log "$NETEM_NOTE"

PROMPTS=("Tell me about cats." "Why is the sky blue?" "Write a haiku about rain.")
PREFERENCES=("concise, friendly, knowledgeable" "concise" "friendly, knowledgeable")

# request DIR NAME PROMPT PREFERENCE: one answer from the client host; DIR/NAME.{out,err,rc}; the client's pid is
# in DIR/NAME.pid while it runs (for the disconnect fault). rc file: "STATUS START END".
request() {
    local rc=0 start
    start=$(now)
    # (The shell's own stderr goes to /dev/null here: a client killed on purpose gets no "Killed" notice.)
    { timeout -s KILL $((TIMEOUT + 20)) sh -c 'echo $$ >"$0"; exec "$@"' "$1/$2.pid" \
        ip netns exec "$NS_CL" "$MOPE" generate --coordinator "$CLIENT_ENDPOINT" "${CLIENT_CURVE[@]}" \
        --preference "$4" --max-tokens "$MAX_TOKENS" --timeout "$TIMEOUT" "$3" \
        >"$1/$2.out" 2>"$1/$2.err" </dev/null; } 2>/dev/null || rc=$?
    rm -f "$1/$2.pid"
    echo "$rc $start $(now)" >"$1/$2.rc"
}

# clean DIR NAME: the answer completed without losing an expert or moving one.
clean() {
    local rc
    read -r rc _ <"$1/$2.rc"
    [ "$rc" = 0 ] && ! grep -q "degraded\|failovers" "$1/$2.err"
}
# A machine loaded far beyond its cores can make a live worker miss a deadline without any fault: an answer that
# is not clean is asked again (3 times at most) before the run gives up on its reference.
for p in "${!PROMPTS[@]}"; do
    for q in "${!PREFERENCES[@]}"; do
        for _ in 1 2 3; do
            request "$work/ref" "$p.$q" "${PROMPTS[$p]}" "${PREFERENCES[$q]}"
            clean "$work/ref" "$p.$q" && break
            sleep 1
        done
        if ! clean "$work/ref" "$p.$q"; then
            echo "chaos-net: the fault-free request '${PROMPTS[$p]}' / '${PREFERENCES[$q]}' was not clean:" >&2
            cat "$work/ref/$p.$q.err" >&2; exit 1
        fi
    done
done
log "reference: ${#PROMPTS[@]} prompts × ${#PREFERENCES[@]} preferences answered without faults"

# --- Hostile peers --------------------------------------------------------------------------------------------
# probe NAME: runs one probe from the client host; appends "NAME|expected|actual|PASS or FAIL" to probes.log.
PROBES=(no-keys-client no-keys-worker unknown-key-client worker-key-as-client client-key-as-worker
        unknown-key-as-worker garbage-with-client-key)
"$MOPE" keygen --out "$work/keys-stranger" >/dev/null
probe_worker() {  # NAME SECRET_KEY_FILE: a real `mope worker` with that key must never register
    local id=intruder-$1-$BASHPID log=$work/probe/$1.$BASHPID.log registered_id
    timeout -s KILL 6 ip netns exec "$NS_CL" "$MOPE" worker --config "$work/cluster.json" --expert concise \
        --id "$id" --coordinator "$ENDPOINT" --curve-server-key-file "$K/coordinator.pub" \
        --curve-secret-key-file "$2" --threads 1 >"$log" 2>&1 || true
    registered_id=$(registered "$id")
    if [ "$registered_id" = 0 ] && ! grep -q "registered with the coordinator" "$log"; then
        echo "never registered in 6 s (handshake refused on the workers' endpoint)|PASS"
    else
        echo "REGISTERED as $id ($registered_id registrations)|FAIL"
    fi
}
probe_client() {  # SECRET_KEY_FILE: `mope generate` with that key must get no answer
    local out rc=0
    out=$(timeout -s KILL 20 ip netns exec "$NS_CL" "$MOPE" generate --coordinator "$CLIENT_ENDPOINT" \
        --curve-server-key-file "$K/coordinator.pub" --curve-secret-key-file "$1" --timeout 5 --max-tokens 4 \
        "${PROMPTS[0]}" 2>&1 >/dev/null) || rc=$?
    if [ "$rc" != 0 ] && ! grep -q "^finish:" <<<"$out"; then
        echo "no answer, exit $rc: $(grep -m1 '^error' <<<"$out" | cut -c1-70)|PASS"
    else
        echo "ANSWERED (exit $rc)|FAIL"
    fi
}
probe() {
    local name=$1 expected actual
    case $name in
        no-keys-client)
            expected="plain-text peer on the clients' endpoint: no answer"
            actual=$(in_ns "$NS_CL" python3 Scripts/lib/hostile-peer.py plain "$CLIENT_ENDPOINT" 3 2>&1) \
                && actual="$actual|PASS" || actual="$actual|FAIL" ;;
        no-keys-worker)
            expected="plain-text peer on the workers' endpoint: no answer"
            actual=$(in_ns "$NS_CL" python3 Scripts/lib/hostile-peer.py plain "$ENDPOINT" 3 2>&1) \
                && actual="$actual|PASS" || actual="$actual|FAIL" ;;
        unknown-key-client)
            expected="generate with a key in no allow-list: refused"
            actual=$(probe_client "$work/keys-stranger.key") ;;
        worker-key-as-client)
            expected="generate with the workers' key: refused (not in authorized-keys)"
            actual=$(probe_client "$K/worker.key") ;;
        client-key-as-worker)
            expected="mope worker with the client's key: refused, never registered"
            actual=$(probe_worker "$name" "$K/client.key") ;;
        unknown-key-as-worker)
            expected="mope worker with a key in no allow-list: refused, never registered"
            actual=$(probe_worker "$name" "$work/keys-stranger.key") ;;
        garbage-with-client-key)
            expected="2000 undecodable frames with the client's key: coordinator stays up and answers"
            local out
            out=$(in_ns "$NS_CL" python3 Scripts/lib/hostile-peer.py garbage "$CLIENT_ENDPOINT" \
                "$K/coordinator.pub" "$K/client.key" 2000 3 2>&1) || true
            if [ -n "$(status_summary)" ]; then actual="$out; coordinator answers status|PASS"
            else actual="$out; COORDINATOR DOES NOT ANSWER|FAIL"; fi ;;
    esac
    # One line per run: the probe's own output may hold line breaks or bars.
    local verdict=${actual##*|}
    actual=$(tr '\n|' '  ' <<<"${actual%|*}" | cut -c1-100)
    echo "$name|$expected|$actual|$verdict" >>"$work/probes.log"
}
: >"$work/probes.log"
probe_jobs=()
for name in "${PROBES[@]}"; do ( set +e; probe "$name" ) & probe_jobs+=($!); done
for pid in "${probe_jobs[@]}"; do wait "$pid" || true; done
log "probes: $(grep -c '|PASS$' "$work/probes.log") of ${#PROBES[@]} refused as expected"

# --- The load -------------------------------------------------------------------------------------------------
for c in $(seq 0 $((CONCURRENCY - 1))); do
    (
        n=0
        while [ ! -e "$work/state/stop-load" ]; do
            p=$(( (c + n) % ${#PROMPTS[@]} )) q=$(( (c * 7 + n * 2) % ${#PREFERENCES[@]} ))
            name=$(printf 'c%02d-%05d' "$c" "$n")
            echo "$p $q" >"$work/req/$name.pair"
            request "$work/req" "$name" "${PROMPTS[$p]}" "${PREFERENCES[$q]}"
            n=$((n + 1))
        done
    ) &
    helpers+=($!)
done

# --- The faults -----------------------------------------------------------------------------------------------
# Each fault runs in the background and appends "KIND|TARGET|DETAIL|START|END" to faults.log when it is over;
# a target (a worker, the coordinator, a host's network, the proxy) takes one fault at a time (state/busy-*).
: >"$work/faults.log"
busy() { [ -e "$work/state/busy-$1" ]; }
fault_done() {  # KIND TARGET DETAIL START
    echo "$1|$2|$3|$4|$(now)" >>"$work/faults.log"
    rm -f "$work/state/busy-$2"
}
f_kill() {  # WORKER SECONDS
    local start; start=$(now)
    echo down >"$work/state/$1.state"
    kill -KILL "$(cat "$work/state/$1.pid")" 2>/dev/null || true
    sleep "$2"; start_worker "$1"
    fault_done kill "$1" "restarted after $2 s" "$start"
}
f_stop() {
    local start pid; start=$(now) pid=$(cat "$work/state/$1.pid")
    echo stopped >"$work/state/$1.state"
    kill -STOP "$pid" 2>/dev/null || true
    sleep "$2"
    kill -CONT "$pid" 2>/dev/null || true
    echo up >"$work/state/$1.state"
    fault_done stop "$1" "SIGCONT after $2 s" "$start"
}
f_drain() {
    local start pid; start=$(now) pid=$(cat "$work/state/$1.pid")
    echo draining >"$work/state/$1.state"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then echo "$1" >>"$work/state/undrained"; kill -KILL "$pid" 2>/dev/null || true; fi
    sleep 1; start_worker "$1"
    fault_done drain "$1" "drained in $(awk -v a="$(now)" -v b="$start" 'BEGIN { printf "%.1f", a - b - 1 }') s, restarted" "$start"
}
f_coordinator() {
    local start; start=$(now)
    echo down >"$work/state/coordinator.state"
    kill -KILL "$(cat "$work/state/coordinator.pid")" 2>/dev/null || true
    sleep "$2"; start_coordinator
    fault_done coordinator coordinator "restarted after $2 s" "$start"
}
f_disconnect() {  # PIDFILE: kills that client now (not in the background); 1 when it had already finished
    local start pid name; start=$(now) name=$(basename "$1" .pid)
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] || return 1
    touch "$work/req/$name.disconnected"
    if ! kill -KILL "$pid" 2>/dev/null; then rm -f "$work/req/$name.disconnected"; return 1; fi
    fault_done disconnect "client" "$name" "$start"
}
f_loss() {  # HOST PERCENT SECONDS
    local start; start=$(now)
    in_ns "$1" nft -f - <<EOF
table inet mope_chaos {
    chain input { type filter hook input priority 0; policy accept; numgen random mod 100 < $2 drop; }
    chain output { type filter hook output priority 0; policy accept; numgen random mod 100 < $2 drop; }
}
EOF
    sleep "$3"
    in_ns "$1" nft delete table inet mope_chaos
    fault_done "loss $2%" "$1" "$3 s" "$start"
}
f_bandwidth() {  # HOST RATE SECONDS: both directions of the host's link
    local start port=${NETNS_PORT[$1]}; start=$(now)
    in_ns "$1" tc qdisc add dev eth0 root tbf rate "$2" burst 4kb latency 300ms
    ip -n "$NS_BR" link show "$port" >/dev/null && tc -n "$NS_BR" qdisc add dev "$port" root tbf rate "$2" burst 4kb latency 300ms
    sleep "$3"
    in_ns "$1" tc qdisc del dev eth0 root 2>/dev/null || true
    tc -n "$NS_BR" qdisc del dev "$port" root 2>/dev/null || true
    fault_done bandwidth "$1" "$2 for $3 s" "$start"
}
f_latency() {  # TARGET(proxy or host) MS SECONDS
    local start; start=$(now)
    if [ "$1" = proxy ]; then
        echo "$2" >"$work/proxy.delay"; sleep "$3"; echo 0 >"$work/proxy.delay"
    else
        in_ns "$1" tc qdisc add dev eth0 root netem delay "${2}ms"; sleep "$3"; in_ns "$1" tc qdisc del dev eth0 root
    fi
    fault_done latency "$1" "+$2 ms for $3 s" "$start"
}
f_partition() {  # HOST SECONDS
    local start; start=$(now)
    ip -n "$1" link set eth0 down
    sleep "$2"
    ip -n "$1" link set eth0 up
    fault_done partition "$1" "$2 s" "$start"
}
f_hostile() {  # PROBE
    local start; start=$(now)
    probe "$1"
    fault_done hostile "hostile-$1" "$1" "$start"
}

WORKER_HOSTS=("$NS_W1" "$NS_W2" "$NS_W3")
NET_HOSTS=("$NS_W1" "$NS_W2" "$NS_W3" "$NS_CL" "$NS_C")
PART_HOSTS=("$NS_W1" "$NS_W2" "$NS_W3" "$NS_CL")
KINDS=(kill stop drain coordinator disconnect loss bandwidth latency partition hostile)
WEIGHTS=(12 10 7 3 10 15 8 10 10 8)
pick() { local -n list=$1; echo "${list[$(( RANDOM % ${#list[@]} ))]}"; }
draw_kind() {
    local total=0 w r i
    for w in "${WEIGHTS[@]}"; do total=$((total + w)); done
    r=$(( RANDOM % total ))
    for i in "${!KINDS[@]}"; do
        r=$((r - WEIGHTS[i])); [ "$r" -lt 0 ] && { echo "${KINDS[$i]}"; return; }
    done
}
# Runs a fault function as a background job without errexit (a failed command must not skip its recovery).
in_background() { ( set +e; "$@" ) & }
# launch KIND: starts one fault of KIND on a free target, drawing its parameters; returns 1 when no target is free.
launch() {
    local kind=$1 target d candidates=() pidfiles=()
    local quick=$(( SHORT ? 2 : 0 ))
    case $kind in
        kill|stop|drain)
            for target in "${WORKERS[@]}"; do
                busy "$target" || [ "$(cat "$work/state/$target.state")" != up ] || candidates+=("$target")
            done
            [ "${#candidates[@]}" -gt 0 ] || return 1
            target=$(pick candidates); d=$(( quick ? quick : 2 + RANDOM % 4 ))
            touch "$work/state/busy-$target"
            case $kind in
                kill) in_background f_kill "$target" "$d" ;;
                stop) in_background f_stop "$target" "$d" ;;
                drain) in_background f_drain "$target" ;;
            esac ;;
        coordinator)
            busy coordinator && return 1
            touch "$work/state/busy-coordinator"; d=$(( 1 + RANDOM % 3 ))
            in_background f_coordinator coordinator "$d" ;;
        disconnect)
            pidfiles=("$work"/req/*.pid)
            [ -e "${pidfiles[0]}" ] || return 1
            f_disconnect "$(pick pidfiles)"
            return ;;
        loss|bandwidth|partition)
            local hosts_name=NET_HOSTS
            [ "$kind" = partition ] && hosts_name=PART_HOSTS
            local -n hosts=$hosts_name
            for target in "${hosts[@]}"; do busy "$target" || candidates+=("$target"); done
            [ "${#candidates[@]}" -gt 0 ] || return 1
            target=$(pick candidates); d=$(( quick ? quick : 2 + RANDOM % 5 ))
            touch "$work/state/busy-$target"
            case $kind in
                loss) local percents=(1 5 20); in_background f_loss "$target" "$(pick percents)" "$d" ;;
                bandwidth) local rates=(64kbit 256kbit 1mbit); in_background f_bandwidth "$target" "$(pick rates)" "$d" ;;
                partition) d=$(( quick ? 4 : 2 + RANDOM % 7 )); in_background f_partition "$target" "$d" ;;
            esac ;;
        latency)
            candidates=(proxy)
            if [ "$NETEM" = 1 ]; then candidates+=("${WORKER_HOSTS[@]}"); fi
            local free=()
            for target in "${candidates[@]}"; do busy "$target" || free+=("$target"); done
            [ "${#free[@]}" -gt 0 ] || return 1
            target=$(pick free); d=$(( quick ? quick : 2 + RANDOM % 5 ))
            local delays=(20 50 100 200)
            touch "$work/state/busy-$target"
            in_background f_latency "$target" "$(pick delays)" "$d" ;;
        hostile)
            target=$(pick PROBES)
            busy "hostile-$target" && return 1
            touch "$work/state/busy-hostile-$target"
            in_background f_hostile "$target" ;;
    esac
    helpers+=($!)
    return 0
}

# VmRSS sampling: "ROLE KB" lines in rss.log.
sample_rss() {
    local id pid kb
    for id in coordinator "${WORKERS[@]}"; do
        pid=$(cat "$work/state/$id.pid" 2>/dev/null) || continue
        # (A process just killed has no VmRSS line.)
        kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || continue
        if [ -n "$kb" ]; then
            echo "$([ "$id" = coordinator ] && echo coordinator || echo worker) $kb" >>"$work/rss.log"
        fi
    done
    return 0
}
: >"$work/rss.log"
sample_rss
cp "$work/rss.log" "$work/rss.baseline"

RANDOM=$SEED
if [ "$SHORT" = 1 ]; then
    # Each kind once, in an order drawn from the seed (the kills and the coordinator restart spaced out).
    mapfile -t SCHEDULE < <(printf '%s\n' "${KINDS[@]}" | awk -v seed="$SEED" 'BEGIN { srand(seed) } { print rand() "\t" $0 }' \
        | sort -n | cut -f2)
else
    SCHEDULE=()
fi
END=$(( $(date +%s) + RUN_SECONDS ))
injected=0 skipped=0 step=0
UNEXPECTED=()
log "faults: $([ "$SHORT" = 1 ] && echo "short mode, each kind once" || echo "up to $RUN_SECONDS s${MAX_FAULTS:+, at most $MAX_FAULTS faults (0: no limit)}"), seed $SEED"
while [ "$(date +%s)" -lt "$END" ]; do
    if [ "$SHORT" = 1 ]; then
        [ "$step" -lt "${#SCHEDULE[@]}" ] || break
        kind=${SCHEDULE[$step]}
        sleep 2
    else
        [ "$MAX_FAULTS" = 0 ] || [ "$injected" -lt "$MAX_FAULTS" ] || break
        kind=$(draw_kind)
        sleep "$(( 1 + RANDOM % 2 )).$(( RANDOM % 10 ))"
    fi
    step=$((step + 1))
    sample_rss
    # A worker or coordinator that exited without a fault is a failure; it is restarted so that the run goes on.
    for id in coordinator "${WORKERS[@]}"; do
        [ "$(cat "$work/state/$id.state")" = up ] || continue
        busy "$id" && continue
        if ! alive "$(cat "$work/state/$id.pid")"; then
            UNEXPECTED+=("$id: $(tail -1 "$work/$([ "$id" = coordinator ] && echo coordinator || echo "worker-$id").log")")
            log "$id exited without a fault; restarting it"
            if [ "$id" = coordinator ]; then start_coordinator; else start_worker "$id"; fi
        fi
    done
    launched=0
    # The short mode injects every kind: a kind without a free target (no answer in flight yet) is tried again.
    for _ in $(seq 1 $(( SHORT ? 30 : 1 ))); do
        if launch "$kind"; then launched=1; break; fi
        sleep 0.2
    done
    if [ "$launched" = 1 ]; then injected=$((injected + 1)); else skipped=$((skipped + 1)); fi
    [ "$launched" = 1 ] || [ "$SHORT" = 0 ] || echo "$kind" >>"$work/state/not-injected"
done
log "faults over ($injected launched, $skipped draws found no free target); waiting for the faults to heal"
for pid in "${helpers[@]:$CONCURRENCY}"; do wait "$pid" 2>/dev/null || true; done
touch "$work/state/stop-load"
log "waiting for the requests in flight"
for pid in "${helpers[@]:0:$CONCURRENCY}"; do wait "$pid" 2>/dev/null || true; done
helpers=()
sample_rss

# After the faults: every worker registers again, no session is left open, and every answer is exact again.
settled=0 leftover=""
for _ in $(seq 1 120); do
    read -r ready running sessions _ <<<"$(status_summary)" || true
    if [ "${ready:-0}" = 1 ] && [ "${running:-1}" = 0 ] && [ "${sessions:-1}" = 0 ]; then settled=1; break; fi
    leftover="ready ${ready:-?}, ${running:-?} sessions running, ${sessions:-?} open on workers"
    sleep 0.5
done
after_wrong=0
if [ "$settled" = 1 ]; then
    for p in "${!PROMPTS[@]}"; do
        for q in "${!PREFERENCES[@]}"; do
            # Clean and exact, or wrong; an answer that is not clean (load, see the reference) is asked again.
            for _ in 1 2 3; do
                request "$work/after" "$p.$q" "${PROMPTS[$p]}" "${PREFERENCES[$q]}"
                clean "$work/after" "$p.$q" && break
                sleep 1
            done
            if ! clean "$work/after" "$p.$q" || ! cmp -s "$work/after/$p.$q.out" "$work/ref/$p.$q.out"; then
                after_wrong=$((after_wrong + 1))
            fi
        done
    done
fi

# --- The verdict ----------------------------------------------------------------------------------------------
# Intervals in which the coordinator could not be reached by the client (its restart, a network fault on its host
# or the client's): a client that heard nothing then failed for a reason.
awk -F'|' -v c="$NS_C" -v l="$NS_CL" '$1 == "coordinator" || $2 == c || $2 == l { print $4, $5 }' \
    "$work/faults.log" >"$work/unreachable.intervals"
unreachable_during() {  # START END
    awk -v s="$1" -v e="$2" '$1 <= e + 3 && $2 + 3 >= s { found = 1 } END { exit !found }' "$work/unreachable.intervals"
}
exact=0 degraded=0 refused=0 hung=0 wrong=0 disconnected=0 failovers=0
declare -A LOST=() REASONS=()
problems=()
for rc_file in "$work"/req/*.rc; do
    [ -e "$rc_file" ] || continue
    name=$(basename "$rc_file" .rc)
    read -r rc start end <"$rc_file"
    err=$work/req/$name.err
    read -r p q <"$work/req/$name.pair"
    what="$name ('${PROMPTS[$p]}' / '${PREFERENCES[$q]}')"
    elapsed=$(awk -v a="$end" -v b="$start" 'BEGIN { printf "%.1f", a - b }')
    if [ -e "$work/req/$name.disconnected" ]; then disconnected=$((disconnected + 1)); continue; fi
    case $rc in
        0)
            lost=$(sed -n 's/^degraded: lost expert //p' "$err" | sort | paste -sd, -)
            moved=$(sed -n 's/^failovers: \([0-9]*\).*/\1/p' "$err")
            [ -n "$moved" ] && failovers=$((failovers + moved))
            if [ -n "$lost" ]; then
                outside=$(tr ',' '\n' <<<"$lost" | while read -r e; do
                    grep -qw "$e" <<<"${PREFERENCES[$q]}" || echo "$e"; done)
                if [ -n "$outside" ]; then
                    wrong=$((wrong + 1)); problems+=("WRONG $what: lost '$outside', not in its preference")
                else
                    degraded=$((degraded + 1)); LOST[$lost]=$(( ${LOST[$lost]:-0} + 1 ))
                fi
            elif cmp -s "$work/req/$name.out" "$work/ref/$p.$q.out"; then
                exact=$((exact + 1))
            else
                wrong=$((wrong + 1))
                problems+=("WRONG $what${moved:+, $moved failovers}: '$(head -c 120 "$work/req/$name.out" | tr '\n' ' ')' ≠ '$(head -c 120 "$work/ref/$p.$q.out" | tr '\n' ' ')'")
            fi ;;
        1)
            message=$(grep -m1 '^error' "$err" || echo "no message")
            if awk -v e="$elapsed" -v t="$TIMEOUT" 'BEGIN { exit !(e > t + 10) }'; then
                hung=$((hung + 1)); problems+=("HUNG $what: failed only after $elapsed s: $message")
            elif grep -q "no answer from the coordinator\|no connection to the coordinator\|stopped answering" <<<"$message" \
                && ! unreachable_during "$start" "$end"; then
                hung=$((hung + 1)); problems+=("HUNG $what: '$message' while no fault made the coordinator unreachable")
            else
                refused=$((refused + 1))
                key=$(sed -E 's/session [0-9]+/session N/g; s/[0-9]+(\.[0-9]+)? ?(s|ms)\b/N \2/g; s/after [0-9]+ tokens/after K tokens/' \
                    <<<"$message" | cut -c1-150)
                REASONS[$key]=$(( ${REASONS[$key]:-0} + 1 ))
            fi ;;
        137)
            hung=$((hung + 1)); problems+=("HUNG $what: still running $((TIMEOUT + 20)) s after it started, killed") ;;
        *)
            wrong=$((wrong + 1)); problems+=("CLIENT CRASH $what: exit $rc: $(tail -2 "$err" | tr '\n' ' ')") ;;
    esac
done
for entry in "${UNEXPECTED[@]}"; do problems+=("EXITED WITHOUT A FAULT: $entry"); done
if [ -s "$work/state/undrained" ]; then
    while read -r id; do problems+=("UNDRAINED: $id still ran 15 s after SIGTERM"); done <"$work/state/undrained"
fi
if [ -s "$work/state/not-injected" ]; then
    problems+=("SHORT MODE: no free target for: $(paste -sd' ' "$work/state/not-injected")")
fi
[ "$settled" = 1 ] || problems+=("NOT SETTLED: 60 s after the faults: $leftover")
[ "$after_wrong" = 0 ] || problems+=("AFTER THE FAULTS: $after_wrong answers not clean and exact in 3 tries")
for name in "${PROBES[@]}"; do
    grep -q "^$name|" "$work/probes.log" || problems+=("PROBE $name: did not run to its verdict")
done
while IFS='|' read -r name expected actual verdict; do
    [ "$verdict" = PASS ] || problems+=("PROBE $name: expected $expected; got $actual")
done <"$work/probes.log"

# Memory: the largest VmRSS seen against the first sample of each role; bounded means at most 2 × + 64 MiB.
rss_line() {  # ROLE
    local base max
    base=$(awk -v r="$1" '$1 == r { if ($2 > m) m = $2 } END { print m + 0 }' "$work/rss.baseline")
    max=$(awk -v r="$1" '$1 == r { if ($2 > m) m = $2 } END { print m + 0 }' "$work/rss.log")
    local bound=$(( base * 2 + 65536 ))
    printf '%-12s start %6.1f MiB   max %6.1f MiB   bound %6.1f MiB   %s\n' "$1" \
        "$(awk -v k="$base" 'BEGIN { print k / 1024 }')" "$(awk -v k="$max" 'BEGIN { print k / 1024 }')" \
        "$(awk -v k="$bound" 'BEGIN { print k / 1024 }')" "$([ "$max" -le "$bound" ] && echo ok || echo EXCEEDED)"
    [ "$max" -le "$bound" ]
}

report() {
    local total_faults
    total_faults=$(wc -l <"$work/faults.log")
    echo "== chaos-net report (seed $SEED, $MODE build, $([ "$SHORT" = 1 ] && echo short || echo "up to $RUN_SECONDS s"), concurrency $CONCURRENCY, $MAX_TOKENS tokens, timeout $TIMEOUT s)"
    echo
    echo "| fault | count |"
    echo "| --- | ---: |"
    awk -F'|' -v c="$NS_C" -v w1="$NS_W1" -v w2="$NS_W2" -v w3="$NS_W3" -v l="$NS_CL" '
        { k = $1
          if (k == "kill") k = "kill -9 a worker"; else if (k == "stop") k = "SIGSTOP/SIGCONT a worker"
          else if (k == "drain") k = "SIGTERM a worker (drain, restart)"; else if (k == "coordinator") k = "kill -9 the coordinator, restart"
          else if (k == "disconnect") k = "kill a client mid-answer"; else if (k ~ /^loss/) k = "packet loss " substr(k, 6) " (nftables)"
          else if (k == "bandwidth") k = "bandwidth limit (tc tbf)"; else if (k == "latency") k = ($2 == "proxy" ? "latency (delay proxy)" : "latency (netem)")
          else if (k == "partition") k = "partition (link down/up)"; else if (k == "hostile") k = "hostile peer"
          n[k]++ }
        END { for (k in n) printf "| %s | %d |\n", k, n[k] }' "$work/faults.log" | sort
    echo "| **total** | **$total_faults** |"
    echo
    echo "| answers | exact | degraded | refused | hung | wrong | clients killed |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    echo "| $((exact + degraded + refused + hung + wrong + disconnected)) | $exact | $degraded | $refused | $hung | $wrong | $disconnected |"
    echo
    echo "failovers: $failovers; after the faults: $([ "$settled" = 1 ] && echo "settled (every worker registered, no session open), $(( ${#PROMPTS[@]} * ${#PREFERENCES[@]} - after_wrong )) of $(( ${#PROMPTS[@]} * ${#PREFERENCES[@]} )) answers exact" || echo "NOT settled: $leftover")"
    for key in "${!LOST[@]}"; do echo "  degraded, lost $key: ${LOST[$key]}"; done
    for key in "${!REASONS[@]}"; do echo "  refused ×${REASONS[$key]}: $key"; done
    echo "desync replies from workers (a stale step after a replay; the coordinator recovers): $(cat "$work"/worker-*.log | grep -c 'error desync' || true)"
    echo "$NETEM_NOTE"
    echo
    echo "| probe | expected | actual | result |"
    echo "| --- | --- | --- | --- |"
    awk -F'|' '{ n[$1]++; if ($4 == "PASS") p[$1]++; e[$1] = $2; if (!($1 in a) || $4 != "PASS") a[$1] = $3 }
        END { for (k in n) printf "| %s | %s | %s | %s (%d of %d runs) |\n", k, e[k], a[k], (p[k] == n[k] ? "pass" : "FAIL"), p[k], n[k] }' \
        "$work/probes.log" | sort
    echo
    echo "memory (VmRSS, sampled every fault; bound 2 × start + 64 MiB):"
    rss_line coordinator || echo "EXCEEDED" >"$work/state/rss-exceeded"
    rss_line worker || echo "EXCEEDED" >"$work/state/rss-exceeded"
}
report | tee "$work/report.txt"
[ -e "$work/state/rss-exceeded" ] && problems+=("MEMORY: a VmRSS bound was exceeded")
[ -n "$REPORT" ] && cp "$work/report.txt" "$REPORT"
if [ "${#problems[@]}" -gt 0 ]; then
    echo "FAILURES: ${#problems[@]}"
    for problem in "${problems[@]}"; do echo "  $problem"; done
    KEEP=1
    exit 1
fi
echo "PASSED: no hang, no wrong answer, every hostile peer refused, memory bounded"
