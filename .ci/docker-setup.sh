#!/usr/bin/env bash
# Make a Docker engine answer for the Docker and SSH backend tests (called from .ci/run).
# Installs docker.io, iptables and debootstrap when missing, starts dockerd when no engine answers,
# waits (bounded) for it, then builds the node image so the tests find it cached.
set -euo pipefail
cd "$(dirname "$0")/.."

engine_up() { timeout 10 docker info >/dev/null 2>&1; }

missing=()
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/tmp/docker-setup-apt.log 2>&1 || { tail -20 /tmp/docker-setup-apt.log; exit 1; }
fi

if ! engine_up; then
  if [ -z "${DOCKER_HOST:-}" ]; then
    echo "starting dockerd (log: /tmp/dockerd.log)"
    PATH="$PATH:/usr/sbin:/sbin" setsid nohup dockerd >/tmp/dockerd.log 2>&1 < /dev/null &
  fi
  for _ in $(seq 1 60); do engine_up && break; sleep 1; done
  engine_up || { echo "no Docker engine answers after 60 s; dockerd log:"; tail -20 /tmp/dockerd.log 2>/dev/null; exit 1; }
fi
docker version --format 'Docker engine {{.Server.Version}} answers'

# Build (or confirm the cache of) the node image now, so test time is test time.
python3 -m harness image build
