#!/usr/bin/env bash
# Build the local parts of the sandbox from the Go module proxy (no Docker, no prebuilt
# downloads), CGO_ENABLED=0, cached per version outside the repo. A binary that is already
# in the cache is never rebuilt, so this is cheap after the first run, and a lock per build
# means two concurrent runs (other worktrees, parallel tests) never build the same thing twice.
#
# Usage: hack/build-binaries.sh [NAME...]
#   Prints the bin folder, which then holds every NAME (a file or a link into the cache).
#   Without NAME: everything, the parts today's tests need first:
#     etcd kube-apiserver kubectl helm                 (control plane, chart tests)
#     kube-controller-manager kube-scheduler kwok kwokctl  (workloads roll out on fake nodes)
#     kustomize argocd                                 (a real Argo CD: repo-server needs kustomize)
#     toxiproxy-server toxiproxy-cli                   (network faults between parts)
# Env:   KUBE_VERSION (v1.36.3), ETCD_VERSION (v3.6.16), HELM_VERSION (v3.22.0),
#        KWOK_VERSION (v0.7.0), KUSTOMIZE_VERSION (v5.8.1), TOXIPROXY_VERSION (v2.5.0),
#        ARGOCD_VERSION (v3.2.11: v3.2.12 does not compile, its controller/cache calls a
#        settings.ValidateExternalURL the tag lacks; v3.3+ replace gitops-engine with a local
#        path the proxy cannot serve), PROMOTION_OPERATOR_CACHE (~/.cache/promotion-operator)
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KWOK_VERSION="${KWOK_VERSION:-v0.7.0}"
KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-v5.8.1}"
TOXIPROXY_VERSION="${TOXIPROXY_VERSION:-v2.5.0}"
ARGOCD_VERSION="${ARGOCD_VERSION:-v3.2.11}"
CACHE="${PROMOTION_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/promotion-operator}"
BIN="$CACHE/bin/kube-$KUBE_VERSION-etcd-$ETCD_VERSION"
# Tools that do not depend on the Kubernetes version live apart, so a KUBE_VERSION bump
# does not rebuild Argo CD; BIN links to them.
TOOLS="$CACHE/tools"
LOCKS="$CACHE/locks"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

ALL=(etcd kube-apiserver kubectl helm
  kube-controller-manager kube-scheduler kwok kwokctl
  kustomize argocd toxiproxy-server toxiproxy-cli)

log() { echo "build-binaries: $*" >&2; }

# The file a name resolves to in the cache.
target_of() {
  case "$1" in
    etcd | kube-apiserver | kubectl | kube-controller-manager | kube-scheduler) echo "$BIN/$1" ;;
    helm) echo "$BIN/helm-$HELM_VERSION" ;;
    kwok | kwokctl) echo "$TOOLS/kwok-$KWOK_VERSION/$1" ;;
    kustomize) echo "$TOOLS/kustomize-$KUSTOMIZE_VERSION/kustomize" ;;
    toxiproxy-server | toxiproxy-cli) echo "$TOOLS/toxiproxy-$TOXIPROXY_VERSION/$1" ;;
    argocd) echo "$TOOLS/argocd-$ARGOCD_VERSION/argocd" ;;
    *) return 1 ;;
  esac
}

# The build that makes a name, and so the lock it takes (one per build and version).
unit_of() {
  case "$1" in
    etcd) echo "etcd-$ETCD_VERSION" ;;
    kube-apiserver | kubectl) echo "kube-$KUBE_VERSION" ;;
    kube-controller-manager | kube-scheduler) echo "kube-workloads-$KUBE_VERSION" ;;
    helm) echo "helm-$HELM_VERSION" ;;
    kwok | kwokctl) echo "kwok-$KWOK_VERSION" ;;
    kustomize) echo "kustomize-$KUSTOMIZE_VERSION" ;;
    toxiproxy-server | toxiproxy-cli) echo "toxiproxy-$TOXIPROXY_VERSION" ;;
    argocd) echo "argocd-$ARGOCD_VERSION" ;;
  esac
}

names_of_unit() {
  local name
  for name in "${ALL[@]}"; do
    [ "$(unit_of "$name")" = "$1" ] && echo "$name"
  done
  return 0
}

unit_done() {
  local name
  for name in $(names_of_unit "$1"); do
    [ -x "$(target_of "$name")" ] || return 1
  done
}

# Point BIN/name at its cached file; a rename, so a concurrent reader never sees it missing.
link() {
  local name="$1" target
  target="$(target_of "$name")"
  [ "$target" = "$BIN/$name" ] && return 0
  [ "$(readlink "$BIN/$name" 2>/dev/null)" = "$target" ] && return 0
  ln -sfn "$target" "$BIN/.$name.$$"
  mv -Tf "$BIN/.$name.$$" "$BIN/$name"
}

# Move a finished build into the cache in one rename.
install_bin() { # built-file target
  mkdir -p "$(dirname "$2")"
  mv -f "$1" "$2.tmp.$$"
  mv -f "$2.tmp.$$" "$2"
}

build_etcd() {
  cat >go.mod <<MOD
module promotion-operator.local/etcd-wrapper

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
  # server/v3 keeps etcd's main package at its module root
  go build -trimpath -ldflags "-s -w" -o etcd go.etcd.io/etcd/server/v3
  install_bin etcd "$(target_of etcd)"
}

