#!/usr/bin/env bash
# The README's quick start played on a fresh Debian 12 machine: a privileged container made
# from a bare bookworm rootfs (no Docker, no iptables, no dynharness), given a fresh clone.
# In it, as the README says: the install command (in a venv, as Debian's own Python wants),
# the main job on the local backend, the Docker step (`sudo bash .ci/docker-setup.sh`), and a
# `--backend docker` run on the engine that step started (Docker in Docker). Every step's
# output is printed; the first failing step fails the check. The container, its volume and
# the work folder are removed on every exit path.
#
#   bash .ci/fresh-machine-check.sh          # as root, on a host with a Docker engine
#
# Not part of .ci/run: it fetches Debian and PyPI packages and takes 5-10 minutes. Results of
# the last run are in docs/docker-ssh.md ("The Docker step on a fresh machine").
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

REPO=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
WORK=$(mktemp -d /tmp/dh-fresh.XXXXXX)
NAME="dh-fresh-check-$$"
IMAGE="dh-fresh-debian:bookworm"       # a bare Debian, cached between checks
MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}

say() { echo "fresh-machine-check: $*"; }
cleanup() {
  docker rm -f -v "$NAME" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

timeout 10 docker info >/dev/null 2>&1 || { echo "fresh-machine-check: error: no Docker engine answers here (sudo bash .ci/docker-setup.sh)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "fresh-machine-check: error: debootstrap missing (apt-get install debootstrap)" >&2; exit 1; }

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  say "making a bare Debian bookworm (debootstrap from $MIRROR)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,sudo bookworm \
    "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log"; exit 1; }
  tar -C "$WORK/rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
  rm -rf "$WORK/rootfs"
fi

say "a fresh clone of $(git -C "$REPO" rev-parse --short HEAD)"
git clone -q "$REPO" "$WORK/dynharness"

# This host's pip settings, package folders and local CA certificates come along (a machine of the same kind).
pip_mounts=()
for p in /etc/pip.conf /etc/xdg/pip /opt/wheels /opt/pypi /opt/pypi-more /usr/local/share/ca-certificates; do
  [ -e "$p" ] && pip_mounts+=(-v "$p:$p:ro")
done
# What --privileged gives, spelled out: --privileged itself cannot start where this host's
# capability bounding set lacks one (these VMs have no CAP_SYS_RESOURCE). Its own cgroup
# namespace, and a volume for the inner engine's images (overlay2 on ext4, not on overlayfs).
caps=(--cap-add ALL)
capsh --has-b=cap_sys_resource >/dev/null 2>&1 || caps+=(--cap-drop SYS_RESOURCE)
docker run -d "${caps[@]}" --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
  --security-opt systempaths=unconfined --device-cgroup-rule 'a *:* rwm' --cgroupns=private \
  --name "$NAME" --label dynharness.fresh-check=1 \
  -v /var/lib/docker -v "$WORK/dynharness:/root/dynharness" "${pip_mounts[@]}" \
  -e PIP_FIND_LINKS -e PIP_DEFAULT_TIMEOUT -e PIP_CERT -e PIP_DISABLE_PIP_VERSION_CHECK \
  "$IMAGE" sleep infinity >/dev/null

in_machine() {  # step title, then a bash script run as root in the clone
  local title=$1; shift
  say "== $title"
  local start=$SECONDS
  docker exec -w /root/dynharness "$NAME" bash -c "set -euo pipefail; $*"
  say "   ($title: $((SECONDS - start)) s)"
}

# What a booted machine has and a container lacks: /sys and the cgroup file systems writable
# (cgroup v1 or v2), this host's CA certificates (a machine of this kind trusts its package
# proxy), and, on v2, a root cgroup holding no processes, so the inner engine can
# hand controllers to its containers (as Docker's own dind image does).
in_machine "sysfs and cgroups as a booted machine has them" '
  mount -o remount,rw /sys
  for m in /sys/fs/cgroup /sys/fs/cgroup/*; do mountpoint -q "$m" && mount -o remount,bind,rw "$m"; done
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mkdir -p /sys/fs/cgroup/init
    xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
    sed -e "s/ / +/g" -e "s/^/+/" < /sys/fs/cgroup/cgroup.controllers > /sys/fs/cgroup/cgroup.subtree_control
  fi
  update-ca-certificates >/dev/null 2>&1
  echo "cgroups: $(stat -fc %T /sys/fs/cgroup)"'
in_machine "the machine before: no Docker, no iptables" '
  . /etc/os-release; echo "$PRETTY_NAME, $(python3 --version)"
  for c in docker dockerd iptables debootstrap dynharness; do
    command -v $c >/dev/null && echo "$c: present" || echo "$c: missing"; done'
in_machine "install (README: python3 -m pip install -e \".[test]\", in a venv)" '
  python3 -m venv /root/venv && . /root/venv/bin/activate &&
  python3 -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Running pip as" || true
  . /root/venv/bin/activate && dynharness --help >/dev/null && echo "dynharness: $(command -v dynharness)"'
in_machine "the Docker step (README: sudo bash .ci/docker-setup.sh)" 'sudo bash .ci/docker-setup.sh'
in_machine "the engine it left running" 'docker info --format "{{.ServerVersion}} {{.Driver}}" && docker images --format "{{.Repository}}:{{.Tag}} {{.Size}}"'
in_machine "the main job on the local default (README: dynharness run)" '
  . /root/venv/bin/activate && dynharness run --no-display | tail -25'
in_machine "the same on Docker (dynharness run --backend docker)" '
  . /root/venv/bin/activate && dynharness run --backend docker --no-display | tail -30'
in_machine "nothing left behind" '
  . /root/venv/bin/activate && docker ps -a --format "{{.Names}}" | wc -l | sed "s/^/containers: /" &&
  dynharness cleanup --dry-run 2>&1 | tail -3 || true'
say "ok: every step passed"
