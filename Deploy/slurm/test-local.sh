#!/usr/bin/env bash
# Brings up a Slurm cluster on this machine (munged, slurmctld and slurmd with a generated slurm.conf in a
# temporary folder, no cgroups), submits Deploy/slurm/mope.sbatch with the tiny test models (or the real
# model), waits for `mope status`, checks that every worker runs as a job step on the node the placement
# gives it, answers one request with `mope generate` (client key) and one through the HTTP front (/health,
# /v1/completions), cancels the job with scancel, checks that no process of the job is left, and stops the
# daemons it started. With one node it then submits a job whose cluster cannot get ready (a model file is
# missing): it must end by itself with exit 1 after --ready-timeout, leaving no process.
#
#   Deploy/slurm/test-local.sh [--nodes N] [--real-model] [--keep] [--timeout SECONDS]
#
#   --nodes N      1 (default): one node, everything on this machine's loopback. 2 to 4: every node is a
#                  network namespace of its own (10.215.0.11, .12, …) with its own slurmd, slurmctld and the
#                  test's client in another one (10.215.0.1), joined by a bridge; every expert gets 2
#                  replicas (replica r on node r mod N), and after the first answer the last node is cut off
#                  the network: the next answer must be the same with no expert lost, and the job must keep
#                  running once Slurm has marked the node down (the job script's --no-kill)
#   --real-model   the experts of Configs/psoups-local.json on models/SmolLM2-135M-Instruct.Q4_1.gguf
#                  (default: the three tiny test models; with one node concise gets 2 replicas)
#   --keep         keep the temporary folder (logs, slurm.conf, keys); its path is printed
#   --timeout S    the longest wait for the cluster to be ready (default 150)
#
# Needs root (slurmd runs jobs as their user), Debian's slurm-wlm and munge, curl and python3 (and for
# --nodes 2+ iproute2 and nsenter); a missing tool fails the run (exit 1) naming the package. MOPE_BINARY (or
# MOPE) names the mope binary (default .build/debug/mope). Every wait is bounded. Prints PASSED or FAILED;
# exit 0 only when every check passed. Usage errors exit 2.
set -uo pipefail
cd "$(dirname "$0")/../.."
. Scripts/lib/netns.sh
ROOT=$PWD

usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; }
REAL=0 KEEP=0 READY_TIMEOUT=150 NODES=1
while [ $# -gt 0 ]; do
    case $1 in
        -h|--help) usage; exit 0 ;;
        --real-model) REAL=1; shift ;;
        --keep) KEEP=1; shift ;;
        --timeout) [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+$ ]] || { echo "test-local: --timeout wants seconds" >&2; exit 2; }
                   READY_TIMEOUT=$2; shift 2 ;;
        --nodes) [ $# -ge 2 ] && [[ $2 =~ ^[1-4]$ ]] || { echo "test-local: --nodes wants 1 to 4" >&2; exit 2; }
                 NODES=$2; shift 2 ;;
        *) echo "test-local: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

started=$(date +%s)
say() { echo "[slurm-test +$(( $(date +%s) - started ))s] $*"; }
die() { echo "FAILED: $*"; exit 1; }

PATH=$PATH:/usr/sbin:/sbin
[ "$(id -u)" = 0 ] || die "needs root (slurmd starts the job's processes as the submitting user)"
missing=()
tools=(munged:munge munge:munge unmunge:munge slurmctld:slurm-wlm slurmd:slurm-wlm sbatch:slurm-wlm
       squeue:slurm-wlm sinfo:slurm-wlm scancel:slurm-wlm scontrol:slurm-wlm srun:slurm-wlm curl:curl python3:python3)
