# Shared by the cluster scripts (source it from the repository root): configs, readiness and clean shutdown.

# tiny_cluster_config OUT ENDPOINT HEARTBEAT_MS STEP_DEADLINE_MS OPEN_DEADLINE_MS MAX_TOKENS
# Writes a cluster config of the three tiny test experts (Configs/tiny-test.json, model paths made absolute)
# with the given endpoint, heartbeat, deadlines and token limit.
tiny_cluster_config() {
    python3 - "$@" <<'PY'
import json, os, sys
out, endpoint, heartbeat, step, opening, max_tokens = sys.argv[1:7]
config = json.load(open("Configs/tiny-test.json"))
config.update(coordinator=endpoint, heartbeatIntervalMs=int(heartbeat), stepDeadlineMs=int(step),
              openDeadlineMs=int(opening), maxNewTokens=int(max_tokens))
for expert in config["experts"]:
    expert["model"] = os.path.abspath(expert["model"])
json.dump(config, open(out, "w"), indent=2)
PY
}

# stop_launcher PID TENTHS
# Asks a `mope cluster` launcher to stop (SIGTERM: it drains its children), waits up to TENTHS tenths of a
# second, then kills its whole process group (the launcher leads one) and reaps it.
stop_launcher() {
    local pid=$1 tenths=$2
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 "$tenths"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# with_launcher_cleanup
# For a script that starts one `mope cluster` launcher: makes a temporary folder $work and an empty $cluster
# (set it to the launcher's pid), and on exit stops the launcher (stop_launcher, 10 s) and removes $work.
with_launcher_cleanup() {
    work=$(mktemp -d)
    cluster=""
    trap '[ -z "$cluster" ] || stop_launcher "$cluster" 100; rm -rf "$work"' EXIT
    trap 'exit 130' INT TERM
}

# wait_ready MOPE ENDPOINT SECONDS [PID]
# (In these helpers MOPE may be several words, e.g. a function that runs mope in a network namespace.)
# Waits until the coordinator at ENDPOINT says, in its status answer (`mope status`), that every expert has its
# replicas live. Returns 1 when SECONDS pass first or when process PID (a launcher, the coordinator) exits.
wait_ready() {
    local mope=$1 endpoint=$2 seconds=$3 pid=${4:-}
    local end=$(( $(date +%s) + seconds ))
    while :; do
        $mope status --coordinator "$endpoint" --wait 2 --timeout 1 >/dev/null 2>&1 && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        [ "$(date +%s)" -lt "$end" ] || return 1
    done
}

# registrations MOPE ENDPOINT ID
# Prints how many times worker ID has registered with the coordinator at ENDPOINT (0 when it is not registered
# or the coordinator does not answer), from its status answer.
registrations() {
    $1 status --coordinator "$2" --json --timeout 2 2>/dev/null | python3 -c '
import json, sys
try:
    status = json.load(sys.stdin)
except ValueError:
    status = {"experts": []}
print(max([w["registrations"] for e in status["experts"] for w in e["workers"] if w["id"] == sys.argv[1]] or [0]))
' "$3"
}
