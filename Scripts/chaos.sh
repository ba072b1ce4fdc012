#!/usr/bin/env bash
# Failure injection under load: a coordinator and 2 workers per expert answer a bounded stream of requests
# while, on a seeded random schedule, workers are killed (kill -9, restarted a few seconds later), frozen
# (SIGSTOP for a few seconds, then SIGCONT) or drained (SIGTERM, restarted once they exit).
#
#   Scripts/chaos.sh [--seconds N] [--config FILE] [--concurrency C] [--seed S] [--timeout T]
#                    [--max-tokens M] [--replicas R] [--heartbeat-ms H] [--freeze-coordinator]
#                    [--shared] [--release] [--no-build] [--keep]
#
#   --seconds N      how long faults are injected and requests started (default 60)
#   --config FILE    a cluster config (default: a generated one over Tests/Fixtures/tiny-{a,b,c}.gguf with
#                    short deadlines); its experts run as R workers each on a private ipc endpoint
#   --concurrency C  requests in flight at once (default 4)
#   --seed S         the fault schedule's seed (default 1); the same seed gives the same schedule
#   --timeout T      each request's --timeout in seconds (default 60)
#   --max-tokens M   tokens per answer (default 16)
#   --replicas R     workers per expert (default 2)
#   --heartbeat-ms H the generated config's heartbeat interval (default 1000; the step deadline is 3 H, the
#                    open deadline 10 H). A worker silent for 3 H is taken for dead, and a worker cannot send
#                    while it computes: on a machine loaded far beyond its cores, short intervals make live
#                    workers look dead (the run still passes, with more degraded answers and refusals)
#   --freeze-coordinator  also draw a fourth fault: SIGSTOP the coordinator for 1–3 s, then SIGCONT
#   --shared         one worker process per replica serves every expert (`mope worker --expert a,b,c`); the
#                    generated config then puts every expert on the first one's model (their system prompts
#                    still differ), and each fault hits all the experts of a process at once (with --config,
#                    its experts must share one model file)
#   --release        build and run the release binary (default: debug)
#   --no-build       use the binary already built
#   --keep           keep the logs (their folder is printed)
#
# First every prompt × preference pair is answered once without faults (the reference). Then, while faults
# run, every request must end one of two ways: completed (possibly degraded: "lost expert X"; possibly with
# failovers to a replica), or failed with an error from the coordinator. A completed answer that lost no
# expert must equal the reference text (greedy decoding). Exits non-zero on any request that hung (did not
# answer within its timeout, or whose client had to be killed), any crashed process (coordinator, worker
# outside an injected fault, or client), or any wrong text. Every process runs in one process group of its
# own, which is killed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. Scripts/lib/cluster.sh

SECONDS_TOTAL=60 CONFIG="" CONCURRENCY=4 SEED=1 TIMEOUT=60 MAX_TOKENS=16 REPLICAS=2 HEARTBEAT=1000 MODE=debug
BUILD=1 KEEP=0 FREEZE_COORDINATOR=0 SHARED=0
usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) SECONDS_TOTAL=$2; shift 2 ;;
        --config) CONFIG=$2; shift 2 ;;
        --concurrency) CONCURRENCY=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --max-tokens) MAX_TOKENS=$2; shift 2 ;;
        --replicas) REPLICAS=$2; shift 2 ;;
        --heartbeat-ms) HEARTBEAT=$2; shift 2 ;;
        --freeze-coordinator) FREEZE_COORDINATOR=1; shift ;;
        --shared) SHARED=1; shift ;;
        --release) MODE=release; shift ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage ;;
        *) echo "chaos: unknown option $1" >&2; usage ;;
    esac
done
for value in "$SECONDS_TOTAL" "$CONCURRENCY" "$SEED" "$TIMEOUT" "$MAX_TOKENS" "$REPLICAS" "$HEARTBEAT"; do
    [[ $value =~ ^[0-9]+$ ]] || { echo "chaos: expected a whole number, got '$value'" >&2; exit 2; }
