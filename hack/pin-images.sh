#!/usr/bin/env bash
# pin-images.sh — pin the Dockerfile's base images to the digests their tags resolve to now. Needs registry access
# (the registries' HTTP API, anonymously; no container engine).
#
#   hack/pin-images.sh            rewrite the digests in the Dockerfile (ARG GO_DIGEST for golang:${GO_VERSION},
#                                 and every other `FROM image:tag@sha256:...`)
#   hack/pin-images.sh --check    compare only: exit 1 when a pinned digest is not what its tag resolves to now
#
# A tag resolves to the digest the registry sends in Docker-Content-Digest for the tag's manifest, asked for as an
# image index (multi-platform) first; the script fails when the answer is a single-platform manifest, since the
# Dockerfile is built for several platforms. The digest is checked against the sha256 of the body it names.
#
# Environment:
#   PIN_IMAGES_REGISTRY  send every request to this base URL instead (for testing against a local fake registry)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOCKERFILE=$ROOT/Dockerfile
log() { echo "[pin-images] $*" >&2; }
die() { log "FAIL: $*"; exit 1; }

CHECK=0
case "${1:-}" in
  "") ;;
  --check) CHECK=1 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
command -v curl >/dev/null || die "curl is not on PATH"

ACCEPT='application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json'
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# resolve IMAGE:TAG -> sha256:... of the tag's image index
resolve() {
  local ref=$1 name tag host repo base url code auth realm service scope token digest ctype
  name=${ref%:*} tag=${ref##*:}
  [ "$name" != "$ref" ] && [ -n "$tag" ] || die "$ref: want image:tag"
  host=${name%%/*}
  if [[ $name == */* && ( $host == *.* || $host == *:* || $host == localhost ) ]]; then
    repo=${name#*/}
  else
    host=registry-1.docker.io repo=$name
    [[ $repo == */* ]] || repo=library/$repo
  fi
  base=${PIN_IMAGES_REGISTRY:-https://$host}
  url=$base/v2/$repo/manifests/$tag
  code=$(curl -sS -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' -H "Accept: $ACCEPT" "$url") ||
    die "$ref: cannot reach $url"
  if [ "$code" = 401 ]; then
    # Anonymous pull token: WWW-Authenticate: Bearer realm="...",service="...",scope="..."
    auth=$(grep -i '^www-authenticate:' "$WORK/headers" | tr -d '\r') || die "$ref: 401 without WWW-Authenticate"
    realm=$(sed -n 's/.*realm="\([^"]*\)".*/\1/p' <<<"$auth")
    service=$(sed -n 's/.*service="\([^"]*\)".*/\1/p' <<<"$auth")
    scope=$(sed -n 's/.*scope="\([^"]*\)".*/\1/p' <<<"$auth")
    [ -n "$realm" ] || die "$ref: no token realm in: $auth"
    token=$(curl -sSfG "$realm" --data-urlencode "service=$service" --data-urlencode "scope=${scope:-repository:$repo:pull}" |
      sed -n 's/.*"\(token\|access_token\)" *: *"\([^"]*\)".*/\2/p' | head -n1)
    [ -n "$token" ] || die "$ref: no anonymous token from $realm"
    code=$(curl -sS -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' -H "Accept: $ACCEPT" \
      -H "Authorization: Bearer $token" "$url") || die "$ref: cannot reach $url"
  fi
  [ "$code" = 200 ] || die "$ref: HTTP $code from $url"
  ctype=$(grep -i '^content-type:' "$WORK/headers" | tail -n1 | sed 's/^[^:]*: *//' | tr -d '\r')
  case "$ctype" in
    application/vnd.oci.image.index.v1+json* | application/vnd.docker.distribution.manifest.list.v2+json*) ;;
    *) die "$ref: the tag is a single-platform manifest ($ctype), not an index: the Dockerfile builds for several platforms" ;;
  esac
  digest=$(grep -i '^docker-content-digest:' "$WORK/headers" | tail -n1 | sed 's/^[^:]*: *//' | tr -d '\r')
  [ "sha256:$(sha256sum "$WORK/body" | cut -d' ' -f1)" = "$digest" ] ||
    die "$ref: Docker-Content-Digest $digest is not the sha256 of the manifest sent"
  echo "$digest"
}

drift=0
# golang:${GO_VERSION} -> ARG GO_DIGEST
go_version=$(sed -n 's/^ARG GO_VERSION=\(.*\)$/\1/p' "$DOCKERFILE")
go_pinned=$(sed -n 's/^ARG GO_DIGEST=\(.*\)$/\1/p' "$DOCKERFILE")
[ -n "$go_version" ] && [ -n "$go_pinned" ] || die "no ARG GO_VERSION / ARG GO_DIGEST in the Dockerfile"
go_now=$(resolve "golang:$go_version")
if [ "$go_now" != "$go_pinned" ]; then
  log "golang:$go_version: pinned $go_pinned, the tag is now $go_now"
  drift=1
  [ "$CHECK" = 1 ] || sed -i "s|^ARG GO_DIGEST=.*|ARG GO_DIGEST=$go_now|" "$DOCKERFILE"
else
  log "golang:$go_version: $go_now (unchanged)"
fi

# every other FROM image:tag@sha256:...
while read -r ref pinned; do
  now=$(resolve "$ref")
  if [ "$now" != "$pinned" ]; then
    log "$ref: pinned $pinned, the tag is now $now"
    drift=1
    [ "$CHECK" = 1 ] || sed -i "s|^\(FROM .*\)$ref@$pinned|\1$ref@$now|" "$DOCKERFILE"
  else
    log "$ref: $now (unchanged)"
  fi
done < <(sed -n 's/^FROM \(--platform=[^ ]* \)\{0,1\}\([^ $]*:[^ @]*\)@\(sha256:[0-9a-f]\{64\}\).*$/\2 \3/p' "$DOCKERFILE")

if [ "$CHECK" = 1 ] && [ "$drift" = 1 ]; then
  die "pinned digests differ from what the tags resolve to now: run hack/pin-images.sh, then hack/docker-check.sh"
fi
[ "$drift" = 1 ] && log "Dockerfile updated: review the diff, run hack/docker-check.sh, and say in the commit where the digests came from"
log ok
