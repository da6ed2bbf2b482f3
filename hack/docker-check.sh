#!/usr/bin/env bash
# docker-check.sh — check the Dockerfile without a container engine.
#
#   hack/docker-check.sh
#
# 1. the Go version of the builder image (ARG GO_VERSION) is at least go.mod's `go` line (the image builds with
#    GOTOOLCHAIN=local, so an older image cannot build the module);
# 2. the build context is assembled as `docker build` would (.dockerignore applied by Docker's own matcher), and
#    the Dockerfile's build command runs in it: go mod download, then the same static go build
#    (CGO_ENABLED=0, -trimpath) for linux/amd64; the result must be a static ELF that runs `version`;
# 3. ENTRYPOINT reads the configuration where the chart mounts it, EXPOSE lists the chart's ports, and the final
#    image runs as nonroot;
# 4. every base image is pinned by digest (hack/pin-images.sh resolves and refreshes them, with registry access;
#    this check cannot tell whether a digest is the tag's current one).
set -euo pipefail
# shellcheck source=hack/tools.sh
source "$(dirname "$0")/tools.sh"

DOCKERFILE=$ROOT/Dockerfile
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The build command of the Dockerfile, verbatim: keep the two in step.
# shellcheck disable=SC2016  # ${COMMIT} is expanded by the Dockerfile's shell, and by eval below
BUILD_CMD='go build -trimpath -ldflags "-s -w -X main.commit=${COMMIT}" -o /out/registry-adapter ./cmd/registry-adapter'
grep -qF -- "$BUILD_CMD" "$DOCKERFILE" || die "the Dockerfile no longer runs: $BUILD_CMD (update this script too)"

# 1. builder Go version >= go.mod's go line
image_go=$(sed -n 's/^ARG GO_VERSION=\(.*\)$/\1/p' "$DOCKERFILE")
mod_go=$(awk '$1 == "go" { print $2; exit }' "$ROOT/go.mod")
if [ -z "$image_go" ] || [ -z "$mod_go" ]; then
  die "cannot read ARG GO_VERSION from the Dockerfile or go from go.mod"
fi
if [ "$(printf '%s\n%s\n' "$mod_go" "$image_go" | sort -V | head -n1)" != "$mod_go" ]; then
  die "Dockerfile builds with Go $image_go but go.mod needs go $mod_go (raise ARG GO_VERSION)"
fi
step "builder Go $image_go >= go.mod's go $mod_go"

# 2. the context, and the build in it
tools_manifestcheck
"$MC" dockerctx "$ROOT" "$WORK/ctx" > "$WORK/ctx.log" || die "build context"
step "build context: $(cat "$WORK/ctx.log") (.dockerignore applied)"
(
  cd "$WORK/ctx"
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOOS=linux GOARCH=amd64 COMMIT=docker-check
  go mod download
  eval "${BUILD_CMD/\/out\//$WORK/out/}"
) > "$WORK/build.log" 2>&1 || { cat "$WORK/build.log" >&2; die "the Dockerfile's go build fails in the build context"; }
"$MC" static "$WORK/out/registry-adapter" >&2 || die "not a static binary"
version=$(sed -n 's/^var version = "\(.*\)"$/\1/p' "$ROOT/cmd/registry-adapter/version.go")
"$WORK/out/registry-adapter" version | grep -q "$version.*docker-check" || die "the binary does not report its version $version and commit"
step "go build in the context: static linux/amd64 binary, $(du -h "$WORK/out/registry-adapter" | cut -f1)"

# 3. entrypoint, ports, user
config_path=$(sed -n '/define "registry-adapter.configPath"/{n;p;}' "$ROOT/manifests/chart/registry-adapter/templates/_helpers.tpl")
grep -qF "ENTRYPOINT [\"/registry-adapter\", \"run\", \"--config\", \"$config_path\"]" "$DOCKERFILE" ||
  die "ENTRYPOINT does not read $config_path, where the chart mounts the configuration"
sed -n 's/^  \(grpc\|monitoring\): \([0-9]*\)$/\2/p' "$ROOT/manifests/chart/registry-adapter/values.yaml" > "$WORK/ports"
[ "$(wc -l < "$WORK/ports")" = 2 ] || die "cannot read ports.grpc and ports.monitoring from the chart's values.yaml"
while read -r port; do
  grep -qE "^EXPOSE .*\b$port\b" "$DOCKERFILE" || die "EXPOSE lacks the chart's port $port"
done < "$WORK/ports"
grep -qE '^FROM gcr.io/distroless/static[^ ]*:nonroot(@sha256:[0-9a-f]{64})?$|^USER 65532' "$DOCKERFILE" || die "the final image does not run as nonroot"
[ "$(grep -E '^USER ' "$DOCKERFILE" | tail -n1)" = "USER 65532:65532" ] || die "the last USER is not 65532:65532"
step "ENTRYPOINT, EXPOSE and USER agree with the chart"

# 4. base images pinned by digest, the ARGs expanded (golang:${GO_VERSION}@${GO_DIGEST})
go_digest=$(sed -n 's/^ARG GO_DIGEST=\(.*\)$/\1/p' "$DOCKERFILE")
n=0
while read -r from; do
  ref=${from//\$\{GO_VERSION\}/$image_go}
  ref=${ref//\$\{GO_DIGEST\}/$go_digest}
  [[ $ref =~ ^[^@\ ]+:[^@\ ]+@sha256:[0-9a-f]{64}$ ]] || die "FROM $from: not pinned as image:tag@sha256:<digest> (hack/pin-images.sh)"
  n=$((n + 1))
done < <(sed -n 's/^FROM \(--platform=[^ ]* \)\{0,1\}\([^ ]*\).*$/\2/p' "$DOCKERFILE")
[ "$n" -ge 2 ] || die "found $n FROM lines, want the builder and the runtime image"
step "$n base images pinned by digest (hack/pin-images.sh --check compares them with the registries)"
log "ok"
