#!/usr/bin/env bash
# Build (or reuse) the real kube-apiserver and etcd of Warden's test world.
#
#   tests/k8s/build.sh [kube-apiserver|kube-controller-manager|etcd|dex|all]   prints the path of each binary, one a line
#
# Each binary is built once per version from the official Go modules pinned in
# tests/k8s/{apiserver,etcd}/go.mod and tests/dex/go.mod, through the Go module proxy, into
#   ${WARDEN_BUILD_CACHE:-$HOME/.cache/warden}/bin/kube-apiserver-vX.Y.Z (and etcd-vX.Y.Z, dex-<version>)
# (and kube-controller-manager-vX.Y.Z) and reused after that. Go's module and build caches are its own (they persist as well).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${WARDEN_BUILD_CACHE:-$HOME/.cache/warden}"
bin="$cache/bin"
# GO names the toolchain; unset, `go` on PATH or the official install's /usr/local/go/bin/go.
if [ -z "${GO:-}" ]; then
  GO=go
  command -v go >/dev/null 2>&1 || GO=/usr/local/go/bin/go
fi
if ! command -v "$GO" >/dev/null 2>&1; then
  echo "build.sh: Go is not installed ($GO not found; Go >= 1.26 builds kube-apiserver)" >&2
  exit 3
fi

# The version of `module` that `dir`/go.mod requires.
required_version() {
  awk -v m="$2" '$1 == m && $2 ~ /^v/ {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' "$1/go.mod"
}

build() { # name dir module [package]
  local name="$1" dir="$2" module="$3" package="${4:-.}" version out ldflags=""
  version="$(required_version "$dir" "$module")"
  [ -n "$version" ] || { echo "build.sh: no version of $module in $dir/go.mod" >&2; exit 2; }
  out="$bin/$name-$version"
  if [ ! -x "$out" ]; then
    mkdir -p "$bin"
    if [ "$module" = k8s.io/kubernetes ]; then
      # What `kube-apiserver --version` and /version say, as a release build would.
      local pkg=k8s.io/component-base/version minor
      minor="${version#v1.}"; minor="${minor%%.*}"
      ldflags="-X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
      ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    fi
    echo "build.sh: building $name $version (first time only; minutes on 2 cores)" >&2
    local start=$SECONDS
    (cd "$dir" && CGO_ENABLED=0 nice -n 10 "$GO" build -trimpath \
        -ldflags "-s -w $ldflags" -o "$out.tmp.$$" "$package")
    mv -f "$out.tmp.$$" "$out"
    echo "build.sh: built $out in $((SECONDS - start))s" >&2
  fi
  echo "$out"
}

what="${1:-all}"
case "$what" in
  kube-apiserver) build kube-apiserver "$here/apiserver" k8s.io/kubernetes ;;
  kube-controller-manager)
    build kube-controller-manager "$here/apiserver" k8s.io/kubernetes ./controller-manager ;;
  etcd) build etcd "$here/etcd" go.etcd.io/etcd/server/v3 ;;
  # Dex publishes no semver tags the module proxy accepts (its v2 tags lack /v2), so
  # tests/dex/go.mod pins a commit's pseudo-version and names cmd/dex as its tool.
  dex) build dex "$here/../dex" github.com/dexidp/dex github.com/dexidp/dex/cmd/dex ;;
  all)
    build etcd "$here/etcd" go.etcd.io/etcd/server/v3
    build kube-apiserver "$here/apiserver" k8s.io/kubernetes
    build kube-controller-manager "$here/apiserver" k8s.io/kubernetes ./controller-manager
    build dex "$here/../dex" github.com/dexidp/dex github.com/dexidp/dex/cmd/dex
    ;;
  *) echo "usage: $0 [kube-apiserver|kube-controller-manager|etcd|dex|all]" >&2; exit 2 ;;
esac
