#!/usr/bin/env bash
# Build etcd, kube-apiserver and kubectl from the Go module proxy (no Docker, no
# prebuilt downloads) and cache them per version outside the repo. A binary that is
# already in the cache is never rebuilt, so this is cheap after the first run.
#
# Usage: hack/build-binaries.sh   # prints the bin folder (etcd, kube-apiserver, kubectl, helm)
# Env:   KUBE_VERSION (v1.36.3), ETCD_VERSION (v3.6.16), HELM_VERSION (v3.22.0),
#        PROMOTION_OPERATOR_CACHE (~/.cache/promotion-operator)
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
CACHE="${PROMOTION_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/promotion-operator}"
BIN="$CACHE/bin/kube-$KUBE_VERSION-etcd-$ETCD_VERSION"
HELM="$BIN/helm-$HELM_VERSION"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

log() { echo "build-binaries: $*" >&2; }

have_all() {
  [ -x "$BIN/etcd" ] && [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kubectl" ] && [ -x "$HELM" ]
}

if have_all; then
  ln -sf "$(basename "$HELM")" "$BIN/helm"
  echo "$BIN"
  exit 0
fi
command -v go >/dev/null || { log "go is required (https://go.dev/dl)"; exit 1; }
mkdir -p "$BIN"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

build_etcd() {
  [ -x "$BIN/etcd" ] && return 0
  log "building etcd $ETCD_VERSION (cold: a few minutes)"
  mkdir -p "$work/etcd" && cd "$work/etcd"
  cat >go.mod <<MOD
module promotion-operator.local/etcd-wrapper

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
  # server/v3 keeps etcd's main package at its module root
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$BIN/etcd.tmp" "$BIN/etcd"
}

build_kube() {
  [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kubectl" ] && return 0
  log "building kube-apiserver and kubectl $KUBE_VERSION (cold: 10-20 minutes on 2 cores)"
  mkdir -p "$work/kube" && cd "$work/kube"
  local gomod minor patch
  gomod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  minor="$(echo "$KUBE_VERSION" | cut -d. -f2)"
  patch="$(echo "$KUBE_VERSION" | cut -d. -f3)"
  {
    echo "module promotion-operator.local/kube-wrapper"
    echo
    echo "go $(sed -n 's/^go \(.*\)$/\1/p' "$gomod")"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    # every staging module k8s.io/X is published as k8s.io/X v0.<minor>.<patch>
    grep -oE 'k8s.io/[a-z0-9-]+ => ./staging/src/k8s.io/[a-z0-9-]+' "$gomod" |
      awk -v v="v0.$minor.$patch" '{print "replace " $1 " => " $1 " " v}'
  } >go.mod
  go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" "k8s.io/kubernetes/cmd/kubectl@$KUBE_VERSION" >&2
  local pkg=k8s.io/component-base/version
  local ldflags="-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
  go build -trimpath -ldflags "$ldflags" -o "$BIN/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  go build -trimpath -ldflags "$ldflags" -o "$BIN/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl
  mv "$BIN/kube-apiserver.tmp" "$BIN/kube-apiserver"
  mv "$BIN/kubectl.tmp" "$BIN/kubectl"
}

build_helm() {
  [ -x "$HELM" ] && return 0
  log "building helm $HELM_VERSION (cold: a few minutes)"
  GOBIN="$work/helm-bin" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$work/helm-bin/helm" "$HELM"
}

( build_etcd )
( build_kube )
( build_helm )
have_all || { log "build incomplete in $BIN"; exit 1; }
ln -sf "$(basename "$HELM")" "$BIN/helm"
echo "$BIN"
