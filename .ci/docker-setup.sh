#!/usr/bin/env bash
# Get a Docker engine answering for the Docker and SSH backends (the README's Docker step; CI
# runs it too): installs docker.io, iptables and debootstrap when missing (as root, waiting up to
# APT_LOCK_WAIT seconds, default 300, for another apt or dpkg to finish), starts dockerd when no
# engine answers and waits for it (bounded), then builds the node image when the dynharness
# install can (its Python packages); without them it says so and the first --backend docker run
# builds the image. It needs nothing but bash and Debian's packages:
#
#   sudo bash .ci/docker-setup.sh
set -euo pipefail

APT_LOCK_WAIT="${APT_LOCK_WAIT:-300}"
# apt and dpkg hold POSIX (fcntl) locks on these files while they run
APT_LOCKS="${APT_LOCKS:-/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock}"
DOCKERD_WAIT="${DOCKERD_WAIT:-60}"
export PATH="$PATH:/usr/sbin:/sbin"     # dockerd, iptables and debootstrap live there

say() { echo "docker-setup: $*"; }
fail() { echo "docker-setup: error: $*" >&2; exit 1; }

engine_up() { timeout 10 docker info >/dev/null 2>&1; }

# The first lock file another process holds (printed; exit 0), or exit 1 when all are free.
# Probed as apt does, with an fcntl write lock taken and let go at once (Python's standard
# library, not the project's packages). Without python3, apt's own DPkg::Lock::Timeout waits.
apt_lock_holder() {
  command -v python3 >/dev/null 2>&1 || return 1
  # shellcheck disable=SC2086  # the list is space-separated on purpose
  python3 - $APT_LOCKS <<'PY'
import fcntl, os, sys
for path in sys.argv[1:]:
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        continue
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(path)
        sys.exit(0)
    finally:
        os.close(fd)
sys.exit(1)
PY
}

# Wait (at most APT_LOCK_WAIT seconds) until no other apt or dpkg holds its locks.
wait_for_apt() {
  local waited=0 holder
  while holder=$(apt_lock_holder); do
    if [ "$waited" -ge "$APT_LOCK_WAIT" ]; then
      fail "another apt or dpkg still holds $holder after ${APT_LOCK_WAIT}s; run this again once it is done (APT_LOCK_WAIT=SECONDS waits longer)"
    fi
    if [ "$waited" -eq 0 ]; then
      say "waiting for another apt or dpkg to finish (it holds $holder; at most ${APT_LOCK_WAIT}s)"
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

install_missing() {
  local missing=()
  command -v docker >/dev/null 2>&1 || missing+=(docker.io)
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  [ ${#missing[@]} -gt 0 ] || return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  [ "$(id -u)" -eq 0 ] || fail "${missing[*]} missing and installing them needs root: sudo bash $0"
  export DEBIAN_FRONTEND=noninteractive
  local lock=(-o "DPkg::Lock::Timeout=$APT_LOCK_WAIT")
  say "installing ${missing[*]} (log: /tmp/docker-setup-apt.log)"
  wait_for_apt
  apt-get "${lock[@]}" update -qq >/tmp/docker-setup-apt.log 2>&1 || { tail -20 /tmp/docker-setup-apt.log; fail "apt-get update failed"; }
  wait_for_apt
  apt-get "${lock[@]}" install -y -qq "${missing[@]}" >>/tmp/docker-setup-apt.log 2>&1 \
    || { tail -20 /tmp/docker-setup-apt.log; fail "apt-get install ${missing[*]} failed"; }
}

start_engine() {
  engine_up && return 0
  if [ -z "${DOCKER_HOST:-}" ]; then
    [ "$(id -u)" -eq 0 ] || fail "no Docker engine answers and starting dockerd needs root: sudo bash $0"
    say "starting dockerd (log: /tmp/dockerd.log)"
    setsid nohup dockerd >/tmp/dockerd.log 2>&1 < /dev/null &
  fi
  local waited=0
  until engine_up; do
    if [ "$waited" -ge "$DOCKERD_WAIT" ]; then
      tail -20 /tmp/dockerd.log 2>/dev/null || true
      fail "no Docker engine answers after ${DOCKERD_WAIT}s (dockerd log above)"
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

# Build (or confirm the cache of) the node image now, so a first run or a test run does not
# wait for it: with DYNHARNESS_PYTHON (default: python3) when it has dynharness's packages.
build_image() {
  local py="${DYNHARNESS_PYTHON:-python3}"
  if ! (cd "$(dirname "$0")/.." && "$py" -c 'import docker, rich, harness.cli' >/dev/null 2>&1); then
    say "the node image is not built now: $py lacks dynharness's packages (activate its venv and run: dynharness image build); the first --backend docker run builds it"
    return 0
  fi
  (cd "$(dirname "$0")/.." && "$py" -m harness image build)
}

main() {
  install_missing
  start_engine
  docker version --format 'Docker engine {{.Server.Version}} answers'
  build_image
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
