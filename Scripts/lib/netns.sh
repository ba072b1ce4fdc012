# Network namespaces as machines on one host (source it from the repository root; needs root and iproute2).
#
#   netns_host_network BRIDGE_NS SUBNET NAME=LAST_OCTET...
# Makes namespace BRIDGE_NS with a bridge br0, and for each NAME a namespace of that name with eth0 at
# SUBNET.LAST_OCTET/24, joined to the bridge by a veth pair (portI in BRIDGE_NS). Every namespace made is
# appended to the array NETNS_MADE (for netns_cleanup); NETNS_PORT[NAME] is the host's bridge-side port.
#
#   netns_cleanup
# Kills every process in the namespaces of NETNS_MADE (SIGCONT first, so that a stopped one dies too) and
# deletes the namespaces. Every process in them must be one the calling script started.
#
#   netns_check PROGRAM
# Prints why PROGRAM cannot run its namespaces (not root, no ip netns) and returns 1; returns 0 when it can.

NETNS_MADE=()
declare -A NETNS_PORT=()

netns_check() {
    if [ "$(id -u)" != 0 ]; then echo "$1: SKIPPED (needs root to create network namespaces)"; return 1; fi
    if ! command -v ip >/dev/null || ! ip netns list >/dev/null 2>&1; then
        echo "$1: SKIPPED (ip netns is unavailable; apt-get install iproute2)"; return 1
    fi
}

netns_host_network() {
    local bridge=$1 subnet=$2 index=0 spec name octet
    shift 2
    ip netns add "$bridge"; NETNS_MADE+=("$bridge")
    ip -n "$bridge" link add br0 type bridge
    ip -n "$bridge" link set br0 up
    ip -n "$bridge" link set lo up
    for spec in "$@"; do
        name=${spec%=*} octet=${spec#*=}
        ip netns add "$name"; NETNS_MADE+=("$name")
        ip -n "$bridge" link add "port$index" type veth peer name eth0 netns "$name"
        ip -n "$bridge" link set "port$index" master br0 up
        ip -n "$name" addr add "$subnet.$octet/24" dev eth0
        ip -n "$name" link set eth0 up
        ip -n "$name" link set lo up
        NETNS_PORT[$name]=port$index
        index=$((index + 1))
    done
}

netns_cleanup() {
    local ns pid
    for ns in "${NETNS_MADE[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -CONT "$pid" 2>/dev/null || true
            kill -KILL "$pid" 2>/dev/null || true
        done
    done
    for ns in "${NETNS_MADE[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    NETNS_MADE=()
}
