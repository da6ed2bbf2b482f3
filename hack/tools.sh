# tools.sh — helpers shared by hack/chart-check.sh and hack/docker-check.sh (sourced, not executed).
#
#   tools_helm            build (once, cached) or locate helm; sets HELM
#   tools_manifestcheck   build (when its sources change) hack/manifestcheck; sets MC
#   tools_image           build (when its sources change, after its tests) hack/image; sets IMAGE_TOOL
#
# Tools live in $REGISTRY_ADAPTER_CACHE/tools (default $HOME/.cache/registry-adapter/tools). Everything is built
# from the Go module proxy; nothing else is downloaded.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_ROOT=${REGISTRY_ADAPTER_CACHE:-${HOME:-/root}/.cache/registry-adapter}
TOOLS=$CACHE_ROOT/tools
HELM_VERSION=${HELM_VERSION:-v3.22.0}
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
# helm keeps no state of ours in the user's helm directories, and reads none of theirs.
export HELM_CACHE_HOME=$CACHE_ROOT/helm/cache HELM_CONFIG_HOME=$CACHE_ROOT/helm/config HELM_DATA_HOME=$CACHE_ROOT/helm/data

TOOLS_LOG_PREFIX=${TOOLS_LOG_PREFIX:-$(basename "$0" .sh)}
log() { echo "[$TOOLS_LOG_PREFIX] $*" >&2; }
die() { log "FAIL: $*"; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
T0=$(now_ms)
step() { log "$(printf '%6.1fs' "$(awk "BEGIN{print ($(now_ms)-$T0)/1000}")") $*"; }

command -v go >/dev/null || die "go is not on PATH"
mkdir -p "$TOOLS"

# with_lock FILE CMD...: one build at a time across concurrent runs (flock when the system has it).
with_lock() {
  local lock=$1; shift
  if command -v flock >/dev/null; then
    ( flock 9; "$@" ) 9>"$lock"
  else
    "$@"
  fi
}

# ---- helm, built from the module proxy with the version flags of helm's own release build
HELM=${HELM_BIN:-$TOOLS/helm-$HELM_VERSION}
_helm_inputs() { printf 'helm=%s\n%s\nflags=-trimpath -s -w k8s-from-client-go\n' "$HELM_VERSION" "$(go version)"; }
_build_helm() {
  [ -x "$HELM" ] && [ -f "$HELM.stamp" ] && [ "$(cat "$HELM.stamp")" = "$(_helm_inputs)" ] && return 0
  local t0 gomod minor gobin x=helm.sh/helm/v3
  t0=$(now_ms)
  log "building helm $HELM_VERSION from the Go module proxy (a few minutes cold; cached in $TOOLS)"
  # helm's Makefile stamps the Kubernetes version it was built against (client-go v0.N -> 1.N) into the binary;
  # without it, `helm template` assumes Kubernetes 1.20 and refuses the chart's kubeVersion.
  gomod=$(cd "$TOOLS" && GOFLAGS='' go mod download -json "$x@$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  minor=$(awk '$1 == "k8s.io/client-go" { print $2 }' "$gomod" | sed -E 's/^v0\.([0-9]+)\..*$/\1/')
  [[ "$minor" =~ ^[0-9]+$ ]] || die "cannot tell the Kubernetes version of helm $HELM_VERSION from $gomod"
  gobin=$(mktemp -d "$TOOLS/.helm-build.XXXXXX")
  (cd "$TOOLS" && GOBIN=$gobin GOFLAGS='' CGO_ENABLED=0 nice -n 10 go install -trimpath -ldflags "-s -w \
    -X $x/internal/version.version=$HELM_VERSION \
    -X $x/pkg/chartutil.k8sVersionMajor=1 -X $x/pkg/chartutil.k8sVersionMinor=$minor \
    -X $x/pkg/lint/rules.k8sVersionMajor=1 -X $x/pkg/lint/rules.k8sVersionMinor=$minor" \
    "$x/cmd/helm@$HELM_VERSION") || { rm -rf "$gobin"; die "helm build failed"; }
  mv -f "$gobin/helm" "$HELM"
  rm -rf "$gobin"
  _helm_inputs > "$HELM.stamp"
  log "built $("$HELM" version --short) (Kubernetes 1.$minor) in $(( ($(now_ms) - t0) / 1000 ))s"
}
tools_helm() {
  [ -n "${HELM_BIN:-}" ] || with_lock "$TOOLS/helm.lock" _build_helm
  [ -x "$HELM" ] || die "no helm at $HELM"
}

# ---- hack/manifestcheck, rebuilt when its sources change. Built without -trimpath or CGO_ENABLED=0, so that
# `go test` of the module reuses the compiled packages.
MC_DIR=$ROOT/hack/manifestcheck
_build_manifestcheck() {
  [ -x "$MC" ] && return 0
  local t0
  t0=$(now_ms)
  log "building hack/manifestcheck (k8s.io/kubernetes validation code; a few minutes cold)"
  # Older builds go once unused for a week: deleting every other build at once broke a concurrent run of another
  # checkout (its binary vanished between its build and its use).
  find "$TOOLS" -maxdepth 1 -name 'manifestcheck-*' ! -name '*.lock' -atime +7 -delete 2>/dev/null || true
  (cd "$MC_DIR" && GOFLAGS=-mod=readonly nice -n 10 go build -o "$MC.tmp.$$" .) ||
    { rm -f "$MC.tmp.$$"; die "manifestcheck build failed"; }
  mv -f "$MC.tmp.$$" "$MC"
  log "built manifestcheck in $(( ($(now_ms) - t0) / 1000 ))s"
}
tools_manifestcheck() {
  MC=$TOOLS/manifestcheck-$( (cd "$MC_DIR" && cat go.mod go.sum ./*.go; go version) | sha256sum | cut -c1-16)
  with_lock "$TOOLS/manifestcheck.lock" _build_manifestcheck
}

# ---- promtool, built from the module proxy (Prometheus's Go module; v0.N.M is Prometheus 3.N.M), for
# `promtool check rules` on the chart's PrometheusRule.
PROMTOOL_VERSION=${PROMTOOL_VERSION:-v0.311.3}
PROMTOOL=${PROMTOOL_BIN:-$TOOLS/promtool-$PROMTOOL_VERSION}
_promtool_inputs() { printf 'promtool=%s\n%s\nflags=-trimpath -s -w\n' "$PROMTOOL_VERSION" "$(go version)"; }
_build_promtool() {
  [ -x "$PROMTOOL" ] && [ -f "$PROMTOOL.stamp" ] && [ "$(cat "$PROMTOOL.stamp")" = "$(_promtool_inputs)" ] && return 0
  local t0 gobin
  t0=$(now_ms)
  log "building promtool $PROMTOOL_VERSION from the Go module proxy (several minutes cold; cached in $TOOLS)"
  gobin=$(mktemp -d "$TOOLS/.promtool-build.XXXXXX")
  # Prometheus's go.mod has replace directives, which `go install pkg@version` refuses: build inside the module.
  local dir
  dir=$(cd "$TOOLS" && GOFLAGS='' go mod download -json "github.com/prometheus/prometheus@$PROMTOOL_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [ -d "$dir" ] || { rm -rf "$gobin"; die "cannot download github.com/prometheus/prometheus@$PROMTOOL_VERSION"; }
  (cd "$dir" && GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags "-s -w" \
    -o "$gobin/promtool" ./cmd/promtool) || { rm -rf "$gobin"; die "promtool build failed"; }
  mv -f "$gobin/promtool" "$PROMTOOL"
  rm -rf "$gobin"
  _promtool_inputs > "$PROMTOOL.stamp"
  log "built promtool in $(( ($(now_ms) - t0) / 1000 ))s"
}
tools_promtool() {
  [ -n "${PROMTOOL_BIN:-}" ] || with_lock "$TOOLS/promtool.lock" _build_promtool
  [ -x "$PROMTOOL" ] || die "no promtool at $PROMTOOL"
}

# ---- hack/image (the OCI image's build, check, unpack and push; go-containerregistry), rebuilt when its sources
# change, its tests run before each build of it.
IMAGE_DIR=$ROOT/hack/image
_build_image_tool() {
  [ -x "$IMAGE_TOOL" ] && return 0
  local t0
  t0=$(now_ms)
  log "building hack/image and running its tests"
  rm -f "$TOOLS"/image-*
  (cd "$IMAGE_DIR" && GOFLAGS=-mod=readonly nice -n 10 go test . >&2) || die "hack/image tests"
  (cd "$IMAGE_DIR" && GOFLAGS=-mod=readonly nice -n 10 go build -o "$IMAGE_TOOL.tmp.$$" .) ||
    { rm -f "$IMAGE_TOOL.tmp.$$"; die "hack/image build failed"; }
  mv -f "$IMAGE_TOOL.tmp.$$" "$IMAGE_TOOL"
  log "built hack/image in $(( ($(now_ms) - t0) / 1000 ))s"
}
tools_image() {
  IMAGE_TOOL=$TOOLS/image-$( (cd "$IMAGE_DIR" && cat go.mod go.sum ./*.go; go version) | sha256sum | cut -c1-16)
  with_lock "$TOOLS/image.lock" _build_image_tool
}