# A wrapper module for k8s.io/kubernetes: it cannot be required as is, because its go.mod
# replaces every staging module k8s.io/X with a local path; each is published as
# k8s.io/X v0.<minor>.<patch>.
kube_wrapper() {
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
    grep -oE 'k8s.io/[a-z0-9-]+ => ./staging/src/k8s.io/[a-z0-9-]+' "$gomod" |
      awk -v v="v0.$minor.$patch" '{print "replace " $1 " => " $1 " " v}'
  } >go.mod
}

build_kube_cmds() { # name...
  kube_wrapper
  local name minor pkg=k8s.io/component-base/version ldflags
  minor="$(echo "$KUBE_VERSION" | cut -d. -f2)"
  ldflags="-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
  local cmds=()
  for name in "$@"; do cmds+=("k8s.io/kubernetes/cmd/$name@$KUBE_VERSION"); done
  go get "${cmds[@]}" >&2
  for name in "$@"; do
    go build -trimpath -ldflags "$ldflags" -o "$name" "k8s.io/kubernetes/cmd/$name"
  done
  for name in "$@"; do
    install_bin "$name" "$(target_of "$name")"
  done
}

build_kube() { build_kube_cmds kube-apiserver kubectl; }
build_kube_workloads() { build_kube_cmds kube-controller-manager kube-scheduler; }

build_helm() {
  GOBIN="$PWD/out" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  install_bin out/helm "$(target_of helm)"
}

build_kwok() {
  GOBIN="$PWD/out" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
  install_bin out/kwok "$(target_of kwok)"
  install_bin out/kwokctl "$(target_of kwokctl)"
}

build_kustomize() {
  GOBIN="$PWD/out" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
  install_bin out/kustomize "$(target_of kustomize)"
}

build_toxiproxy() {
  GOBIN="$PWD/out" go install -trimpath \
    -ldflags "-s -w -X github.com/Shopify/toxiproxy/v2.Version=${TOXIPROXY_VERSION#v}" \
    "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION" \
    "github.com/Shopify/toxiproxy/v2/cmd/cli@$TOXIPROXY_VERSION"
  install_bin out/server "$(target_of toxiproxy-server)"
  install_bin out/cli "$(target_of toxiproxy-cli)"
}

# Argo CD's go.mod pins k8s.io staging modules and a few others with `replace`, which a
# dependency's go.mod cannot impose, so the wrapper copies that block. One binary serves
# every component, chosen by the name it runs as (ARGOCD_BINARY_NAME).
build_argocd() {
  local module=github.com/argoproj/argo-cd/v3 gomod
  gomod="$(go mod download -json "$module@$ARGOCD_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  {
    echo "module promotion-operator.local/argocd-wrapper"
    echo
    echo "go $(sed -n 's/^go \(.*\)$/\1/p' "$gomod")"
    echo
    echo "require $module $ARGOCD_VERSION"
    echo
    awk '/^replace \($/ {inside = 1; print; next}
         inside && /^\)$/ {inside = 0; print; next}
         inside || /^replace [^(]/ {print}' "$gomod"
  } >go.mod
  if grep -qE '=> *\.{0,2}/' go.mod; then
    log "argocd $ARGOCD_VERSION replaces a module with a local path the proxy cannot serve; use v3.2.x"
    return 1
  fi
  go get "$module@$ARGOCD_VERSION" >&2
  local pkg=$module/common ldflags
  ldflags="-s -w -X $pkg.version=${ARGOCD_VERSION#v} -X $pkg.gitTag=$ARGOCD_VERSION"
  ldflags="$ldflags -X $pkg.buildDate=1970-01-01T00:00:00Z -X $pkg.gitTreeState=clean"
  ldflags="$ldflags -X $pkg.kubectlVersion=$(go list -m -f '{{.Version}}' k8s.io/client-go)"
  go build -trimpath -ldflags "$ldflags" -o argocd "$module/cmd"
  install_bin argocd "$(target_of argocd)"
}

# Build one unit under its lock; whoever waited finds it built and does nothing.
run_unit() {
  local unit="$1" fd start build
  unit_done "$unit" && return 0
  command -v go >/dev/null || { log "go is required (https://go.dev/dl)"; exit 1; }
  mkdir -p "$LOCKS"
  exec {fd}>"$LOCKS/$unit.lock"
  if ! flock -n "$fd"; then
    log "waiting for another run that is building $unit"
    flock "$fd"
  fi
  if ! unit_done "$unit"; then
    log "building $unit (a few minutes on 2 cores; cached afterwards)"
    start=$SECONDS
    build="build_${unit%-v*}"
    mkdir "$work/$unit"
    # a plain subshell (not in a condition, where errexit would be off): a failed step
    # ends the script, and with it the lock
    (
      cd "$work/$unit"
      "${build//-/_}"
    )
    log "built $unit in $((SECONDS - start)) s"
  fi
  exec {fd}>&-
}

names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")
for name in "${names[@]}"; do
  target_of "$name" >/dev/null || { log "unknown binary $name (known: ${ALL[*]})"; exit 2; }
done
mkdir -p "$BIN"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for name in "${names[@]}"; do
  run_unit "$(unit_of "$name")"
  link "$name"
done
echo "$BIN"
