#!/usr/bin/env bash
# Brings up a one-host Slurm cluster on this machine (munged, slurmctld and slurmd with a generated slurm.conf
# in a temporary folder, no cgroups), submits Deploy/slurm/mope.sbatch with the tiny test models (or the real
# model), waits for `mope status`, checks that the workers run as job steps, answers one request with
# `mope generate` (client key) and one through the HTTP front (/health, /v1/completions), cancels the job
# with scancel, checks that no process of the job is left, and stops the daemons it started.
#
#   Deploy/slurm/test-local.sh [--real-model] [--keep] [--timeout SECONDS]
#
#   --real-model   the experts of Configs/psoups-local.json on models/SmolLM2-135M-Instruct.Q4_1.gguf
#                  (default: the three tiny test models, concise with 2 replicas)
#   --keep         keep the temporary folder (logs, slurm.conf, keys); its path is printed
#   --timeout S    the longest wait for the cluster to be ready (default 150)
#
# Needs root (slurmd runs jobs as their user), Debian's slurm-wlm and munge, curl and python3; a missing tool
# fails the run (exit 1) naming the package. MOPE_BINARY (or MOPE) names the mope binary (default
# .build/debug/mope). Prints PASSED or FAILED; exit 0 only when every check passed. Usage errors exit 2.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
REAL=0 KEEP=0 READY_TIMEOUT=150
while [ $# -gt 0 ]; do
    case $1 in
        -h|--help) usage; exit 0 ;;
        --real-model) REAL=1; shift ;;
        --keep) KEEP=1; shift ;;
        --timeout) [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+$ ]] || { echo "test-local: --timeout wants seconds" >&2; exit 2; }
                   READY_TIMEOUT=$2; shift 2 ;;
        *) echo "test-local: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

