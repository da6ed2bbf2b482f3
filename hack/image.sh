#!/usr/bin/env bash
# image.sh — the adapter's OCI image, without a container engine (go-containerregistry, via hack/image).
#
#   hack/image.sh build [OUT]     build the static binary and the image into OUT (default bin/image, an OCI image
#                                 layout; its digest in OUT.digest), then check it
#   hack/image.sh check [OUT]     read the image back and check it (hack/image's `check`)
#   hack/image.sh push IMAGE [OUT]  push the image to IMAGE (e.g. registry.example.com/mesh/registry-adapter:0.1.0)
#   hack/image.sh unpack ROOT [OUT] write the image's file system into ROOT (the chart's e2e runs the adapter from it)
#
# The binary is built as `make build` and the Dockerfile build it: CGO_ENABLED=0 (static), -trimpath,
# -ldflags "-s -w -X main.commit=<commit>", for linux/$GOARCH (default: the host's). The image holds that binary at
# /registry-adapter and /etc/passwd and /etc/group for the nonroot user (65532), nothing else: no shell. Its labels
# carry the version (cmd/registry-adapter/version.go), the revision (the commit, "+dirty" for a changed tree) and the
# source (the chart's `home`); every timestamp is the commit's time, so a rebuild of the same commit gives the same
# digest.
#
# The check reads the layout back and fails on a user that is not numeric non-root, an entrypoint that is not the
# chart's command, a missing or wrong label, any file build does not put there (a shell), a blob that does not match
# its digest, or a binary that is not static, does not print its version and revision, or cannot `render`
# examples/static.yaml. hack/image's own tests (run first, cached by go test) show each of those failing.
#
# Environment: COMMIT (default: git), GOARCH, REGISTRY_ADAPTER_CACHE (the tool is cached in its tools/).
set -euo pipefail
# shellcheck source=hack/tools.sh
source "$(dirname "$0")/tools.sh"

cmd=${1:-build}
[ $# -gt 0 ] && shift
case "$cmd" in
  build | check) OUT=${1:-$ROOT/bin/image} ;;
  push | unpack)
    [ $# -ge 1 ] || die "usage: $0 $cmd ${cmd/push/IMAGE}${cmd/unpack/ROOT} [OUT]"
    ARG=$1
    OUT=${2:-$ROOT/bin/image} ;;
  *) die "usage: $0 build|check [OUT] | push IMAGE [OUT] | unpack ROOT [OUT]" ;;
esac

VERSION=$(sed -n 's/^var version = "\(.*\)"$/\1/p' "$ROOT/cmd/registry-adapter/version.go")
[ -n "$VERSION" ] || die "no version in cmd/registry-adapter/version.go"
if [ -z "${COMMIT:-}" ]; then
  COMMIT=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
  git -C "$ROOT" diff --quiet HEAD 2>/dev/null || COMMIT=$COMMIT+dirty
fi
SOURCE=$(sed -n 's/^home: *//p' "$ROOT/manifests/chart/registry-adapter/Chart.yaml")
[ -n "$SOURCE" ] || die "no home in the chart's Chart.yaml"
CREATED=$(TZ=UTC git -C "$ROOT" log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo 1970-01-01T00:00:00Z)
ARCH=${GOARCH:-$(go env GOARCH)}

tools_image
case "$cmd" in
  build)
    bin=$ROOT/bin/linux_$ARCH/registry-adapter
    (cd "$ROOT" && CGO_ENABLED=0 GOOS=linux GOARCH=$ARCH go build -trimpath -ldflags "-s -w -X main.commit=$COMMIT" \
      -o "$bin" ./cmd/registry-adapter) || die "go build ./cmd/registry-adapter"
    step "static binary ${bin#"$ROOT"/} ($(du -h "$bin" | cut -f1)), commit $COMMIT"
    digest=$("$IMAGE_TOOL" build -binary "$bin" -out "$OUT" -version "$VERSION" -revision "$COMMIT" -source "$SOURCE" \
      -created "$CREATED" -arch "$ARCH") || die "image build"
    echo "$digest" > "$OUT.digest"
    step "OCI image layout ${OUT#"$ROOT"/} (linux/$ARCH), digest $digest"
    ;;
esac
case "$cmd" in
  build | check)
    # The binary only runs here when it is built for this machine.
    render=()
    [ "$ARCH" = "$(go env GOHOSTARCH)" ] && [ "$(go env GOHOSTOS)" = linux ] && render=(-render-config "$ROOT/examples/static.yaml")
    "$IMAGE_TOOL" check -layout "$OUT" -version "$VERSION" -revision "$COMMIT" -source "$SOURCE" "${render[@]}" >&2 ||
      die "the image ${OUT#"$ROOT"/} fails its check"
    step "image checked: user, entrypoint, labels, files${render:+, the binary runs version and render}"
    ;;
  push | unpack)
    [ -f "$OUT/index.json" ] || die "no image at $OUT: run make image first"
    if [ "$cmd" = push ]; then
      "$IMAGE_TOOL" push -layout "$OUT" "$ARG" || die "push to $ARG"
    else
      "$IMAGE_TOOL" unpack -layout "$OUT" -root "$ARG" || die "unpack into $ARG"
    fi
    ;;
esac
