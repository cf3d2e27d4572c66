#!/usr/bin/env bash
# Prepare a fresh machine for the demo and the tests; cheap when everything is there.
#  - Debian packages for the real local parts: git, the distribution registry, sshd
#  - a virtualenv in .venv with the package and its dev tools
#  - etcd, kube-apiserver and kubectl built from the Go module proxy (cached)
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v git >/dev/null || need+=(git)
command -v docker-registry >/dev/null || need+=(docker-registry)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v htpasswd >/dev/null || need+=(apache2-utils)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >&2
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
