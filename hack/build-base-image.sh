#!/usr/bin/env bash
# Build a Debian base image without any image registry: debootstrap from a Debian mirror,
# then `docker import`. For machines where Docker Hub is unreachable but the Debian mirror is
# not; elsewhere the Dockerfile's public default (debian:bookworm-slim) does the same job.
# Cached as a local tag: a second run only checks that the tag exists.
#
# Usage: hack/build-base-image.sh   # prints the image tag (for --build-arg BASE_IMAGE=...)
# Env:   BASE_SUITE (bookworm), DEBIAN_MIRROR (http://deb.debian.org/debian),
#        DEBIAN_SECURITY_MIRROR (http://deb.debian.org/debian-security),
#        BASE_IMAGE_TAG (localhost/promotion-operator-base:debian-<suite>-<hash of this script>,
#        so a changed recipe builds a new base instead of reusing a stale one)
#
# The image trusts the certificate authorities this machine added in
# /usr/local/share/ca-certificates, so that apt and pip inside builds work behind the same
# TLS-intercepting proxy the machine itself uses. It is a local build base, not for publishing.
set -euo pipefail

SUITE="${BASE_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
recipe="$(cat "$0"; echo "$SUITE $MIRROR $SECURITY_MIRROR")"
TAG="${BASE_IMAGE_TAG:-localhost/promotion-operator-base:debian-$SUITE-$(echo "$recipe" | sha256sum | cut -c1-12)}"

log() { echo "build-base-image: $*" >&2; }
if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi

if "${sudo[@]}" docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "$TAG"
  exit 0
fi
debootstrap="$(command -v debootstrap || echo /usr/sbin/debootstrap)"
[ -x "$debootstrap" ] || { log "debootstrap is required (hack/setup.sh installs it)"; exit 1; }

# One build at a time, so two callers do not both debootstrap.
lock="${TMPDIR:-/tmp}/promotion-operator-base-image.lock"
exec {fd}>"$lock"
flock "$fd"
if "${sudo[@]}" docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "$TAG"
  exit 0
fi

root="$(mktemp -d)"
trap '"${sudo[@]}" rm -rf "$root"' EXIT
start=$SECONDS
log "debootstrap $SUITE from $MIRROR (cold: a few minutes)"
"${sudo[@]}" "$debootstrap" --variant=minbase --include=ca-certificates \
  "$SUITE" "$root/rootfs" "$MIRROR" >&2

"${sudo[@]}" tee "$root/rootfs/etc/apt/sources.list" >/dev/null <<LIST
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
LIST
# What the official slim image does (debuerreotype): no recommends, no downloaded .debs or
# package caches left in a layer, no docs, man pages or translations.
"${sudo[@]}" tee "$root/rootfs/etc/apt/apt.conf.d/90-image" >/dev/null <<'CONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::GzipIndexes "true";
Acquire::CompressionTypes::Order:: "gz";
CONF
"${sudo[@]}" tee "$root/rootfs/etc/dpkg/dpkg.cfg.d/90-image" >/dev/null <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
CONF
# and the same for what debootstrap already installed
"${sudo[@]}" find "$root/rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
"${sudo[@]}" rm -rf "$root/rootfs/usr/share/man/"* "$root/rootfs/usr/share/info/"* \
  "$root/rootfs/usr/share/locale/"*
shopt -s nullglob
extra=(/usr/local/share/ca-certificates/*.crt)
if [ ${#extra[@]} -gt 0 ]; then
  "${sudo[@]}" cp "${extra[@]}" "$root/rootfs/usr/local/share/ca-certificates/"
  "${sudo[@]}" chroot "$root/rootfs" update-ca-certificates >&2
fi
"${sudo[@]}" chroot "$root/rootfs" apt-get clean
"${sudo[@]}" rm -rf "$root/rootfs/var/lib/apt/lists/"* "$root/rootfs/var/log/"*.log \
  "$root/rootfs/var/cache/debconf/"*-old

"${sudo[@]}" tar --numeric-owner -C "$root/rootfs" -c . |
  "${sudo[@]}" docker import --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase $SUITE $MIRROR" - "$TAG" >&2
log "built $TAG in $((SECONDS - start)) s"
echo "$TAG"