[ "$NODES" -gt 1 ] && tools+=(ip:iproute2 nsenter:util-linux)
for tool in "${tools[@]}"; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool%%:*} (apt-get install ${tool##*:})")
done
[ ${#missing[@]} = 0 ] || die "missing tools: ${missing[*]}"
if [ "$NODES" -gt 1 ]; then ip netns list >/dev/null 2>&1 || die "ip netns does not work here"; fi

MOPE=${MOPE_BINARY:-${MOPE:-$ROOT/.build/debug/mope}}
[ -x "$MOPE" ] || die "mope binary $MOPE not found (swift build, or set MOPE_BINARY)"
MOPE=$(readlink -f "$MOPE")
MODEL=$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ "$REAL" = 1 ] && [ ! -f "$MODEL" ]; then die "--real-model: $MODEL is missing (Scripts/setup.sh fetches it)"; fi

# The folder must be searchable by all: munged refuses a socket in a folder others cannot enter.
work=$(mktemp -d "${TMPDIR:-/tmp}/mope-slurm.XXXXXX")
chmod 755 "$work"
mkdir -p "$work/run" "$work/state" "$work/log"
mkdir -m 700 "$work/munge"
daemons=()     # pid of every daemon started here
namespaces=()  # every network namespace made here
job=

# The machines: with one node, this machine's loopback; with more, a namespace per node and one for the
# controller and the client, entered with nsenter (which keeps this mount namespace: slurmd needs /sys/fs/cgroup
# as it is, which `ip netns exec` would hide).
tag=$$
NODE_NAMES=() NODE_ADDRS=() NODE_NS=()
for ((i = 1; i <= NODES; i++)); do
    NODE_NAMES+=("mope-node$i")
    if [ "$NODES" = 1 ]; then NODE_ADDRS+=(127.0.0.1); NODE_NS+=(""); else NODE_ADDRS+=("10.215.0.1$i"); NODE_NS+=("mope-sl$i-$tag"); fi
done
if [ "$NODES" = 1 ]; then CTL_ADDR=127.0.0.1 CTL_NS=; else CTL_ADDR=10.215.0.1 CTL_NS=mope-slctl-$tag; fi
in_ns() {  # NAMESPACE COMMAND...: COMMAND in that network namespace ("" for this one)
    local ns=$1; shift
    if [ -n "$ns" ]; then nsenter --net="/run/netns/$ns" "$@"; else "$@"; fi
}
ctl() { in_ns "$CTL_NS" "$@"; }

# Every process started here, found by this run's folder in its command line (the daemons, the job's
# coordinator, front and workers all name it): none may be left.
ours() {
    local dir entry
    for dir in /proc/[0-9]*; do
        entry=${dir#/proc/}
        [ "$entry" = $$ ] && continue
        { tr '\0' ' ' <"$dir/cmdline"; } 2>/dev/null | grep -qF "$work/" && echo "$entry"
    done
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for ns in "${NODE_NS[@]}"; do [ -n "$ns" ] && ip -n "$ns" link set eth0 up 2>/dev/null; done
    if [ -n "$job" ] && ctl squeue -h -j "$job" 2>/dev/null | grep -q .; then ctl scancel "$job" 2>/dev/null; sleep 2; fi
    for pid in "${daemons[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for _ in $(seq 1 50); do
        alive=0
        for pid in "${daemons[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    # What is still there (a daemon that did not stop, a process of the job) was started by this run.
    for pid in $(ours); do kill -KILL "$pid" 2>/dev/null; done
    for ns in "${namespaces[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    wait 2>/dev/null
    if [ "$status" != 0 ]; then
        for log in "$work"/log/*.log "$work"/job.out "$work"/job/*.log; do
            [ -f "$log" ] && { echo "--- $log"; tail -15 "$log"; }
        done
    fi
    if [ "$KEEP" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$NODES" -gt 1 ]; then
    hosts=("$CTL_NS=${CTL_ADDR##*.}")
    for i in "${!NODE_NS[@]}"; do hosts+=("${NODE_NS[$i]}=${NODE_ADDRS[$i]##*.}"); done
    netns_host_network "mope-slbr-$tag" "${CTL_ADDR%.*}" "${hosts[@]}"
    namespaces+=("${NETNS_MADE[@]}")
    for ns in "$CTL_NS" "${NODE_NS[@]}"; do
        ip -n "$ns" link show eth0 >/dev/null 2>&1 || die "cannot make the network (namespace $ns)"
    done
    say "network: controller and client $CTL_ADDR, nodes ${NODE_ADDRS[*]} (namespaces, bridged)"
fi

# Free tcp ports (on this machine's loopback, and so free in fresh namespaces too): slurmctld, slurmd, the
# coordinator's two (consecutive) and the HTTP front.
read -r CTLD_PORT SLURMD_PORT COORD_PORT HTTP_PORT < <(python3 - <<'PY'
import os, socket
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port)); return True
        except OSError:
            return False
picked, port = [], 20000 + (os.getpid() % 2000) * 10
while len(picked) < 4:
    port += 1
    if len(picked) == 2:
        if free(port) and free(port + 1):
            picked.append(port); port += 1
    elif free(port):
        picked.append(port)
print(*picked)
PY
)

# munge: a fresh key, its own socket (a unix socket, reached from every namespace alike).
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 2>/dev/null
chmod 600 "$work/munge/munge.key"
MUNGE_SOCKET=$work/run/munge.socket
munged -F --key-file="$work/munge/munge.key" --socket="$MUNGE_SOCKET" --pid-file="$work/run/munged.pid" \
    --log-file="$work/log/munged.log" --seed-file="$work/munge/munged.seed" >"$work/log/munged.out" 2>&1 &
daemons+=("$!")
for _ in $(seq 1 50); do [ -S "$MUNGE_SOCKET" ] && break; sleep 0.1; done
munge -S "$MUNGE_SOCKET" -n </dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1 || die "munged did not start"

HOST=$(hostname -s)
CPUS=$(nproc)
export SLURM_CONF=$work/slurm.conf
: >"$work/plugstack.conf"
cat >"$SLURM_CONF" <<EOF
ClusterName=mopetest
SlurmctldHost=$HOST($CTL_ADDR)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool-%n
SlurmctldPidFile=$work/run/slurmctld.pid
SlurmdPidFile=$work/run/slurmd-%n.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd-%n.log
PlugStackConfig=$work/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmdTimeout=10
KillWait=15
MailProg=/bin/true
EOF
for i in "${!NODE_NAMES[@]}"; do
    echo "NodeName=${NODE_NAMES[$i]} NodeAddr=${NODE_ADDRS[$i]} NodeHostname=$HOST CPUs=$CPUS State=UNKNOWN" >>"$SLURM_CONF"
    mkdir -p "$work/spool-${NODE_NAMES[$i]}"
done
echo "PartitionName=mope Nodes=$(IFS=,; echo "${NODE_NAMES[*]}") Default=YES MaxTime=INFINITE State=UP" >>"$SLURM_CONF"
ctl slurmctld -D -i -f "$SLURM_CONF" >"$work/log/slurmctld.out" 2>&1 &
daemons+=("$!")
for i in "${!NODE_NAMES[@]}"; do
    in_ns "${NODE_NS[$i]}" slurmd -D -N "${NODE_NAMES[$i]}" -f "$SLURM_CONF" >"$work/log/slurmd-$i.out" 2>&1 &
    daemons+=("$!")
done
end=$(( $(date +%s) + 30 ))
until [ "$(ctl sinfo -h -o '%t %D' 2>/dev/null)" = "idle $NODES" ]; do
    [ "$(date +%s)" -lt "$end" ] || die "the Slurm nodes did not come up within 30 s ($(ctl sinfo -h 2>&1 | head -2))"
    sleep 0.5
done
say "slurm up: slurmctld $CTL_ADDR:$CTLD_PORT, $NODES slurmd (${NODE_NAMES[*]}) :$SLURMD_PORT, munged $MUNGE_SOCKET"

"$MOPE" keygen --cluster "$work/keys" >/dev/null || die "mope keygen --cluster failed"
if [ "$REAL" = 1 ]; then
    python3 - "$work/cluster.json" "$MODEL" "$NODES" <<'PY'
import json, os, sys
def resolve(path):
    # As mope resolves it (from the working directory, then from the config's folder), made absolute.
    for base in (".", "Configs"):
        if os.path.exists(os.path.join(base, path)):
            return os.path.abspath(os.path.join(base, path))
    return path
config = json.load(open("Configs/psoups-local.json"))
for key in ("pcm", "tokenizer"):
    if isinstance(config.get(key), str):
        config[key] = resolve(config[key])
for expert in config["experts"]:
    expert["model"] = sys.argv[2]
    for key in ("bias", "lora"):
        if isinstance(expert.get(key), str):
            expert[key] = resolve(expert[key])
    if int(sys.argv[3]) > 1:
        expert["replicas"] = 2
config.update(heartbeatIntervalMs=2000, stepDeadlineMs=20000, openDeadlineMs=60000, maxNewTokens=8)
json.dump(config, open(sys.argv[1], "w"), indent=2)
PY
else
    python3 - "$work/cluster.json" "$NODES" <<'PY'
import json, os, sys
config = json.load(open("Configs/tiny-test.json"))
config.update(heartbeatIntervalMs=1000, stepDeadlineMs=20000, openDeadlineMs=60000, maxNewTokens=8)
# Every path made absolute: the job runs in another folder.
for holder, keys in [(config, ("pcm", "tokenizer"))] + [(e, ("model", "bias", "lora")) for e in config["experts"]]:
    for key in keys:
        if isinstance(holder.get(key), str) and os.path.exists(holder[key]):
            holder[key] = os.path.abspath(holder[key])
for expert in config["experts"]:
    if expert["name"] == "concise" or int(sys.argv[2]) > 1:
        expert["replicas"] = 2
json.dump(config, open(sys.argv[1], "w"), indent=2)
PY
fi
# Where each worker must run: "expert replica node id", from the job script's own placement.
bash "$ROOT/Deploy/slurm/mope.sbatch" --plan --nodes "${NODE_NAMES[*]}" --config "$work/cluster.json" >"$work/plan" \
    || die "mope.sbatch --plan failed"
WORKERS=$(wc -l <"$work/plan")
HTTP_LISTEN=127.0.0.1:$HTTP_PORT
[ "$NODES" -gt 1 ] && HTTP_LISTEN=0.0.0.0:$HTTP_PORT   # asked from the client's namespace

job=$(ctl sbatch --parsable -N "$NODES" --chdir="$work" --output="$work/job.out" "$ROOT/Deploy/slurm/mope.sbatch" \
    --config "$work/cluster.json" --keys "$work/keys" --mope "$MOPE" --port "$COORD_PORT" \
    --http "$HTTP_LISTEN" --threads 1 --run-dir "$work/job" --ready-timeout "$READY_TIMEOUT" \
    --stop-grace 5) || die "sbatch failed"
job=${job%%;*}
say "submitted job $job ($WORKERS workers on $NODES nodes)"
end=$(( $(date +%s) + 30 ))
until [ "$(ctl squeue -h -j "$job" -o %T 2>/dev/null)" = RUNNING ]; do
    [ "$(date +%s)" -lt "$end" ] || die "job $job is not running after 30 s: $(ctl squeue -h -j "$job" -o '%T %r' 2>&1)"
    sleep 0.5
done

FIRST=${NODE_ADDRS[0]}
CLIENT=(--curve-server-key-file "$work/keys/coordinator.pub" --curve-secret-key-file "$work/keys/client.key")
CLIENTS=tcp://$FIRST:$((COORD_PORT + 1))
ctl "$MOPE" status --coordinator "$CLIENTS" "${CLIENT[@]}" --wait "$READY_TIMEOUT" >"$work/status.out" 2>&1 \
    || die "mope status: not ready within $READY_TIMEOUT s: $(tail -3 "$work/status.out")"
say "mope status: ready"
cat "$work/status.out"

failures=0
check() {  # DESCRIPTION COMMAND...
    local what=$1; shift
    if "$@"; then echo "  ok: $what"; else echo "  FAILED: $what"; failures=$((failures + 1)); fi
}

# The workers are job steps (one per replica) named mope-ID, each on the node the placement gives it.
ctl squeue -h -s -j "$job" -o "%j %N" | awk '$1 ~ /^mope-/' | sort >"$work/steps"
awk '{ print "mope-" $4, $3 }' "$work/plan" | sort >"$work/expected-steps"
check "$WORKERS worker job steps, each on its node ($(tr '\n' ',' <"$work/steps" | sed 's/,$//'))" \
    cmp -s "$work/steps" "$work/expected-steps"
if [ "$NODES" -gt 1 ]; then
    # And the processes really run in each node's namespace.
    for i in "${!NODE_NS[@]}"; do
        want=$(awk -v n="${NODE_NAMES[$i]}" '$3 == n' "$work/plan" | wc -l)
        have=0
        for pid in $(ip netns pids "${NODE_NS[$i]}"); do
            [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$MOPE" ] \
                && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q ' worker ' && have=$((have + 1))
        done
        check "${NODE_NAMES[$i]} (${NODE_ADDRS[$i]}) runs $want worker processes (found $have)" [ "$have" = "$want" ]
    done
fi
# The job's own readiness wait (its mope status) may answer a moment after ours.
for _ in $(seq 1 50); do grep -q "^cluster ready" "$work/job.out" && break; sleep 0.2; done
check "the job's output says cluster ready" grep -q "^cluster ready" "$work/job.out"

PREFERENCE="concise, friendly, knowledgeable"
[ "$REAL" = 1 ] && PREFERENCE="concise, friendly"
ask() {  # NAME: one greedy answer; NAME.out, NAME.err; returns the exit status
    ctl "$MOPE" generate --coordinator "$CLIENTS" "${CLIENT[@]}" --preference "$PREFERENCE" --max-tokens 8 \
        --temperature 0 --timeout 120 "Tell me about cats." >"$work/$1.out" 2>"$work/$1.err"
}
ask first
code=$?
check "mope generate answered (exit $code): $(head -c 60 "$work/first.out" | tr '\n' ' ')" \
    [ "$code" = 0 -a -s "$work/first.out" ]
check "the answer lost no expert" bash -c "! grep -q degraded '$work/first.err'"

front=http://$FIRST:$HTTP_PORT
health=$(ctl curl -s -o "$work/health.out" -w '%{http_code}' --max-time 10 "$front/health")
check "GET /health is 200 (got $health)" [ "$health" = 200 ]
completion=$(ctl curl -s -o "$work/completion.out" -w '%{http_code}' --max-time 120 \
    -H 'Content-Type: application/json' -d '{"prompt": "Once upon a time", "max_tokens": 8}' \
    "$front/v1/completions")
text=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["text"])' \
    "$work/completion.out" 2>/dev/null)
check "POST /v1/completions is 200 with a text (got $completion: $(head -c 60 <<<"$text" | tr '\n' ' '))" \
    [ "$completion" = 200 -a -n "$text" ]

if [ "$NODES" -gt 1 ]; then
    # The loss of a node: the last one is cut off the network. Its workers go silent, the others carry on.
    lost=$((NODES - 1))
    LOST_NAME=${NODE_NAMES[$lost]} LOST_NS=${NODE_NS[$lost]}
    awk -v n="$LOST_NAME" '$3 != n { print $4 }' "$work/plan" | sort >"$work/survivors"
    say "cutting $LOST_NAME (${NODE_ADDRS[$lost]}) off the network"
    ip -n "$LOST_NS" link set eth0 down
    end=$(( $(date +%s) + 30 ))
    while :; do
        ctl "$MOPE" status --coordinator "$CLIENTS" "${CLIENT[@]}" --json --timeout 2 2>/dev/null | python3 -c '
import json, sys
status = json.load(sys.stdin)
print("\n".join(sorted(w["id"] for e in status["experts"] for w in e["workers"] if not w["draining"])))' \
            >"$work/live" 2>/dev/null
        cmp -s "$work/live" "$work/survivors" && break
        [ "$(date +%s)" -lt "$end" ] || break
        sleep 0.5
    done
    check "the coordinator dropped $LOST_NAME's workers and kept the others ($(paste -sd' ' "$work/live"))" \
        cmp -s "$work/live" "$work/survivors"
    ask after
    code=$?
    check "with $LOST_NAME gone, mope generate answered (exit $code)" [ "$code" = 0 ]
    check "… with no expert lost" bash -c "! grep -q degraded '$work/after.err'"
    check "… and the same text as before" cmp -s "$work/first.out" "$work/after.out"
    # Slurm takes a node that stops answering for down after SlurmdTimeout and a few pings; the same state,
    # set at once, is what the job must outlive (without --no-kill Slurm ends a job that loses a node).
    ctl scontrol update NodeName="$LOST_NAME" State=DOWN Reason="cut off by the test"
    sleep 3
    state=$(ctl scontrol show node "$LOST_NAME" -o 2>/dev/null | grep -o 'State=[^ ]*')
    check "Slurm has $LOST_NAME down ($state)" grep -q '^State=DOWN' <<<"$state"
    jobstate=$(ctl squeue -h -j "$job" -o %T 2>/dev/null)
    check "the job is still running without it (state $jobstate)" [ "$jobstate" = RUNNING ]
    ask last
    check "and still answers" [ $? = 0 ]
    ip -n "$LOST_NS" link set eth0 up
fi

say "scancel $job"
ctl scancel "$job"
job_gone() { ! ctl squeue -h -j "$job" 2>/dev/null | grep -q .; }
end=$(( $(date +%s) + 60 ))
until job_gone; do
    [ "$(date +%s)" -lt "$end" ] || break
    sleep 0.5
done
check "job $job left the queue within 60 s of scancel" job_gone
check "the job script trapped SIGTERM and stopped its processes" grep -q "^stopped" "$work/job.out"
# Processes on a node that was cut off end when its slurmd hears of the cancel: wait for them, bounded.
end=$(( $(date +%s) + 60 ))
while :; do
    left=()
    for pid in $(ours); do [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$MOPE" ] && left+=("$pid"); done
    [ ${#left[@]} = 0 ] || [ "$(date +%s)" -ge "$end" ] && break
    sleep 0.5
done
check "no mope process of the job is left (${#left[@]}: ${left[*]})" [ ${#left[@]} = 0 ]

if [ "$NODES" = 1 ]; then
    # A job whose cluster cannot get ready (an expert's model file is missing) must end by itself, exit 1,
    # after --ready-timeout, with every process stopped.
    python3 - "$work/cluster.json" "$work/broken.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config["experts"][-1]["model"] = "/nonexistent/model.gguf"
json.dump(config, open(sys.argv[2], "w"), indent=2)
PY
    broken=$(ctl sbatch --parsable -N 1 --chdir="$work" --output="$work/broken.out" "$ROOT/Deploy/slurm/mope.sbatch" \
        --config "$work/broken.json" --keys "$work/keys" --mope "$MOPE" --port "$COORD_PORT" --http none \
        --threads 1 --run-dir "$work/broken" --ready-timeout 10 --stop-grace 3)
    broken=${broken%%;*}
    main_job=$job job=$broken
    say "submitted job $broken with a missing model file (--ready-timeout 10)"
    end=$(( $(date +%s) + 60 ))
    until job_gone; do
        [ "$(date +%s)" -lt "$end" ] || break
        sleep 0.5
    done
    check "job $broken ended by itself within 60 s" job_gone
    exit_code=$(ctl scontrol show job "$broken" -o 2>/dev/null | grep -o ' ExitCode=[0-9:]*' | cut -d= -f2)
    check "… with exit code 1 (ExitCode=$exit_code)" [ "$exit_code" = 1:0 ]
    check "… saying the cluster was not ready" grep -q "was not ready within 10 s" "$work/broken.out"
    check "… and having stopped its processes" grep -q "^stopped" "$work/broken.out"
    left=()
    for pid in $(ours); do [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$MOPE" ] && left+=("$pid"); done
    check "no mope process of that job is left (${#left[@]}: ${left[*]})" [ ${#left[@]} = 0 ]
fi

if [ "$failures" = 0 ]; then
    echo "PASSED (slurm job ${main_job:-$job}, $WORKERS workers on $NODES nodes, $(( $(date +%s) - started )) s)"; exit 0
fi
echo "FAILED: $failures checks"
exit 1