started=$(date +%s)
say() { echo "[slurm-test +$(( $(date +%s) - started ))s] $*"; }
die() { echo "FAILED: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (slurmd starts the job's processes as the submitting user)"
missing=()
for tool in munged:munge munge:munge slurmctld:slurm-wlm slurmd:slurm-wlm sbatch:slurm-wlm squeue:slurm-wlm \
            scancel:slurm-wlm scontrol:slurm-wlm srun:slurm-wlm curl:curl python3:python3; do
    command -v "${tool%%:*}" >/dev/null || PATH=$PATH:/usr/sbin:/sbin command -v "${tool%%:*}" >/dev/null \
        || missing+=("${tool%%:*} (apt-get install ${tool##*:})")
done
[ ${#missing[@]} = 0 ] || die "missing tools: ${missing[*]}"
PATH=$PATH:/usr/sbin:/sbin

MOPE=${MOPE_BINARY:-${MOPE:-$ROOT/.build/debug/mope}}
[ -x "$MOPE" ] || die "mope binary $MOPE not found (swift build, or set MOPE_BINARY)"
MODEL=$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ "$REAL" = 1 ] && [ ! -f "$MODEL" ]; then die "--real-model: $MODEL is missing (Scripts/setup.sh fetches it)"; fi

# The folder must be searchable by all: munged refuses a socket in a folder others cannot enter.
work=$(mktemp -d "${TMPDIR:-/tmp}/mope-slurm.XXXXXX")
chmod 755 "$work"
mkdir -p "$work/run" "$work/state" "$work/spool" "$work/log"
mkdir -m 700 "$work/munge"
daemons=()   # pid of every daemon started here
job=

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
    if [ -n "$job" ] && squeue -h -j "$job" 2>/dev/null | grep -q .; then scancel "$job" 2>/dev/null; sleep 2; fi
    for pid in "${daemons[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for _ in $(seq 1 50); do
        alive=0
        for pid in "${daemons[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    # What is still there (a daemon that did not stop, a process of the job) was started by this run.
    for pid in $(ours); do kill -KILL "$pid" 2>/dev/null; done
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

# Free tcp ports: slurmctld, slurmd, the coordinator's two (consecutive) and the HTTP front.
read -r CTLD_PORT SLURMD_PORT COORD_PORT HTTP_PORT < <(python3 - <<'PY'
import socket
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port)); return True
        except OSError:
            return False
picked, port = [], 20000 + (__import__("os").getpid() % 2000) * 10
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

# munge: a fresh key, its own socket.
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 2>/dev/null
chmod 600 "$work/munge/munge.key"
MUNGE_SOCKET=$work/run/munge.socket
munged -F --key-file="$work/munge/munge.key" --socket="$MUNGE_SOCKET" --pid-file="$work/run/munged.pid" \
    --log-file="$work/log/munged.log" --seed-file="$work/munge/munged.seed" >"$work/log/munged.out" 2>&1 &
daemons+=("$!")
for _ in $(seq 1 50); do [ -S "$MUNGE_SOCKET" ] && break; sleep 0.1; done
munge -S "$MUNGE_SOCKET" -n </dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1 || die "munged did not start"

HOST=$(hostname -s)
NODE=mope-node1
CPUS=$(nproc)
export SLURM_CONF=$work/slurm.conf
: >"$work/plugstack.conf"
cat >"$SLURM_CONF" <<EOF
ClusterName=mopetest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/run/slurmctld.pid
SlurmdPidFile=$work/run/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
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
KillWait=15
MailProg=/bin/true
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$HOST CPUs=$CPUS State=UNKNOWN
PartitionName=mope Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -D -i -f "$SLURM_CONF" >"$work/log/slurmctld.out" 2>&1 &
daemons+=("$!")
slurmd -D -N "$NODE" -f "$SLURM_CONF" >"$work/log/slurmd.out" 2>&1 &
daemons+=("$!")
end=$(( $(date +%s) + 30 ))
until [ "$(sinfo -h -n "$NODE" -o %t 2>/dev/null)" = idle ]; do
    [ "$(date +%s)" -lt "$end" ] || die "the Slurm node did not come up within 30 s ($(sinfo -h 2>&1 | head -1))"
    sleep 0.5
done
say "slurm up: slurmctld :$CTLD_PORT, slurmd $NODE :$SLURMD_PORT, munged $MUNGE_SOCKET"

"$MOPE" keygen --cluster "$work/keys" >/dev/null || die "mope keygen --cluster failed"
if [ "$REAL" = 1 ]; then
    python3 - "$work/cluster.json" "$MODEL" <<'PY'
import json, os, sys
config = json.load(open("Configs/psoups-local.json"))
for expert in config["experts"]:
    expert["model"] = sys.argv[2]
    if "bias" in expert:
        expert["bias"] = os.path.abspath(os.path.join("Configs", expert["bias"]))
if "pcm" in config:
    config["pcm"] = os.path.abspath(os.path.join("Configs", config["pcm"]))
config.update(heartbeatIntervalMs=2000, stepDeadlineMs=20000, openDeadlineMs=60000, maxNewTokens=8)
json.dump(config, open(sys.argv[1], "w"), indent=2)
PY
else
    python3 - "$work/cluster.json" <<'PY'
import json, os, sys
config = json.load(open("Configs/tiny-test.json"))
config.update(heartbeatIntervalMs=1000, stepDeadlineMs=20000, openDeadlineMs=60000, maxNewTokens=8)
for expert in config["experts"]:
    expert["model"] = os.path.abspath(expert["model"])
    if expert["name"] == "concise":
        expert["replicas"] = 2
json.dump(config, open(sys.argv[1], "w"), indent=2)
PY
fi
WORKERS=$(python3 -c 'import json,sys; print(sum(e.get("replicas", 1) for e in json.load(open(sys.argv[1]))["experts"]))' \
    "$work/cluster.json")

job=$(sbatch --parsable -N 1 --chdir="$work" --output="$work/job.out" "$ROOT/Deploy/slurm/mope.sbatch" \
    --config "$work/cluster.json" --keys "$work/keys" --mope "$MOPE" --port "$COORD_PORT" \
    --http "127.0.0.1:$HTTP_PORT" --threads 1 --run-dir "$work/job" --ready-timeout "$READY_TIMEOUT" \
    --stop-grace 5) || die "sbatch failed"
job=${job%%;*}
say "submitted job $job ($WORKERS workers)"
end=$(( $(date +%s) + 30 ))
until [ "$(squeue -h -j "$job" -o %T 2>/dev/null)" = RUNNING ]; do
    [ "$(date +%s)" -lt "$end" ] || die "job $job is not running after 30 s: $(squeue -h -j "$job" -o '%T %r' 2>&1)"
    sleep 0.5
done

CLIENT=(--curve-server-key-file "$work/keys/coordinator.pub" --curve-secret-key-file "$work/keys/client.key")
CLIENTS=tcp://127.0.0.1:$((COORD_PORT + 1))
"$MOPE" status --coordinator "$CLIENTS" "${CLIENT[@]}" --wait "$READY_TIMEOUT" >"$work/status.out" 2>&1 \
    || die "mope status: not ready within $READY_TIMEOUT s: $(tail -3 "$work/status.out")"
say "mope status: ready"
cat "$work/status.out"

failures=0
check() {  # DESCRIPTION CONDITION...
    local what=$1; shift
    if "$@"; then echo "  ok: $what"; else echo "  FAILED: $what"; failures=$((failures + 1)); fi
}

# The workers are job steps (one per replica) named mope-ID, on the node the plan gives.
squeue -h -s -j "$job" -o "%i %j %N" >"$work/steps"
steps=$(awk '$2 ~ /^mope-/ && $3 == "'"$NODE"'"' "$work/steps" | wc -l)
check "$WORKERS worker job steps running on $NODE (squeue -s: $(awk '{print $2}' "$work/steps" | paste -sd' ' -))" \
    [ "$steps" = "$WORKERS" ]
# The job's own readiness wait (its mope status) may answer a moment after ours.
for _ in $(seq 1 50); do grep -q "^cluster ready" "$work/job.out" && break; sleep 0.2; done
check "the job's output says cluster ready" grep -q "^cluster ready" "$work/job.out"

"$MOPE" generate --coordinator "$CLIENTS" "${CLIENT[@]}" --preference "concise, friendly" --max-tokens 8 \
    --timeout 120 "Tell me about cats." >"$work/generate.out" 2>"$work/generate.err"
code=$?
check "mope generate answered (exit $code): $(head -c 60 "$work/generate.out" | tr '\n' ' ')" \
    [ "$code" = 0 -a -s "$work/generate.out" ]
check "the answer lost no expert" bash -c "! grep -q degraded '$work/generate.err'"

health=$(curl -s -o "$work/health.out" -w '%{http_code}' --max-time 10 "http://127.0.0.1:$HTTP_PORT/health")
check "GET /health is 200 (got $health)" [ "$health" = 200 ]
completion=$(curl -s -o "$work/completion.out" -w '%{http_code}' --max-time 120 \
    -H 'Content-Type: application/json' -d '{"prompt": "Once upon a time", "max_tokens": 8}' \
    "http://127.0.0.1:$HTTP_PORT/v1/completions")
text=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["text"])' \
    "$work/completion.out" 2>/dev/null)
check "POST /v1/completions is 200 with a text (got $completion: $(head -c 60 <<<"$text" | tr '\n' ' '))" \
    [ "$completion" = 200 -a -n "$text" ]

say "scancel $job"
scancel "$job"
end=$(( $(date +%s) + 60 ))
while squeue -h -j "$job" 2>/dev/null | grep -q .; do
    [ "$(date +%s)" -lt "$end" ] || break
    sleep 0.5
done
check "job $job left the queue within 60 s of scancel" bash -c "! squeue -h -j $job 2>/dev/null | grep -q ."
check "the job script trapped SIGTERM and stopped its processes" grep -q "^stopped" "$work/job.out"
left=()
for pid in $(ours); do
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$MOPE")" ] && left+=("$pid")
done
check "no mope process of the job is left (${#left[@]}: ${left[*]})" [ ${#left[@]} = 0 ]

if [ "$failures" = 0 ]; then echo "PASSED (slurm job $job, $WORKERS workers, $(( $(date +%s) - started )) s)"; exit 0; fi
echo "FAILED: $failures checks"
exit 1
