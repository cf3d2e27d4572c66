#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine for the demo and the tests; cheap when everything is
# there.
#  - Debian packages for the real local parts: git, the distribution registry, sshd, redis
#    (Argo CD's cache), docker and debootstrap (the operator image and its local base)
#  - dockerd, started if it is not running
#  - a virtualenv in .venv with the package and its dev tools
#  - etcd, kube-apiserver, kubectl, helm, Argo CD, kwok... built from the Go module proxy
#    (hack/build-binaries.sh, cached outside the repo)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi
need=()
command -v git >/dev/null || need+=(git)
command -v docker-registry >/dev/null || need+=(docker-registry)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v redis-server >/dev/null || need+=(redis-server)
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >&2
fi

# dockerd: through systemd where it runs the machine, else started by hand (containers,
# CI VMs); its log goes next to the other daemons' logs.
if ! "${sudo[@]}" docker info >/dev/null 2>&1; then
  echo "setup: starting dockerd" >&2
  if [ -d /run/systemd/system ]; then
    "${sudo[@]}" systemctl start docker >&2
  else
    "${sudo[@]}" setsid sh -c 'exec dockerd >>/var/log/dockerd.log 2>&1' </dev/null &
  fi
  for _ in $(seq 60); do
    "${sudo[@]}" docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  "${sudo[@]}" docker info >/dev/null 2>&1 || {
    echo "setup: dockerd did not start; see /var/log/dockerd.log" >&2
    exit 1
  }
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml sandbox/pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip >&2
  .venv/bin/pip install -q -e '.[dev]' -e ./sandbox >&2
  touch "$stamp"
fi

bash hack/build-binaries.sh >/dev/null
