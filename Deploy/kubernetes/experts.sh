#!/usr/bin/env bash
# Prints the Kubernetes manifests of a cluster config's experts: per expert a worker Deployment with the config's
# replicas and a PodDisruptionBudget. base/experts.yaml is this script's output for base/cluster.json.
#
#   Deploy/kubernetes/experts.sh [--threads N] CONFIG > Deploy/kubernetes/base/experts.yaml
#
# CONFIG is a cluster config as the pods read it (base/cluster.json: model paths under /models). --threads sets
# each worker's forward-pass threads and its CPU request and limit (default 2). Needs jq.
set -euo pipefail
usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; }
threads=2
config=
while [ $# -gt 0 ]; do
    case $1 in
        -h|--help) usage; exit 0 ;;
        --threads)
            [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "error: --threads needs a whole number ≥ 1" >&2; exit 2; }
            threads=$2; shift 2 ;;
        -*) echo "error: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) [ -z "$config" ] || { echo "error: one CONFIG only" >&2; usage >&2; exit 2; }
           config=$1; shift ;;
    esac
done
[ -n "$config" ] || { usage >&2; exit 2; }
command -v jq > /dev/null || { echo "error: jq is missing (apt-get install jq)" >&2; exit 1; }
[ -r "$config" ] || { echo "error: cannot read $config" >&2; exit 1; }
experts=$(jq -r '.experts[] | "\(.name) \(.replicas // 1)"' "$config")
[ -n "$experts" ] || { echo "error: $config lists no experts" >&2; exit 1; }

echo "# The experts of $(basename "$config"): written by Deploy/kubernetes/experts.sh; edit the config, not this file."
while read -r name replicas; do
    [[ $name =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] && [ ${#name} -le 40 ] || {
        echo "error: the expert name $name is not usable in a Kubernetes name (lower-case letters, digits, -)" >&2
        exit 1
    }
    cat <<YAML
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: mope-worker-$name
  labels:
    app.kubernetes.io/name: mope
    app.kubernetes.io/component: worker
    mope/expert: $name
spec:
  replicas: $replicas
  # A new replica registers before an old one drains: the expert keeps its replicas through an update.
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: mope
      app.kubernetes.io/component: worker
      mope/expert: $name
  template:
    metadata:
      labels:
        app.kubernetes.io/name: mope
        app.kubernetes.io/component: worker
        mope/expert: $name
    spec:
      automountServiceAccountToken: false
      # SIGTERM drains (open sessions finish within --drain-grace 30); the kubelet waits longer than that.
      terminationGracePeriodSeconds: 45
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        fsGroup: 10001
        seccompProfile:
          type: RuntimeDefault
      initContainers:
        # mope refuses a secret key file that anyone but its owner can read; a Secret volume's files belong to
        # root, so the keys are copied, mode 0600, into a memory-backed folder of the pod's user.
        - name: keys
          image: mope
          command: ["/bin/sh", "-c", "install -m 0600 /secrets/worker/worker.key /secrets/client/client.key /keys/ && install -m 0644 /secrets/worker/coordinator.pub /keys/"]
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
          resources:
            requests: {cpu: 10m, memory: 16Mi}
            limits: {cpu: 100m, memory: 64Mi}
          volumeMounts:
            - {name: worker-secret, mountPath: /secrets/worker, readOnly: true}
            - {name: client-secret, mountPath: /secrets/client, readOnly: true}
            - {name: keys, mountPath: /keys}
      containers:
        - name: worker
          image: mope
          args: ["worker", "--config", "/etc/mope/cluster.json", "--expert", "$name", "--id", "\$(MOPE_WORKER_ID)",
                 "--coordinator", "tcp://mope-coordinator-workers:5555", "--threads", "$threads",
                 "--drain-grace", "30"]
          env:
            - name: POD_NAME
              valueFrom:
                fieldRef: {fieldPath: metadata.name}
            - {name: MOPE_WORKER_ID, value: "$name-\$(POD_NAME)"}
            - {name: MOPE_CURVE_SERVER_KEY_FILE, value: /keys/coordinator.pub}
            - {name: MOPE_CURVE_SECRET_KEY_FILE, value: /keys/worker.key}
          # Ready once the coordinator lists this worker, registered and not draining (asked with the client
          # key: the workers' endpoint answers no status). The PodDisruptionBudget counts ready pods, so a
          # voluntary eviction never takes the last registered replica of two. No liveness probe: a coordinator
          # outage would fail it on every worker at once; a worker whose coordinator goes silent registers
          # again by itself, and one that fails exits and is restarted.
          readinessProbe:
            exec:
              command:
                - /bin/sh
                - -c
                - >-
                  mope status --coordinator tcp://mope-coordinator-clients:5556
                  --curve-server-key-file /keys/coordinator.pub --curve-secret-key-file /keys/client.key
                  --timeout 3 --json | grep -q "\"draining\":false,\"id\":\"\$MOPE_WORKER_ID\""
            periodSeconds: 10
            timeoutSeconds: 8
            failureThreshold: 3
          resources:
            # The model's weights plus one KV cache per open session (--capacity, --kv-capacity): measure yours.
            requests: {cpu: "$threads", memory: 1Gi}
            limits: {cpu: "$threads", memory: 4Gi}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
          volumeMounts:
            - {name: config, mountPath: /etc/mope, readOnly: true}
            - {name: models, mountPath: /models, readOnly: true}
            - {name: keys, mountPath: /keys, readOnly: true}
            - {name: tmp, mountPath: /tmp}
      volumes:
        - name: config
          configMap: {name: mope-config}
        - name: models
          persistentVolumeClaim: {claimName: mope-models, readOnly: true}
        - name: worker-secret
          secret: {secretName: mope-worker-keys, defaultMode: 0440}
        - name: client-secret
          secret: {secretName: mope-client-keys, defaultMode: 0440}
        - name: keys
          emptyDir: {medium: Memory, sizeLimit: 1Mi}
        - name: tmp
          emptyDir: {sizeLimit: 64Mi}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: mope-worker-$name
  labels:
    app.kubernetes.io/name: mope
    app.kubernetes.io/component: worker
    mope/expert: $name
spec:
  # One replica of the expert at a time may be evicted (a node drain, an upgrade); with one replica the expert
  # is lost for that while and answers say so.
  maxUnavailable: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: mope
      app.kubernetes.io/component: worker
      mope/expert: $name
YAML
done <<< "$experts"
