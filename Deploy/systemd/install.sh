#!/usr/bin/env bash
# Installs the mope systemd units on this machine (run as root), or only renders them (--render-only).
#
#   Deploy/systemd/install.sh [--binary PATH] [--unit-dir DIR] [--config-dir DIR] [--render-only]
#
#   --binary PATH      the mope binary the units run (default /usr/local/bin/mope; it must exist, absolute path:
#                      systemd does not take a variable as the program)
#   --unit-dir DIR     where the units go (default /etc/systemd/system)
#   --config-dir DIR   the settings folder the units read (default /etc/mope): mope.env, coordinator.env,
#                      worker.env, serve.env (copied from Deploy/systemd when absent, never overwritten) and keys/
#   --render-only      write the units and the settings files only: no user, no folders, no systemctl
#
# Without --render-only it also creates the system user mope (home /var/lib/mope, no shell), the folder
# /var/lib/mope/models for the model files, and runs systemctl daemon-reload. It never starts a unit and never
# makes keys: see Deploy/systemd/README.md for the steps from nothing to a first answer.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
binary=/usr/local/bin/mope unit_dir=/etc/systemd/system config_dir=/etc/mope render_only=0
while [ $# -gt 0 ]; do
    case $1 in
        -h|--help) usage; exit 0 ;;
        --binary|--unit-dir|--config-dir)
            [ $# -ge 2 ] && [ -n "$2" ] || { echo "error: $1 needs a value" >&2; usage >&2; exit 2; }
            case $1 in
                --binary) binary=$2 ;;
                --unit-dir) unit_dir=$2 ;;
                --config-dir) config_dir=$2 ;;
            esac
            shift 2 ;;
        --render-only) render_only=1; shift ;;
        *) echo "error: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
for path in "$binary" "$config_dir"; do
    case $path in
        /*) ;;
        *) echo "error: $path is not an absolute path" >&2; exit 2 ;;
    esac
    case $path in
        *[[:space:]\|\&\;\$\\%]*) echo "error: $path has a character the units cannot carry" >&2; exit 2 ;;
    esac
done
[ -x "$binary" ] || { echo "error: $binary is not an executable file (build mope, or give --binary)" >&2; exit 1; }
if [ "$render_only" = 0 ] && [ "$(id -u)" != 0 ]; then
    echo "error: installing needs root (or give --render-only)" >&2
    exit 1
fi

mkdir -p "$unit_dir" "$config_dir"
render() { sed -e "s|/usr/local/bin/mope|$binary|g" -e "s|/etc/mope|$config_dir|g" "$1"; }
for unit in mope-coordinator.service 'mope-worker@.service' mope-serve.service; do
    render "$here/$unit" > "$unit_dir/$unit.tmp"
    chmod 0644 "$unit_dir/$unit.tmp"
    mv "$unit_dir/$unit.tmp" "$unit_dir/$unit"
    echo "wrote $unit_dir/$unit"
done
for file in mope.env coordinator.env worker.env serve.env; do
    if [ -e "$config_dir/$file" ]; then
        echo "kept $config_dir/$file"
    else
        render "$here/$file" > "$config_dir/$file"
        chmod 0644 "$config_dir/$file"
        echo "wrote $config_dir/$file"
    fi
done
[ "$render_only" = 1 ] && exit 0

if ! getent passwd mope > /dev/null; then
    useradd --system --home-dir /var/lib/mope --no-create-home --shell /usr/sbin/nologin --user-group mope
    echo "created the system user mope"
fi
install -d -m 0750 -o mope -g mope /var/lib/mope
install -d -m 0750 -o root -g mope /var/lib/mope/models
systemctl daemon-reload
echo "installed; next: the config, the keys and the models (Deploy/systemd/README.md), then systemctl start"