done

if [ "$BUILD" = 1 ]; then swift build -c "$MODE" --product mope >&2; fi
MOPE=$PWD/.build/$MODE/mope
[ -x "$MOPE" ] || { echo "chaos: $MOPE not found (build it or drop --no-build)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/mope-chaos.XXXXXX")
mkdir -p "$work/req" "$work/ref" "$work/state"
ENDPOINT="ipc://$work/coordinator.sock"
PGID=""
loaders=()

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${loaders[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    if [ -n "$PGID" ]; then
        kill -CONT -- "-$PGID" 2>/dev/null || true
        kill -KILL -- "-$PGID" 2>/dev/null || true
    fi
    if [ "$KEEP" = 1 ]; then echo "chaos: logs kept in $work" >&2; else rm -rf "$work"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One process group for the whole cluster: a sleeping leader keeps it alive; every process joins it.
python3 -c 'import os; os.setpgid(0, 0); os.execvp("sleep", ["sleep", "86400"])' &
PGID=$!
disown "$PGID"  # Killed at the end on purpose: no job notice.
sleep 0.2
# Replaces the calling (sub)shell with a command in the cluster's process group: call it only in a subshell or
# as a background job, where `$!` is then the command's pid.
ingroup() {
    exec python3 -c 'import os, sys; os.setpgid(0, int(sys.argv[1])); os.execvp(sys.argv[2], sys.argv[2:])' "$PGID" "$@"
}
# True while the process runs (a zombie or a missing pid is not running).
alive() {
    local state
    state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}
now() { date +%s.%N; }
log() { printf '[chaos %6.1f s] %s\n' "$(awk -v a="$(now)" -v b="$T0" 'BEGIN { print a - b }')" "$*"; }
T0=$(now)

# The config: given, or generated over the tiny test models with short deadlines.
if [ -z "$CONFIG" ]; then
    CONFIG=$work/cluster.json
    tiny_cluster_config "$CONFIG" "$ENDPOINT" "$HEARTBEAT" $((3 * HEARTBEAT)) $((10 * HEARTBEAT)) "$MAX_TOKENS"
    if [ "$SHARED" = 1 ]; then
        python3 - "$CONFIG" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
for expert in config["experts"]:
    expert["model"] = config["experts"][0]["model"]
json.dump(config, open(sys.argv[1], "w"), indent=2)
PY
    fi
fi
mapfile -t EXPERTS < <(python3 -c \
    'import json, sys; [print(e["name"]) for e in json.load(open(sys.argv[1]))["experts"]]' "$CONFIG")
[ "${#EXPERTS[@]}" -gt 0 ] || { echo "chaos: no experts in $CONFIG" >&2; exit 2; }
# WORKERS are the processes faults hit; IDS the worker ids that register (the same unless --shared).
WORKERS=() IDS=()
for expert in "${EXPERTS[@]}"; do
    for replica in $(seq 1 "$REPLICAS"); do IDS+=("$expert-$replica"); done
done
if [ "$SHARED" = 1 ]; then
    for replica in $(seq 1 "$REPLICAS"); do WORKERS+=("shared-$replica"); done
else
    WORKERS=("${IDS[@]}")
fi

start_coordinator() {
    ( ingroup "$MOPE" coordinator --config "$CONFIG" --endpoint "$ENDPOINT" --drain-grace 5 \
        >>"$work/coordinator.log" 2>&1 & echo $! >"$work/state/coordinator.pid" )
    COORDINATOR=$(cat "$work/state/coordinator.pid")
}
# Starts worker ID (EXPERT-N, or shared-N: every expert's replica N); its pid goes to state/ID.pid. Started
# from a subshell that exits at once, so a restart from the fault schedule's background jobs works the same way.
start_worker() {
    local id=$1 expert=${1%-*} ids=$1
    if [ "$SHARED" = 1 ]; then
        expert=$(IFS=,; echo "${EXPERTS[*]}")
        ids=$(printf "%s-${1##*-}," "${EXPERTS[@]}" | sed 's/,$//')
    fi
    ( ingroup "$MOPE" worker --config "$CONFIG" --expert "$expert" --id "$ids" --coordinator "$ENDPOINT" \
        --threads 1 --drain-grace 2 >>"$work/worker-$id.log" 2>&1 & echo $! >"$work/state/$id.pid" )
    echo up >"$work/state/$id.state"
}
wait_registered() {  # ID TIMES SECONDS: until the coordinator's status answer counts ID's registrations
    local end=$(( $(date +%s) + $3 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        [ "$(registrations "$MOPE" "$ENDPOINT.clients" "$1")" -ge "$2" ] && return 0
        alive "$COORDINATOR" || return 1
        sleep 0.1
    done
    return 1
}

start_coordinator
for id in "${WORKERS[@]}"; do start_worker "$id"; done
for id in "${IDS[@]}"; do
    if ! wait_registered "$id" 1 180; then
        echo "chaos: worker $id did not register" >&2; tail -20 "$work"/*.log >&2; exit 1
    fi
done
log "cluster up: coordinator + ${#WORKERS[@]} worker processes (${#EXPERTS[@]} experts × $REPLICAS), $MODE build, $ENDPOINT"

PROMPTS=("Tell me about cats." "Why is the sky blue?" "Write a haiku about rain." "What is 2+2?")
PREFERENCES=("$(printf '%s, ' "${EXPERTS[@]}" | sed 's/, $//')" "${EXPERTS[0]}")
if [ "${#EXPERTS[@]}" -ge 2 ]; then PREFERENCES+=("${EXPERTS[0]}:3, ${EXPERTS[1]}" "${EXPERTS[-1]}"); fi

# Runs one request; writes DIR/NAME.{out,err,rc}. The client gets --timeout; it is killed (rc 137) if it
# runs 20 s past it.
request() {  # DIR NAME PROMPT PREFERENCE
    local rc=0
    (ingroup timeout --foreground -s KILL $((TIMEOUT + 20)) "$MOPE" generate --coordinator "$ENDPOINT.clients" \
        --preference "$4" --max-tokens "$MAX_TOKENS" --timeout "$TIMEOUT" "$3" \
        >"$1/$2.out" 2>"$1/$2.err" </dev/null) || rc=$?
    echo "$rc" >"$1/$2.rc"
}

# The fault-free reference answers.
for p in "${!PROMPTS[@]}"; do
    for q in "${!PREFERENCES[@]}"; do
        request "$work/ref" "$p.$q" "${PROMPTS[$p]}" "${PREFERENCES[$q]}"
        if [ "$(cat "$work/ref/$p.$q.rc")" != 0 ] || grep -q "degraded\|failovers" "$work/ref/$p.$q.err"; then
            echo "chaos: the fault-free request '${PROMPTS[$p]}' / '${PREFERENCES[$q]}' did not complete cleanly:" >&2
            cat "$work/ref/$p.$q.err" >&2
            exit 1
        fi
    done
done
log "reference: ${#PROMPTS[@]} prompts × ${#PREFERENCES[@]} preferences answered without faults"

# The load: CONCURRENCY loops, each starting requests until the end of the run.
END=$(( $(date +%s) + SECONDS_TOTAL ))
for c in $(seq 0 $((CONCURRENCY - 1))); do
    (
        n=0
        while [ "$(date +%s)" -lt "$END" ]; do
            p=$(( (c + n) % ${#PROMPTS[@]} )) q=$(( (c * 7 + n * 3) % ${#PREFERENCES[@]} ))
            name=$(printf 'c%02d-%04d' "$c" "$n")
            echo "$p $q" >"$work/req/$name.pair"
            request "$work/req" "$name" "${PROMPTS[$p]}" "${PREFERENCES[$q]}"
            n=$((n + 1))
        done
    ) &
    loaders+=($!)
done

# The faults, on a seeded schedule. A worker is faulted only while it is up; recoveries run in the background.
RANDOM=$SEED
declare -A FAULTS=([kill]=0 [stop]=0 [term]=0 [freeze]=0)
UNEXPECTED=()
recoveries=()
: >"$work/faults.log"
while [ "$(date +%s)" -lt "$END" ]; do
    sleep "$(( 2 + RANDOM % 3 )).$(( RANDOM % 10 ))"
    [ "$(date +%s)" -lt "$END" ] || break
    alive "$COORDINATOR" || break
    candidates=()
    for id in "${WORKERS[@]}"; do
        [ "$(cat "$work/state/$id.state")" = up ] || continue
        if ! alive "$(cat "$work/state/$id.pid")"; then
            # A worker that is up and not faulted must not exit by itself.
            UNEXPECTED+=("$id")
            log "worker $id exited by itself: $(tail -1 "$work/worker-$id.log")"
            echo gone >"$work/state/$id.state"
            continue
        fi
        candidates+=("$id")
    done
    [ "${#candidates[@]}" -gt 0 ] || continue
    if [ "$FREEZE_COORDINATOR" = 1 ] && [ $(( RANDOM % 4 )) = 0 ]; then
        FAULTS[freeze]=$((FAULTS[freeze] + 1))
        pause=$(( 1 + RANDOM % 3 ))
        log "SIGSTOP the coordinator (pid $COORDINATOR) for $pause s" | tee -a "$work/faults.log"
        kill -STOP "$COORDINATOR"
        sleep "$pause"
        kill -CONT "$COORDINATOR"
        continue
    fi
    victim=${candidates[$(( RANDOM % ${#candidates[@]} ))]}
    pid=$(cat "$work/state/$victim.pid")
    pause=$(( 2 + RANDOM % 4 ))
    case $(( RANDOM % 3 )) in
        0)
            FAULTS[kill]=$((FAULTS[kill] + 1))
            echo down >"$work/state/$victim.state"
            kill -KILL "$pid" 2>/dev/null || true
            log "kill -9 $victim (pid $pid); restart in $pause s" | tee -a "$work/faults.log"
            ( sleep "$pause"; start_worker "$victim" ) &
            recoveries+=($!)
            ;;
        1)
            FAULTS[stop]=$((FAULTS[stop] + 1))
            echo stopped >"$work/state/$victim.state"
            kill -STOP "$pid" 2>/dev/null || true
            log "SIGSTOP $victim (pid $pid) for $pause s" | tee -a "$work/faults.log"
            ( sleep "$pause"; kill -CONT "$pid" 2>/dev/null || true; echo up >"$work/state/$victim.state" ) &
            recoveries+=($!)
            ;;
        2)
            FAULTS[term]=$((FAULTS[term] + 1))
            echo draining >"$work/state/$victim.state"
            kill -TERM "$pid" 2>/dev/null || true
            log "SIGTERM $victim (pid $pid): drain, then restart" | tee -a "$work/faults.log"
            (
                for _ in $(seq 1 150); do alive "$pid" || break; sleep 0.1; done
                if alive "$pid"; then
                    echo "$victim" >>"$work/state/undrained"
                    kill -KILL "$pid" 2>/dev/null || true
                fi
                sleep 1
                start_worker "$victim"
            ) &
            recoveries+=($!)
            ;;
    esac
done
log "faults over; waiting for the requests in flight"
for pid in "${loaders[@]}"; do wait "$pid" || true; done
loaders=()
for pid in "${recoveries[@]}"; do wait "$pid" || true; done
COORDINATOR_ALIVE=1
alive "$COORDINATOR" || COORDINATOR_ALIVE=0

# The verdict.
total=0 completed=0 degraded=0 failovers=0 failed_over=0 errors=0 hangs=0 crashes=0 wrong=0
declare -A LOST=() ERRORS=()
problems=()
for rc_file in "$work"/req/*.rc; do
    [ -e "$rc_file" ] || continue
    name=$(basename "$rc_file" .rc)
    rc=$(cat "$rc_file")
    err=$work/req/$name.err
    read -r p q <"$work/req/$name.pair"
    what="request $name ('${PROMPTS[$p]}' / '${PREFERENCES[$q]}')"
    total=$((total + 1))
    case $rc in
        0)
            completed=$((completed + 1))
            lost=$(sed -n 's/^degraded: lost expert //p' "$err" | sort | paste -sd, -)
            moved=$(sed -n 's/^failovers: \([0-9]*\).*/\1/p' "$err")
            if [ -n "$moved" ]; then failovers=$((failovers + moved)); failed_over=$((failed_over + 1)); fi
            if [ -n "$lost" ]; then
                degraded=$((degraded + 1))
                LOST[$lost]=$(( ${LOST[$lost]:-0} + 1 ))
            elif ! cmp -s "$work/req/$name.out" "$work/ref/$p.$q.out"; then
                wrong=$((wrong + 1))
                got=$(head -c 200 "$work/req/$name.out" | tr '\n' ' ')
                expected=$(head -c 200 "$work/ref/$p.$q.out" | tr '\n' ' ')
                problems+=("WRONG TEXT $what${moved:+, $moved failover(s)}: got '$got', expected '$expected'")
            fi
            ;;
        1)
            message=$(grep '^error: ' "$err" | head -1)
            if grep -q "no answer from the coordinator" <<<"$message"; then
                hangs=$((hangs + 1))
                problems+=("HUNG $what: $message")
            else
                errors=$((errors + 1))
                key=$(sed -E 's/session [0-9]+/session N/g; s/[0-9]+(\.[0-9]+)? s\b/N s/g' <<<"${message:-no message}")
                ERRORS[$key]=$(( ${ERRORS[$key]:-0} + 1 ))
            fi
            ;;
        137)
            hangs=$((hangs + 1))
            problems+=("HUNG $what: still running $((TIMEOUT + 20)) s after it started (--timeout $TIMEOUT), killed")
            ;;
        *)
            crashes=$((crashes + 1))
            problems+=("CLIENT CRASH $what: exit status $rc: $(tail -2 "$err" | tr '\n' ' ')")
            ;;
    esac
done
[ "$COORDINATOR_ALIVE" = 1 ] || problems+=("COORDINATOR CRASH: $(tail -3 "$work/coordinator.log" | tr '\n' ' ')")
for id in "${UNEXPECTED[@]}"; do problems+=("WORKER EXIT: $id exited without an injected fault"); done
if [ -s "$work/state/undrained" ]; then
    while read -r id; do problems+=("UNDRAINED: $id still ran 15 s after SIGTERM and was killed"); done \
        <"$work/state/undrained"
fi

echo
echo "== chaos summary (seed $SEED, $SECONDS_TOTAL s, concurrency $CONCURRENCY, timeout $TIMEOUT s, $MAX_TOKENS tokens)"
echo "faults injected: ${FAULTS[kill]} kill -9, ${FAULTS[stop]} SIGSTOP/SIGCONT, ${FAULTS[term]} SIGTERM" \
    "(drain + restart), ${FAULTS[freeze]} coordinator SIGSTOP/SIGCONT"
echo "requests: $total; completed $completed ($((completed - degraded)) exact, $degraded degraded);" \
    "typed errors $errors; hung $hangs; client crashes $crashes"
echo "failovers: $failovers in $failed_over requests"
for key in "${!LOST[@]}"; do echo "  degraded, lost $key: ${LOST[$key]}"; done
for key in "${!ERRORS[@]}"; do echo "  error ×${ERRORS[$key]}: $key"; done
echo "coordinator: $([ "$COORDINATOR_ALIVE" = 1 ] && echo "alive" || echo "CRASHED")"
if [ "${#problems[@]}" -gt 0 ]; then
    echo "FAILURES: ${#problems[@]}"
    for problem in "${problems[@]}"; do echo "  $problem"; done
    KEEP=1
    exit 1
fi
echo "PASSED: no hang, no crash, every complete answer right"
