#!/usr/bin/env bash
# A mope cluster on machines reached over ssh: the coordinator on the first host of HOSTS, the expert
# workers each host lists, started, checked and stopped from this machine.
#
#   Deploy/ssh-cluster.sh HOSTS CONFIG up     [options]   start everything, wait until mope status says ready
#   Deploy/ssh-cluster.sh HOSTS CONFIG status [options]   each host's processes, then mope status
#   Deploy/ssh-cluster.sh HOSTS CONFIG down   [options]   stop exactly what up started (pid files on the hosts)
#
# HOSTS has one line per host, "HOST EXPERT...": HOST is what ssh is given (NAME or USER@NAME), EXPERT the
# config's expert names this host runs a worker for (list an expert on several hosts for replicas). The
# first line's host also runs the coordinator (its expert list may be empty). Blank lines and # comments
# are skipped. Example:
#     gpu1 concise friendly
#     gpu2 knowledgeable concise
# CONFIG is a path every host reads (as are the model files it names); paths relative to the login
# directory work too.
#
#   --keys DIR          the cluster's keys here, from `mope keygen --cluster DIR` (or MOPE_KEYS): status uses
#                       DIR/coordinator.pub and DIR/client.key; with --copy-keys the hosts' files come from it
#   --copy-keys         scp each host the key files it needs into REMOTE-DIR/keys (mode 0700): the coordinator
#                       coordinator.key, worker-keys, authorized-keys; a worker host coordinator.pub, worker.key
#   --remote-keys DIR   where the key files are on the hosts (default REMOTE-DIR/keys)
#   --remote-dir DIR    the folder on the hosts for keys, logs and pid files (default .mope-cluster, in the
#                       login directory); pid files are kept per host (run/HOST/), logs in logs/HOST/
#   --mope PATH         the mope binary on the hosts (default: mope on the remote PATH)
#   --local-mope PATH   the mope binary here, for status (or MOPE_BINARY, MOPE; default: mope on PATH)
#   --port N            the coordinator's workers' port (default 5555); clients use N+1
#   --address ADDR      the coordinator's address as the workers reach it (default: the first host's NAME)
#   --ssh-config FILE   ssh -F FILE (and scp -F FILE): user, port, identity, known hosts
#   --threads N         forward-pass threads per worker (default: every core)
#   --serve HOST:PORT   also start the HTTP front (mope serve) on the first host, listening there (it has no
#                       authentication of its own: 127.0.0.1:PORT and an ssh tunnel, or a trusted network);
#                       it uses the client key (with --copy-keys, coordinator.pub and client.key are copied)
#   --wait SECONDS      how long up waits for every expert (default 120)
#   --stop-grace S      how long down lets processes drain before SIGKILL (default 10)
#
# Only file paths reach the command lines (here and on the hosts), never a key. The coordinator binds
# tcp://0.0.0.0:PORT and PORT+1 with CURVE and both allow-lists. When up fails it stops what it started and
# exits 1. Exit codes: 0 done (status: ready), 1 failure (status: not ready), 2 usage.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REMOTE_SCRIPT=$HERE/ssh/remote.sh

usage() { sed -n '2,39p' "$0" | sed 's/^# \{0,1\}//'; }
fail_usage() { echo "ssh-cluster: $*" >&2; echo "(see --help)" >&2; exit 2; }

