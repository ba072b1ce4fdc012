#!/usr/bin/env bash
# Runs Deploy/ssh-cluster.sh against two "hosts" on this machine: two Linux network namespaces, each with its
# own address (10.214.0.1, 10.214.0.2) and its own sshd (`sshd -D -f CONFIG`, a host key made for the run),
# joined by veth pairs to a bridge; the script itself runs in a third namespace (10.214.0.100) as an admin
# machine would, with a user key made for the run and a generated known_hosts (StrictHostKeyChecking yes).
# A first up with a model file missing on host 2 must fail and leave nothing running. Then
# it brings the cluster up (keys copied with scp to a 0700 folder, the HTTP front too), checks where each
# process runs, that no key is on a command line, answers one request over tcp with the client key and one
# through the front (/health, /v1/completions), runs status, then down, and
# checks that down stopped every process it started and nothing else (a stale pid file naming a process of
# someone else must leave that process alone). The namespaces share this machine's file system.
#
#   Deploy/ssh/test-netns.sh [--keep]
#
# Needs root, ip netns (iproute2), sshd (openssh-server), ssh, scp and ssh-keygen (openssh-client) and
# python3 and curl; a missing tool fails the run (exit 1) naming its package. MOPE_BINARY (or MOPE) names the mope
# binary (default .build/debug/mope). Every wait is bounded; on exit (also on failure or Ctrl-C) every process
# in the namespaces, the namespaces and the temporary folder are removed. Prints PASSED or FAILED.
set -uo pipefail
cd "$(dirname "$0")/../.."
. Scripts/lib/netns.sh
ROOT=$PWD

KEEP=0
while [ $# -gt 0 ]; do
    case $1 in
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --keep) KEEP=1; shift ;;
        *) echo "test-netns: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

started=$(date +%s)
say() { echo "[ssh-test +$(( $(date +%s) - started ))s] $*"; }
die() { echo "FAILED: $*"; exit 1; }

