#!/usr/bin/env bash
# The per-host side of Deploy/ssh-cluster.sh, sent over ssh as the standard input of `bash -s` (nothing is
# installed on the hosts). Not meant to be run by hand, though it can be:
#
#   remote.sh prepare DIR                  make DIR and DIR/keys, mode 0700
#   remote.sh start DIR HOST NAME CMD...   start CMD in a session of its own (no stdin), log DIR/logs/HOST/NAME.log,
#                                          pid file DIR/run/HOST/NAME.pid ("PID STARTTIME")
#   remote.sh stop DIR HOST GRACE          SIGTERM to every process with a pid file under DIR/run/HOST whose start
#                                          time still matches, SIGKILL after GRACE seconds, pid files removed
#   remote.sh status DIR HOST              one line per pid file: NAME PID running|gone
#
# HOST is the host's name in the hosts file: hosts that share a home directory keep their pid files apart.
set -uo pipefail

# The start time of process PID (clock ticks since boot, field 22 of /proc/PID/stat), or nothing.
start_time() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }          # the fields after the command name, which may hold spaces
    set -- $stat
    echo "${20}"
}

# Whether the pid file names a process that is still the one started (same pid, same start time).
alive() {  # PIDFILE
    local pid started now
    read -r pid started <"$1" 2>/dev/null || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    now=$(start_time "$pid") || return 1
    [ "$now" = "$started" ]
}

action=${1:-}
case $action in
    prepare)
        umask 077
        mkdir -p "$2/keys" && chmod 700 "$2" "$2/keys" || exit 1
        ;;
    start)
        dir=$2 host=$3 name=$4; shift 4
        mkdir -p "$dir/run/$host" "$dir/logs/$host" || exit 1
        pidfile=$dir/run/$host/$name.pid log=$dir/logs/$host/$name.log
        if [ -f "$pidfile" ] && alive "$pidfile"; then
            echo "$name already running (pid $(cut -d' ' -f1 "$pidfile"))"; exit 0
        fi
        command -v "$1" >/dev/null || { echo "$host: $1 not found" >&2; exit 1; }
        # setsid (without forking: a background job here is no group leader) keeps the pid; the process leads
        # a session of its own, so the ssh session's end does not reach it.
        setsid "$@" </dev/null >>"$log" 2>&1 &
        pid=$!
        started=$(start_time "$pid") || { echo "$host: $name exited at once:" >&2; tail -5 "$log" >&2; exit 1; }
        echo "$pid $started" >"$pidfile"
        sleep 0.5
        if ! alive "$pidfile"; then
            echo "$host: $name exited at once:" >&2; tail -5 "$log" >&2; rm -f "$pidfile"; exit 1
        fi
        echo "$name pid $pid"
        ;;
    stop)
        dir=$2 host=$3 grace=$4
        shopt -s nullglob
        pidfiles=("$dir/run/$host"/*.pid)
        running=()
        for pidfile in "${pidfiles[@]}"; do
            name=$(basename "$pidfile" .pid)
            if alive "$pidfile"; then
                pid=$(cut -d' ' -f1 "$pidfile")
                kill -TERM "$pid" 2>/dev/null && running+=("$pidfile")
                echo "$name pid $pid: SIGTERM"
            else
                echo "$name: not running (stale pid file removed, nothing signalled)"
                rm -f "$pidfile"
            fi
        done
        end=$(( $(date +%s) + grace ))
        while :; do
            left=()
            for pidfile in "${running[@]}"; do alive "$pidfile" && left+=("$pidfile"); done
            [ ${#left[@]} = 0 ] || [ "$(date +%s)" -ge "$end" ] && break
            sleep 0.2
        done
        for pidfile in "${left[@]}"; do
            pid=$(cut -d' ' -f1 "$pidfile")
            echo "$(basename "$pidfile" .pid) pid $pid: still running after $grace s, SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        done
        for pidfile in "${running[@]}"; do rm -f "$pidfile"; done
        ;;
    status)
        dir=$2 host=$3
        shopt -s nullglob
        for pidfile in "$dir/run/$host"/*.pid; do
            if alive "$pidfile"; then state=running; else state=gone; fi
            echo "$(basename "$pidfile" .pid) $(cut -d' ' -f1 "$pidfile") $state"
        done
        ;;
    *)
        echo "remote.sh: unknown action '$action' (prepare, start, stop, status)" >&2; exit 2 ;;
esac