KEYS=${MOPE_KEYS:-} COPY_KEYS=0 REMOTE_KEYS= REMOTE_DIR=.mope-cluster REMOTE_MOPE=mope
LOCAL_MOPE=${MOPE_BINARY:-${MOPE:-mope}} PORT=5555 ADDRESS= SSH_CONFIG= THREADS= WAIT=120 STOP_GRACE=10
SERVE=
positional=()
while [ $# -gt 0 ]; do
    case $1 in
        -h|--help) usage; exit 0 ;;
        --copy-keys) COPY_KEYS=1; shift; continue ;;
        --keys|--remote-keys|--remote-dir|--mope|--local-mope|--port|--address|--ssh-config|--threads|--wait|--stop-grace|--serve)
            [ $# -ge 2 ] || fail_usage "$1 needs a value" ;;
        -*) fail_usage "unknown option $1" ;;
        *) positional+=("$1"); shift; continue ;;
    esac
    case $1 in
        --keys) KEYS=$2 ;;
        --remote-keys) REMOTE_KEYS=$2 ;;
        --remote-dir) REMOTE_DIR=$2 ;;
        --mope) REMOTE_MOPE=$2 ;;
        --local-mope) LOCAL_MOPE=$2 ;;
        --port) PORT=$2 ;;
        --address) ADDRESS=$2 ;;
        --ssh-config) SSH_CONFIG=$2 ;;
        --threads) THREADS=$2 ;;
        --wait) WAIT=$2 ;;
        --stop-grace) STOP_GRACE=$2 ;;
        --serve) SERVE=$2 ;;
    esac
    shift 2
done
[ ${#positional[@]} = 3 ] || fail_usage "expected HOSTS CONFIG up|status|down, got ${#positional[@]} arguments"
HOSTS_FILE=${positional[0]} CONFIG=${positional[1]} ACTION=${positional[2]}
case $ACTION in up|status|down) ;; *) fail_usage "unknown command '$ACTION' (up, status or down)" ;; esac
for value in "$PORT" "$WAIT" "$STOP_GRACE" ${THREADS:+"$THREADS"}; do
    [[ $value =~ ^[0-9]+$ ]] || fail_usage "expected a whole number, got '$value'"
done
[ "$PORT" -ge 1 ] && [ "$PORT" -le 65534 ] || fail_usage "--port must be in 1…65534 (clients use the next port)"
[ -z "$SERVE" ] || [[ $SERVE =~ ^[^[:space:]]+:[0-9]+$ ]] || fail_usage "--serve wants HOST:PORT, got '$SERVE'"
[ -r "$HOSTS_FILE" ] || fail_usage "cannot read the hosts file $HOSTS_FILE"
[ -z "$SSH_CONFIG" ] || [ -r "$SSH_CONFIG" ] || fail_usage "cannot read the ssh config $SSH_CONFIG"
REMOTE_KEYS=${REMOTE_KEYS:-$REMOTE_DIR/keys}

