#!/usr/bin/env bash
# Builds the mope container image with podman (or buildah), without a registry.
#
#   Deploy/container/build.sh [--binary PATH] [--cpu NAME] [--base IMAGE] [--tag NAME]
#                             [--engine podman|buildah] [--mirror URL] [--context-only DIR] [--check]
#
#   --binary PATH   a mope binary built with --static-swift-stdlib (default: build one, swift build -c release
#                   --static-swift-stdlib with MOPE_PORTABLE=1 and --cpu's target, into .build/static/)
#   --cpu NAME      the CPU the built binary targets (default haswell: AVX2 and FMA, Intel since 2013, AMD since
#                   Zen; x86-64 runs anywhere but computes prompts tens of times slower; native: this machine's)
#   --base IMAGE    the base image: it must have libzmq5, libmicrohttpd12, libstdc++6 and /bin/sh (default:
#                   localhost/mope-base:bookworm, made once with debootstrap from the Debian mirror and
#                   imported; needs root and debootstrap)
#   --tag NAME      the image's name (default localhost/mope:latest, what the Kubernetes example overlay uses)
#   --engine NAME   podman (default) or buildah
#   --mirror URL    the Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   --context-only DIR  write the build context (the Containerfile and the binary as ./mope) into DIR and stop
#   --check         after building, run the image once: mope keygen inside it must print a key pair
#                   (podman only; MOPE_PODMAN_RUN_OPTIONS adds options to that podman run)
#
# Exit codes: 0 built, 1 a step failed (named on standard error), 2 usage.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
binary= base=localhost/mope-base:bookworm tag=localhost/mope:latest engine=podman
mirror=http://deb.debian.org/debian check=0 context_only= cpu=haswell
while [ $# -gt 0 ]; do
    case $1 in
        -h|--help) usage; exit 0 ;;
        --binary|--cpu|--base|--tag|--engine|--mirror|--context-only)
            [ $# -ge 2 ] && [ -n "$2" ] || { echo "error: $1 needs a value" >&2; usage >&2; exit 2; }
            case $1 in
                --binary) binary=$2 ;;
                --cpu) cpu=$2 ;;
                --base) base=$2 ;;
                --tag) tag=$2 ;;
                --engine) engine=$2 ;;
                --mirror) mirror=$2 ;;
                --context-only) context_only=$2 ;;
            esac
            shift 2 ;;
        --check) check=1; shift ;;
        *) echo "error: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
case $engine in
    podman|buildah) ;;
    *) echo "error: --engine is podman or buildah, not $engine" >&2; exit 2 ;;
esac
if [ "$check" = 1 ] && [ "$engine" != podman ]; then echo "error: --check needs --engine podman" >&2; exit 2; fi
step() { echo "== $*" >&2; }

# 1. The binary.
if [ -z "$binary" ]; then
    [[ $cpu =~ ^[a-z0-9_.-]+$ ]] || { echo "error: --cpu $cpu is not a CPU name" >&2; exit 2; }
    step "building mope (release, static Swift runtime, CPU $cpu)"
    (cd "$root" && MOPE_PORTABLE=1 swift build -c release --static-swift-stdlib --product mope \
        --scratch-path .build/static -Xswiftc -target-cpu -Xswiftc "$cpu")
    binary=$root/.build/static/release/mope
fi
[ -x "$binary" ] || { echo "error: $binary is not an executable file" >&2; exit 1; }
libraries=$(ldd "$binary" 2>&1 || true)
if [[ $libraries == *libswiftCore* ]]; then
    echo "error: $binary loads the Swift runtime from shared libraries: build it with --static-swift-stdlib" >&2
    exit 1
fi

if [ -n "$context_only" ]; then
    mkdir -p "$context_only"
    cp "$here/Containerfile" "$context_only/Containerfile"
    cp "$binary" "$context_only/mope"
    chmod 0755 "$context_only/mope"
    echo "wrote the build context to $context_only"
    exit 0
fi
command -v "$engine" > /dev/null || { echo "error: $engine is missing (apt-get install $engine)" >&2; exit 1; }

# 2. The base image.
if ! "$engine" image exists "$base" 2>/dev/null && ! "$engine" inspect --type image "$base" > /dev/null 2>&1; then
    if [ "$base" != localhost/mope-base:bookworm ]; then
        echo "error: the base image $base is not here (pull it, or leave --base out to make one)" >&2
        exit 1
    fi
    command -v podman > /dev/null || { echo "error: making the base image needs podman (podman import); or give --base" >&2; exit 1; }
    command -v debootstrap > /dev/null || { echo "error: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
    [ "$(id -u)" = 0 ] || { echo "error: making the base image with debootstrap needs root" >&2; exit 1; }
    rootfs=$(mktemp -d /tmp/mope-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    step "making $base: debootstrap bookworm (minbase, libzmq5, libmicrohttpd12) from $mirror"
    debootstrap --variant=minbase --include=libzmq5,libmicrohttpd12 bookworm "$rootfs" "$mirror" >&2
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    step "importing the root file system as $base"
    tar --numeric-owner -C "$rootfs" -c . | podman import --change 'CMD ["/bin/sh"]' - "$base" >&2
fi

# 3. The image: the Containerfile with the binary as its context.
context=$(mktemp -d /tmp/mope-context.XXXXXX)
trap 'rm -rf "$context" ${rootfs:+"$rootfs"}' EXIT
cp "$here/Containerfile" "$context/Containerfile"
cp "$binary" "$context/mope"
chmod 0755 "$context/mope"
step "building $tag from $base with $engine"
if [ "$engine" = podman ]; then
    podman build --pull=never --build-arg "BASE=$base" -t "$tag" -f "$context/Containerfile" "$context" >&2
else
    buildah bud --pull-never --build-arg "BASE=$base" -t "$tag" -f "$context/Containerfile" "$context" >&2
fi

# 4. Optionally, run it once.
if [ "$check" = 1 ]; then
    step "checking: mope keygen in $tag"
    # shellcheck disable=SC2086
    out=$(podman run --rm ${MOPE_PODMAN_RUN_OPTIONS:-} "$tag" keygen)
    [[ $out == public-key:* ]] || { echo "error: mope keygen in $tag printed: $out" >&2; exit 1; }
fi
echo "built $tag"