PATH=$PATH:/usr/sbin:/sbin
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, sshd)"
missing=()
for tool in ip:iproute2 sshd:openssh-server ssh:openssh-client scp:openssh-client ssh-keygen:openssh-client \
            python3:python3 timeout:coreutils setsid:util-linux curl:curl; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool%%:*} (apt-get install ${tool##*:})")
done
[ ${#missing[@]} = 0 ] || die "missing tools: ${missing[*]}"
ip netns list >/dev/null 2>&1 || die "ip netns does not work here"
MOPE=${MOPE_BINARY:-${MOPE:-$ROOT/.build/debug/mope}}
[ -x "$MOPE" ] || die "mope binary $MOPE not found (swift build, or set MOPE_BINARY)"
MOPE=$(readlink -f "$MOPE")
SSHD=$(command -v sshd)

tag=$$
NS_BR=mope-sshbr-$tag NS_H1=mope-ssh1-$tag NS_H2=mope-ssh2-$tag NS_ADMIN=mope-sshadm-$tag
H1=10.214.0.1 H2=10.214.0.2 ADMIN=10.214.0.100
work=$(mktemp -d "${TMPDIR:-/tmp}/mope-ssh.XXXXXX")
made=()
decoy=
made_run_sshd=0

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # Everything inside these namespaces was started by this run (sshd, the cluster's processes).
    for ns in "${made[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    done
    [ -n "$decoy" ] && kill -KILL "$decoy" 2>/dev/null
    for ns in "${made[@]}"; do ip netns del "$ns" 2>/dev/null; done
    [ "$made_run_sshd" = 1 ] && rmdir /run/sshd 2>/dev/null
    wait 2>/dev/null
    if [ "$status" != 0 ]; then
        for log in "$work"/*.log "$work"/remote/logs/*/*.log; do
            [ -f "$log" ] && { echo "--- $log"; tail -10 "$log"; }
        done
    fi
    if [ "$KEEP" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The network: a bridge in a namespace of its own, one veth pair per machine (eth0 inside).
netns_host_network "$NS_BR" "${H1%.*}" "$NS_H1=${H1##*.}" "$NS_H2=${H2##*.}" "$NS_ADMIN=${ADMIN##*.}"
made+=("${NETNS_MADE[@]}")
for ns in "$NS_H1" "$NS_H2" "$NS_ADMIN"; do
    ip -n "$ns" link show eth0 >/dev/null 2>&1 || die "cannot make the network (namespace $ns)"
done
say "network: hosts $H1 ($NS_H1) and $H2 ($NS_H2), admin $ADMIN ($NS_ADMIN)"

# sshd per host: its own host key and config; root logs in with the run's user key only.
[ -d /run/sshd ] || { mkdir -m 755 /run/sshd && made_run_sshd=1; }
ssh-keygen -q -t ed25519 -N '' -C mope-test-user -f "$work/id_ed25519" || die "ssh-keygen failed"
cp "$work/id_ed25519.pub" "$work/authorized_keys"
: >"$work/known_hosts"
for pair in "h1:$H1:$NS_H1" "h2:$H2:$NS_H2"; do
    IFS=: read -r name address ns <<<"$pair"
    ssh-keygen -q -t ed25519 -N '' -C "mope-test-$name" -f "$work/$name-host-key" || die "ssh-keygen failed"
    echo "$address $(cut -d' ' -f1,2 "$work/$name-host-key.pub")" >>"$work/known_hosts"
    cat >"$work/$name-sshd.conf" <<EOF
ListenAddress $address
Port 22
HostKey $work/$name-host-key
PidFile $work/$name-sshd.pid
AuthorizedKeysFile $work/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
Subsystem sftp internal-sftp
LogLevel VERBOSE
EOF
    ip netns exec "$ns" "$SSHD" -D -e -f "$work/$name-sshd.conf" 2>"$work/$name-sshd.log" &
    disown $!   # killed with everything in the namespace on exit
done
cat >"$work/ssh.conf" <<EOF
Host *
    User root
    IdentityFile $work/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $work/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 5
    LogLevel ERROR
EOF
admin() { ip netns exec "$NS_ADMIN" "$@"; }
for address in "$H1" "$H2"; do
    end=$(( $(date +%s) + 20 ))
    until admin ssh -F "$work/ssh.conf" "$address" true 2>"$work/ssh-probe.err"; do
        [ "$(date +%s)" -lt "$end" ] || die "no ssh login to $address within 20 s: $(tail -2 "$work/ssh-probe.err")"
        sleep 0.3
    done
done
say "sshd up on both hosts (host keys checked against the generated known_hosts)"

"$MOPE" keygen --cluster "$work/keys" >/dev/null || die "mope keygen --cluster failed"
python3 - "$work/cluster.json" <<'PY'
import json, os, sys
config = json.load(open("Configs/tiny-test.json"))
config.update(coordinator="tcp://10.214.0.1:5555", heartbeatIntervalMs=1000, stepDeadlineMs=20000,
              openDeadlineMs=60000, maxNewTokens=8)
# Every path made absolute: the hosts' processes run in another folder.
for holder, keys in [(config, ("pcm", "tokenizer"))] + [(e, ("model", "bias", "lora")) for e in config["experts"]]:
    for key in keys:
        if isinstance(holder.get(key), str) and os.path.exists(holder[key]):
            holder[key] = os.path.abspath(holder[key])
for expert in config["experts"]:
    if expert["name"] == "concise":
        expert["replicas"] = 2
json.dump(config, open(sys.argv[1], "w"), indent=2)
PY
cat >"$work/hosts" <<EOF
# host        experts
$H1    concise friendly
$H2    knowledgeable concise   # concise's second replica
EOF
REMOTE=$work/remote
CLUSTER=(ip netns exec "$NS_ADMIN" "$ROOT/Deploy/ssh-cluster.sh" "$work/hosts" "$work/cluster.json")
OPTIONS=(--keys "$work/keys" --copy-keys --remote-dir "$REMOTE" --mope "$MOPE" --local-mope "$MOPE"
         --ssh-config "$work/ssh.conf" --threads 1 --wait 120 --stop-grace 5 --serve "$H1:8080")

failures=0
check() {  # DESCRIPTION COMMAND...
    local what=$1; shift
    if "$@"; then echo "  ok: $what"; else echo "  FAILED: $what"; failures=$((failures + 1)); fi
}

# A failed up stops what it started: host 2's knowledgeable names a model file that is not there.
python3 - "$work/cluster.json" "$work/broken.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
for expert in config["experts"]:
    if expert["name"] == "knowledgeable":
        expert["model"] = "/nonexistent/model.gguf"
json.dump(config, open(sys.argv[2], "w"), indent=2)
PY
say "ssh-cluster.sh up with a model missing on host 2 (must fail and stop what it started)"
timeout 120 ip netns exec "$NS_ADMIN" "$ROOT/Deploy/ssh-cluster.sh" "$work/hosts" "$work/broken.json" up \
    "${OPTIONS[@]}" --wait 20 >"$work/broken-up.out" 2>&1
code=$?
sed 's/^/    /' "$work/broken-up.out" | tail -12
mope_on_hosts() {  # prints the pids of mope processes on either host
    for ns in "$NS_H1" "$NS_H2"; do
        for pid in $(ip netns pids "$ns"); do [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$MOPE" ] && echo "$pid"; done
    done
}
left=$(mope_on_hosts | paste -sd' ' -)
check "the failed up exited 1 (exit $code)" [ "$code" = 1 ]
check "… and left no mope process on the hosts (${left:-none})" [ -z "$left" ]
check "… and no pid file" bash -c "[ -z \"\$(find '$REMOTE/run' -name '*.pid' 2>/dev/null)\" ]"

# A process of someone else, and a stale pid file on host 2 that names it (its pid, another start time), as a
# pid file left by a crash whose pid was reused: down must not touch it.
sleep 300 &
decoy=$!
disown "$decoy"
mkdir -p "$REMOTE/run/10-214-0-2"
echo "$decoy 1" >"$REMOTE/run/10-214-0-2/stale.pid"

say "ssh-cluster.sh up"
timeout 200 "${CLUSTER[@]}" up "${OPTIONS[@]}" >"$work/up.out" 2>&1
code=$?
sed 's/^/    /' "$work/up.out"
check "up exited 0 (exit $code) and said cluster ready" [ "$code" = 0 ]
grep -q "^cluster ready" "$work/up.out" || failures=$((failures + 1))
[ "$code" = 0 ] || die "up failed"

# Where each process runs: the pid files on the hosts name them; ip netns identify names each one's namespace.
in_ns() {  # PIDFILE NAMESPACE
    local pid
    pid=$(cut -d' ' -f1 "$1" 2>/dev/null) || return 1
    [ "$(ip netns identify "$pid" 2>/dev/null)" = "$2" ] && [ "$(readlink "/proc/$pid/exe")" = "$MOPE" ]
}
check "the coordinator runs on host 1" in_ns "$REMOTE/run/10-214-0-1/coordinator.pid" "$NS_H1"
check "the HTTP front runs on host 1" in_ns "$REMOTE/run/10-214-0-1/serve.pid" "$NS_H1"
both_in_ns() {  # NAMESPACE PIDFILE PIDFILE
    in_ns "$2" "$1" && in_ns "$3" "$1"
}
check "concise and friendly run on host 1" both_in_ns "$NS_H1" \
    "$REMOTE/run/10-214-0-1/concise-10-214-0-1.pid" "$REMOTE/run/10-214-0-1/friendly-10-214-0-1.pid"
check "knowledgeable and concise's replica run on host 2" both_in_ns "$NS_H2" \
    "$REMOTE/run/10-214-0-2/knowledgeable-10-214-0-2.pid" "$REMOTE/run/10-214-0-2/concise-10-214-0-2.pid"
check "the hosts' key folder is mode 700, the secret keys 600" bash -c \
    "[ \$(stat -c %a $REMOTE/keys) = 700 ] && [ \$(stat -c %a $REMOTE/keys/coordinator.key) = 600 ] && [ \$(stat -c %a $REMOTE/keys/worker.key) = 600 ]"

# No key on any command line: the secret (and public) keys' text in no process's arguments.
keys_in_argv() {
    local key pid
    while read -r key; do
        for pid in $(ip netns pids "$NS_H1") $(ip netns pids "$NS_H2"); do
            { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$key" && return 0
        done
    done < <(cat "$work"/keys/*.key "$work"/keys/*.pub)
    return 1
}
no_keys_in_argv() { ! keys_in_argv; }
check "no key text on any command line on the hosts" no_keys_in_argv

admin "$MOPE" generate --coordinator "tcp://$H1:5556" --curve-server-key-file "$work/keys/coordinator.pub" \
    --curve-secret-key-file "$work/keys/client.key" --preference "concise, friendly, knowledgeable" \
    --max-tokens 8 --timeout 120 "Tell me about cats." >"$work/generate.out" 2>"$work/generate.err"
code=$?
check "mope generate from the admin namespace answered over tcp (exit $code): $(head -c 50 "$work/generate.out" | tr '\n' ' ')" \
    [ "$code" = 0 -a -s "$work/generate.out" ]
check "the answer lost no expert" bash -c "! grep -q degraded '$work/generate.err'"
admin "$MOPE" generate --coordinator "tcp://$H1:5556" --curve-server-key-file "$work/keys/coordinator.pub" \
    --max-tokens 4 --timeout 20 "Hello" >/dev/null 2>"$work/refused.err"
check "a client key not on the allow-list gets no answer" [ $? != 0 ]

health=$(admin curl -s -o "$work/health.out" -w '%{http_code}' --max-time 10 "http://$H1:8080/health")
check "GET /health on host 1's front is 200 (got $health)" [ "$health" = 200 ]
completion=$(admin curl -s -o "$work/completion.out" -w '%{http_code}' --max-time 120 \
    -H 'Content-Type: application/json' -d '{"prompt": "Once upon a time", "max_tokens": 8}' \
    "http://$H1:8080/v1/completions")
text=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["text"])' \
    "$work/completion.out" 2>/dev/null)
check "POST /v1/completions is 200 with a text (got $completion: $(head -c 50 <<<"$text" | tr '\n' ' '))" \
    [ "$completion" = 200 -a -n "$text" ]

timeout 60 "${CLUSTER[@]}" status "${OPTIONS[@]}" >"$work/status.out" 2>&1
code=$?
sed 's/^/    /' "$work/status.out"
check "status exited 0 and shows 6 processes running" [ "$code" = 0 -a "$(grep -c ' running$' "$work/status.out")" = 6 ]

say "ssh-cluster.sh down"
timeout 120 "${CLUSTER[@]}" down "${OPTIONS[@]}" >"$work/down.out" 2>&1
code=$?
sed 's/^/    /' "$work/down.out"
check "down exited 0 (exit $code)" [ "$code" = 0 ]
left=$(mope_on_hosts | paste -sd' ' -)
check "no mope process is left on either host (${left:-none})" [ -z "$left" ]
check "every pid file is gone" bash -c "[ -z \"\$(find '$REMOTE/run' -name '*.pid')\" ]"
check "the process a stale pid file named was left alone" kill -0 "$decoy"
check "down said it signalled nothing for the stale pid file" grep -q "stale: not running" "$work/down.out"
check "both sshd still run (down stopped only what up started)" \
    [ "$(ip netns pids "$NS_H1" | wc -l)" -ge 1 -a "$(ip netns pids "$NS_H2" | wc -l)" -ge 1 ]

if [ "$failures" = 0 ]; then echo "PASSED (ssh cluster on 2 namespace hosts, $(( $(date +%s) - started )) s)"; exit 0; fi
echo "FAILED: $failures checks"
exit 1