# The hosts file: HOSTS[i] (as ssh takes it), LABELS[i] (a file-name-safe name), EXPERTS[i] (space-separated).
HOSTS=() LABELS=() EXPERTS=()
line_number=0
while IFS= read -r line || [ -n "$line" ]; do
    line_number=$((line_number + 1))
    line=${line%%#*}
    read -r -a words <<<"$line"
    [ ${#words[@]} = 0 ] && continue
    host=${words[0]}
    [[ $host =~ ^([A-Za-z0-9._-]+@)?[A-Za-z0-9._-]+$ ]] \
        || fail_usage "$HOSTS_FILE:$line_number: '$host' is not a host name (NAME or USER@NAME)"
    if [ ${#HOSTS[@]} -gt 0 ] && [ ${#words[@]} = 1 ]; then
        fail_usage "$HOSTS_FILE:$line_number: $host lists no expert (only the first host may run none)"
    fi
    for expert in "${words[@]:1}"; do
        [[ $expert =~ ^[A-Za-z0-9._-]+$ ]] || fail_usage "$HOSTS_FILE:$line_number: bad expert name '$expert'"
    done
    name=${host#*@}
    label=${name//[^A-Za-z0-9_-]/-}
    for other in "${LABELS[@]}"; do [ "$other" != "$label" ] || fail_usage "$HOSTS_FILE:$line_number: $host twice"; done
    HOSTS+=("$host") LABELS+=("$label") EXPERTS+=("${words[*]:1}")
done <"$HOSTS_FILE"
[ ${#HOSTS[@]} -gt 0 ] || fail_usage "$HOSTS_FILE names no host"
COORDINATOR_HOST=${HOSTS[0]}
ADDRESS=${ADDRESS:-${COORDINATOR_HOST#*@}}
WORKERS_ENDPOINT=tcp://$ADDRESS:$PORT
CLIENTS_ENDPOINT=tcp://$ADDRESS:$((PORT + 1))

SSH=(ssh -o BatchMode=yes -o ConnectTimeout=10 ${SSH_CONFIG:+-F "$SSH_CONFIG"})
SCP=(scp -q -p -o BatchMode=yes -o ConnectTimeout=10 ${SSH_CONFIG:+-F "$SSH_CONFIG"})
# remote HOST ACTION ARGS...: the per-host script over ssh, its arguments quoted for the remote shell,
# bounded in time.
remote() {
    local host=$1; shift
    timeout $((60 + STOP_GRACE)) "${SSH[@]}" "$host" "bash -s -- $(printf '%q ' "$@")" <"$REMOTE_SCRIPT"
}

# The experts named in the config, to refuse a hosts file that names others.
config_experts() {
    python3 - "$CONFIG" <<'PY'
import json, sys
try:
    print(" ".join(e["name"] for e in json.load(open(sys.argv[1]))["experts"]))
except (OSError, ValueError, KeyError, TypeError) as error:
    sys.exit(f"ssh-cluster: {sys.argv[1]} is not a cluster config here: {error}")
PY
}

need_client_keys() {
    [ -n "$KEYS" ] || fail_usage "$ACTION needs --keys DIR (or MOPE_KEYS) for the client key mope status uses"
    for file in coordinator.pub client.key; do
        [ -r "$KEYS/$file" ] || fail_usage "$KEYS/$file is missing (mope keygen --cluster $KEYS writes the set)"
    done
    command -v "$LOCAL_MOPE" >/dev/null || { echo "ssh-cluster: mope not found here: $LOCAL_MOPE (--local-mope)" >&2; exit 1; }
}

cluster_status() {  # SECONDS: mope status against the clients' endpoint, asked from here
    "$LOCAL_MOPE" status --coordinator "$CLIENTS_ENDPOINT" --wait "$1" \
        --curve-server-key-file "$KEYS/coordinator.pub" --curve-secret-key-file "$KEYS/client.key"
}

down() {
    local status=0 i
    # Workers first (last host first), the coordinator last.
    for ((i = ${#HOSTS[@]} - 1; i >= 0; i--)); do
        echo "${HOSTS[$i]}:"
        remote "${HOSTS[$i]}" stop "$REMOTE_DIR" "${LABELS[$i]}" "$STOP_GRACE" | sed 's/^/  /' \
            || { echo "ssh-cluster: stopping on ${HOSTS[$i]} failed" >&2; status=1; }
    done
    return "$status"
}

up() {
    need_client_keys
    local known
    known=" $(config_experts) " || exit 1
    for i in "${!HOSTS[@]}"; do
        for expert in ${EXPERTS[$i]}; do
            [[ $known == *" $expert "* ]] || fail_usage "${HOSTS[$i]} lists '$expert', not an expert of $CONFIG (${known# })"
        done
    done
    if [ "$COPY_KEYS" = 1 ]; then
        for file in coordinator.key worker-keys authorized-keys coordinator.pub worker.key; do
            [ -r "$KEYS/$file" ] || fail_usage "--copy-keys: $KEYS/$file is missing"
        done
    fi
    trap 'echo "ssh-cluster: interrupted; stopping what was started" >&2; down >/dev/null; exit 130' INT TERM
    failed() { echo "ssh-cluster: $*; stopping what was started" >&2; down; exit 1; }

    local i host label files
    for i in "${!HOSTS[@]}"; do
        host=${HOSTS[$i]}
        if [ "$COPY_KEYS" = 1 ]; then
            remote "$host" prepare "$REMOTE_DIR" || failed "cannot make $REMOTE_DIR on $host"
            files=()
            [ "$i" = 0 ] && files+=("$KEYS/coordinator.key" "$KEYS/worker-keys" "$KEYS/authorized-keys")
            [ -n "${EXPERTS[$i]}" ] && files+=("$KEYS/worker.key")
            { [ -n "${EXPERTS[$i]}" ] || { [ "$i" = 0 ] && [ -n "$SERVE" ]; }; } && files+=("$KEYS/coordinator.pub")
            [ "$i" = 0 ] && [ -n "$SERVE" ] && files+=("$KEYS/client.key")
            timeout 60 "${SCP[@]}" "${files[@]}" "$host:$REMOTE_KEYS/" || failed "scp of the keys to $host failed"
            echo "$host: keys copied to $REMOTE_KEYS (${files[*]##*/})"
        fi
    done

    echo "${HOSTS[0]}: coordinator, workers $WORKERS_ENDPOINT, clients $CLIENTS_ENDPOINT"
    remote "$COORDINATOR_HOST" start "$REMOTE_DIR" "${LABELS[0]}" coordinator \
        "$REMOTE_MOPE" coordinator --config "$CONFIG" --endpoint "tcp://0.0.0.0:$PORT" \
        --client-endpoint "tcp://0.0.0.0:$((PORT + 1))" --drain-grace "$STOP_GRACE" \
        --curve-secret-key-file "$REMOTE_KEYS/coordinator.key" --curve-worker-keys "$REMOTE_KEYS/worker-keys" \
        --curve-authorized-keys "$REMOTE_KEYS/authorized-keys" | sed 's/^/  /'
    [ "${PIPESTATUS[0]}" = 0 ] || failed "the coordinator did not start on $COORDINATOR_HOST"

    local expert id seen
    for i in "${!HOSTS[@]}"; do
        host=${HOSTS[$i]} label=${LABELS[$i]} seen=" "
        [ -n "${EXPERTS[$i]}" ] && echo "$host: workers"
        for expert in ${EXPERTS[$i]}; do
            id=$expert-$label
            while [[ $seen == *" $id "* ]]; do id=$id-2; done
            seen+="$id "
            args=(worker --config "$CONFIG" --expert "$expert" --id "$id" --coordinator "$WORKERS_ENDPOINT"
                  --drain-grace "$STOP_GRACE" --curve-server-key-file "$REMOTE_KEYS/coordinator.pub"
                  --curve-secret-key-file "$REMOTE_KEYS/worker.key")
            [ -n "$THREADS" ] && args+=(--threads "$THREADS")
            remote "$host" start "$REMOTE_DIR" "$label" "$id" "$REMOTE_MOPE" "${args[@]}" | sed 's/^/  /'
            [ "${PIPESTATUS[0]}" = 0 ] || failed "worker $id did not start on $host"
        done
    done
    if [ -n "$SERVE" ]; then
        echo "${HOSTS[0]}: HTTP front on $SERVE"
        remote "$COORDINATOR_HOST" start "$REMOTE_DIR" "${LABELS[0]}" serve \
            "$REMOTE_MOPE" serve --coordinator "tcp://127.0.0.1:$((PORT + 1))" --listen "$SERVE" \
            --drain-grace "$STOP_GRACE" --curve-server-key-file "$REMOTE_KEYS/coordinator.pub" \
            --curve-secret-key-file "$REMOTE_KEYS/client.key" | sed 's/^/  /'
        [ "${PIPESTATUS[0]}" = 0 ] || failed "the HTTP front did not start on $COORDINATOR_HOST"
    fi
    echo "waiting up to $WAIT s for every expert (mope status $CLIENTS_ENDPOINT)"
    cluster_status "$WAIT" || failed "the cluster was not ready within $WAIT s"
    trap - INT TERM
    echo "cluster ready: coordinator $WORKERS_ENDPOINT, clients $CLIENTS_ENDPOINT"
}

case $ACTION in
    up) up ;;
    down) down ;;
    status)
        need_client_keys
        for i in "${!HOSTS[@]}"; do
            echo "${HOSTS[$i]}:"
            remote "${HOSTS[$i]}" status "$REMOTE_DIR" "${LABELS[$i]}" | sed 's/^/  /' \
                || echo "  (cannot reach ${HOSTS[$i]} over ssh)"
        done
        cluster_status 0
        ;;
esac
