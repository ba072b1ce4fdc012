#!/usr/bin/env bash
# Prints the Kubernetes Secrets of a cluster's CURVE keys, from the folder `mope keygen --cluster KEYDIR` wrote.
#
#   Deploy/kubernetes/make-secrets.sh [--namespace NS] KEYDIR > Deploy/kubernetes/overlays/example/secrets.yaml
#
# Three Secrets, each with only what its pods need:
#   mope-coordinator-keys  coordinator.key, worker-keys, authorized-keys      (the coordinator)
#   mope-worker-keys       worker.key, coordinator.pub                        (every worker)
#   mope-client-keys       client.key, coordinator.pub                        (the HTTP front; the probes)
# The output holds secret keys: keep it out of version control (the example overlay's .gitignore does).
set -euo pipefail
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
namespace=
keys=
while [ $# -gt 0 ]; do
    case $1 in
        -h|--help) usage; exit 0 ;;
        --namespace)
            [ $# -ge 2 ] && [[ $2 =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || {
                echo "error: --namespace needs a Kubernetes namespace name" >&2; exit 2; }
            namespace=$2; shift 2 ;;
        -*) echo "error: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) [ -z "$keys" ] || { echo "error: one KEYDIR only" >&2; usage >&2; exit 2; }
           keys=$1; shift ;;
    esac
done
[ -n "$keys" ] || { usage >&2; exit 2; }
for file in coordinator.key coordinator.pub worker.key client.key worker-keys authorized-keys; do
    [ -r "$keys/$file" ] || {
        echo "error: $keys/$file is missing (make the folder with: mope keygen --cluster $keys)" >&2; exit 1; }
done

secret() {
    local name=$1; shift
    printf -- '---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n' "$name"
    [ -z "$namespace" ] || printf '  namespace: %s\n' "$namespace"
    printf '  labels:\n    app.kubernetes.io/name: mope\ntype: Opaque\ndata:\n'
    local file
    for file in "$@"; do
        printf '  %s: %s\n' "$file" "$(base64 -w0 < "$keys/$file")"
    done
}
echo "# The CURVE keys of the cluster in $keys: written by Deploy/kubernetes/make-secrets.sh. Secret: do not commit."
secret mope-coordinator-keys coordinator.key worker-keys authorized-keys
secret mope-worker-keys worker.key coordinator.pub
secret mope-client-keys client.key coordinator.pub
