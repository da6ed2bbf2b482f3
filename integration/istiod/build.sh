#!/usr/bin/env bash
# build.sh — build (once, cached) an unpatched istiod and a bare kube-apiserver, and make etcd available.
#
#   build.sh [all|pilot-discovery|kube-apiserver|etcd]...   (default all)
#
# Prints on stdout, for `eval "$(build.sh)"`:
#   export PILOT_DISCOVERY_BIN=... KUBE_APISERVER_BIN=... ETCD_BIN=...
#
# - pilot-discovery: istio.io/istio/pilot/cmd/pilot-discovery from the module in ./build (go.mod/go.sum pinned), or
#                    with ISTIOD_ISTIO=NAME from ./versions/NAME (other Istio lines, for make e2e-matrix)
# - kube-apiserver:  k8s.io/kubernetes/cmd/kube-apiserver v1.36.1 (staging replaced by v0.36.1) from ./kapi
# - etcd:            `etcd` on PATH, else Debian's etcd-server package (apt-get, needs root or sudo)
# Binaries go to $REGISTRY_ADAPTER_CACHE/istiod/ (default $HOME/.cache/registry-adapter/istiod/), named after a
# hash of the module's go.mod+go.sum+tools.go, the Go version and the build flags: rebuilt only when one changes.
# Concurrent callers serialize on a flock; binaries are built under a temporary name and moved into place.
#
# Environment: REGISTRY_ADAPTER_CACHE, ISTIOD_ISTIO (a directory of ./versions), PILOT_DISCOVERY_BIN / KUBE_APISERVER_BIN / ETCD_BIN (use these instead),
#              BUILD_NICE (default 10), ISTIOD_NO_APT=1 (never run apt-get; fail if etcd is missing).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

BUILD_FLAGS=(-trimpath -ldflags '-s -w')

# component -> module dir, main package
pilot_dir=$ISTIOD_DIR/build
if [ -n "${ISTIOD_ISTIO:-}" ]; then
  pilot_dir=$ISTIOD_DIR/versions/$ISTIOD_ISTIO
  [ -f "$pilot_dir/go.mod" ] || die "ISTIOD_ISTIO=$ISTIOD_ISTIO: no $pilot_dir/go.mod (have: $(ls "$ISTIOD_DIR/versions" | tr '\n' ' '))"
fi
mod_dir() { case $1 in pilot-discovery) echo "$pilot_dir" ;; kube-apiserver) echo "$ISTIOD_DIR/kapi" ;; esac; }
main_pkg() { case $1 in pilot-discovery) echo istio.io/istio/pilot/cmd/pilot-discovery ;; kube-apiserver) echo k8s.io/kubernetes/cmd/kube-apiserver ;; esac; }

build_key() {
  local dir; dir=$(mod_dir "$1")
  { cat "$dir/go.mod" "$dir/go.sum" "$dir/tools.go"; go version; echo "${BUILD_FLAGS[*]}"; } | sha256sum | cut -c1-16
}

build_go() {  # build_go NAME -> prints the binary path
  local name=$1 dir key bin
  dir=$(mod_dir "$name")
  command -v go >/dev/null || die "go is not on PATH"
  key=$(build_key "$name")
  bin=$ISTIOD_CACHE/bin/$name-$key
  if [ ! -x "$bin" ]; then
    mkdir -p "$ISTIOD_CACHE/bin"
    (
      exec 9>"$ISTIOD_CACHE/build-$name.lock"
      flock 9
      [ -x "$bin" ] && exit 0   # built by another caller while we waited
      # Build in a copy under the cache so the work tree is never touched (go may write go.sum/vendor state).
      local src=$ISTIOD_CACHE/src/$name-$key t0
      t0=$(now_ms)
      rm -rf "$src"; mkdir -p "$src"
      cp "$dir/go.mod" "$dir/go.sum" "$dir/tools.go" "$src/"
      log "building $name ($key) in $src; several minutes cold on 2 cores"
      cd "$src"
      export GOTOOLCHAIN=local GOFLAGS=-mod=readonly
      nice -n "${BUILD_NICE:-10}" go build "${BUILD_FLAGS[@]}" -o "$bin.tmp.$$" "$(main_pkg "$name")" \
        || { rm -f "$bin.tmp.$$"; die "$name build failed (go.sum stale? run 'go mod tidy' in $dir)"; }
      mv -f "$bin.tmp.$$" "$bin"
      rm -rf "$src"
      log "built $bin in $(( ($(now_ms) - t0) / 1000 )) s ($(du -h "$bin" | cut -f1))"
    ) >&2
  fi
  # stable name for humans (the default Istio only); scripts use the keyed path
  [ "$name" = pilot-discovery ] && [ -n "${ISTIOD_ISTIO:-}" ] && { echo "$bin"; return; }
  ln -sfn "$(basename "$bin")" "$ISTIOD_CACHE/bin/.$name.tmp.$$" && mv -Tf "$ISTIOD_CACHE/bin/.$name.tmp.$$" "$ISTIOD_CACHE/bin/$name"
  echo "$bin"
}

find_etcd() {
  local e
  e=$(command -v etcd 2>/dev/null || true)
  [ -z "$e" ] && [ -x /usr/bin/etcd ] && e=/usr/bin/etcd
  echo "$e"
}

ensure_etcd() {
  local e; e=$(find_etcd)
  if [ -z "$e" ]; then
    [ "${ISTIOD_NO_APT:-}" = 1 ] && die "etcd not found and ISTIOD_NO_APT=1"
    command -v apt-get >/dev/null || die "etcd not found and no apt-get: install etcd and put it on PATH (or set ETCD_BIN)"
    local sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
    mkdir -p "$ISTIOD_CACHE"
    (
      exec 9>"$ISTIOD_CACHE/apt.lock"
      flock 9
      [ -n "$(find_etcd)" ] && exit 0
      export DEBIAN_FRONTEND=noninteractive
      log "installing etcd-server with apt-get"
      if ! $sudo apt-get install -y -q --no-install-recommends etcd-server; then
        $sudo apt-get update -q
        $sudo apt-get install -y -q --no-install-recommends etcd-server
      fi
    ) >&2 || die "apt-get install etcd-server failed"
    e=$(find_etcd)
    [ -n "$e" ] || die "etcd-server installed but no etcd binary found"
  fi
  echo "$e"
}

want=()
for w in "${@:-all}"; do
  case $w in
    all) want+=(pilot-discovery kube-apiserver etcd) ;;
    pilot-discovery|kube-apiserver|etcd) want+=("$w") ;;
    *) die "unknown component '$w' (all|pilot-discovery|kube-apiserver|etcd)" ;;
  esac
done
out=()
for w in "${want[@]}"; do
  case $w in
    pilot-discovery) b=${PILOT_DISCOVERY_BIN:-}; [ -n "$b" ] || b=$(build_go pilot-discovery); out+=("export PILOT_DISCOVERY_BIN=$b") ;;
    kube-apiserver) b=${KUBE_APISERVER_BIN:-}; [ -n "$b" ] || b=$(build_go kube-apiserver); out+=("export KUBE_APISERVER_BIN=$b") ;;
    etcd) b=${ETCD_BIN:-}; [ -n "$b" ] || b=$(ensure_etcd); out+=("export ETCD_BIN=$b") ;;
  esac
done
printf '%s\n' "${out[@]}"
