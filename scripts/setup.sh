#!/usr/bin/env bash
# One-time (and safe to repeat) set-up of a Debian 12 controller, as root:
# apt packages for the simulated devices, a pinned Python virtualenv, and the
# collection made visible to Ansible as edgeml.greengrass.
# Sourced by scripts/demo.sh and scripts/test.sh; run it alone to prepare a machine.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export EDGEML_CACHE="${EDGEML_CACHE:-$HOME/.cache/edgeml}"
mkdir -p "$EDGEML_CACHE"

APT_PACKAGES=(debootstrap systemd-container socat openssh-client rsync iproute2 util-linux git)
# GStreamer's RTSP server, run with the system Python, plays an IP camera for tests/video/test_rtsp_source.py.
APT_PACKAGES+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good)
# javac builds the stand-in Greengrass V2 nucleus (test equipment) from source.
command -v javac >/dev/null 2>&1 || APT_PACKAGES+=(default-jdk-headless)

need_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  if [[ $EUID -ne 0 ]]; then
    echo "setup: missing Debian packages ${need_apt[*]}; run this as root or install them first" >&2
    exit 2
  fi
  echo "setup: installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The simulated devices share this machine's kernel, and Greengrass requires hardlink/symlink
# protection (systemd-based distributions turn it on by default; some container hosts don't).
if [[ $EUID -eq 0 ]]; then
  for setting in fs.protected_hardlinks fs.protected_symlinks; do
    [[ "$(sysctl -n "$setting" 2>/dev/null)" == 1 ]] || sysctl -qw "$setting=1" ||
      echo "setup: cannot set $setting=1; Greengrass core tests will fail" >&2
  done
fi

# Each simulated device runs its own systemd, which takes inotify instances from the host's per-user
# budget (128 by default): 16 devices plus a test run exhaust it ("Too many open files" at boot).
if [[ $EUID -eq 0 ]]; then
  (($(sysctl -n fs.inotify.max_user_instances) >= 8192)) || sysctl -qw fs.inotify.max_user_instances=8192
  (($(sysctl -n fs.inotify.max_user_watches) >= 524288)) || sysctl -qw fs.inotify.max_user_watches=524288
fi

VENV="$REPO_ROOT/.venv"
stamp="$VENV/.requirements.sha256"
want="$(cat "$REPO_ROOT/requirements-dev.txt" "$REPO_ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "setup: building the controller virtualenv in $VENV"
  python3 -m venv "$VENV"
  export PIP_CACHE_DIR="$EDGEML_CACHE/pip"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REPO_ROOT/requirements-dev.txt" -c "$REPO_ROOT/constraints.txt"
  echo "$want" > "$stamp"
fi

# Ansible finds collections only under .../ansible_collections/<namespace>/<name>.
# A per-clone link keeps two clones from pointing at each other.
link_dir="$REPO_ROOT/.collections/ansible_collections/edgeml"
mkdir -p "$link_dir"
ln -sfn "$REPO_ROOT" "$link_dir/greengrass"

export PATH="$VENV/bin:$PATH"
export ANSIBLE_CONFIG="$REPO_ROOT/ansible.cfg"
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
