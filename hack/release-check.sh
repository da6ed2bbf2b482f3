#!/usr/bin/env bash
# release-check.sh — one version for the binary, the image, the chart and the changelog.
#
# The version lives in cmd/registry-adapter/version.go (`var version = "X.Y.Z"`). This fails unless
#   - manifests/chart/registry-adapter/Chart.yaml has version: X.Y.Z and appVersion: "X.Y.Z" (the chart's image
#     tag defaults to appVersion), and the committed render manifests/registry-adapter.yaml uses the image tag X.Y.Z;
#   - the Dockerfile's ARG VERSION defaults are X.Y.Z, and it does not override main.version;
#   - CHANGELOG.md has an [Unreleased] section and its latest release heading is ## [X.Y.Z] - YYYY-MM-DD, with a
#     link for it;
#   - a binary built from the tree prints X.Y.Z from `registry-adapter version`;
#   - a vX.Y.Z tag on HEAD (if any) matches.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
fail=0
bad() { echo "[release-check] FAIL: $*" >&2; fail=1; }

V=$(sed -n 's/^var version = "\(.*\)"$/\1/p' cmd/registry-adapter/version.go)
[[ "$V" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || { echo "[release-check] FAIL: no semantic version in cmd/registry-adapter/version.go (got '$V')" >&2; exit 1; }

chart=manifests/chart/registry-adapter/Chart.yaml
cv=$(sed -n 's/^version:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' "$chart")
av=$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' "$chart")
[ "$cv" = "$V" ] || bad "$chart version is '$cv', the binary's is $V"
[ "$av" = "$V" ] || bad "$chart appVersion is '$av', the binary's is $V"
img=$(sed -n 's/^[[:space:]]*image:[[:space:]]*ghcr.io\/registry-adapter\/registry-adapter:\(.*\)$/\1/p' manifests/registry-adapter.yaml)
[ "$img" = "$V" ] || bad "manifests/registry-adapter.yaml runs image tag '$img', not $V (run make chart-update)"

while read -r d; do
  [ "$d" = "$V" ] || bad "Dockerfile has ARG VERSION=$d, not $V"
done < <(sed -n 's/^ARG VERSION=\(.*\)$/\1/p' Dockerfile)
[ "$(grep -c '^ARG VERSION=' Dockerfile)" -ge 1 ] || bad "Dockerfile has no ARG VERSION default"
! grep -q 'main\.version' Dockerfile || bad "the Dockerfile overrides main.version; the version comes from version.go"

grep -q '^## \[Unreleased\]' CHANGELOG.md || bad "CHANGELOG.md has no ## [Unreleased] section"
latest=$(sed -n 's/^## \[\([0-9][^]]*\)\].*$/\1/p' CHANGELOG.md | head -n1)
[ "$latest" = "$V" ] || bad "CHANGELOG.md's latest release is '$latest', not $V"
grep -Eq "^## \[$V\] - [0-9]{4}-[0-9]{2}-[0-9]{2}\$" CHANGELOG.md || bad "CHANGELOG.md: no '## [$V] - YYYY-MM-DD' heading"
grep -q "^\[$V\]: " CHANGELOG.md || bad "CHANGELOG.md: no link for [$V]"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/registry-adapter" ./cmd/registry-adapter
out=$("$tmp/registry-adapter" version)
case "$out" in
  "registry-adapter $V (commit "*) ;;
  *) bad "registry-adapter version prints '$out', want 'registry-adapter $V (commit ...'" ;;
esac

if tag=$(git describe --tags --exact-match HEAD 2>/dev/null) && [[ "$tag" == v* ]]; then
  [ "$tag" = "v$V" ] || bad "HEAD is tagged $tag, the version is $V"
fi

[ "$fail" = 0 ] || exit 1
echo "[release-check] ok: $V ($out)" >&2
