# Shared by the cluster scripts (source it from the repository root): configs and clean shutdown.

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
