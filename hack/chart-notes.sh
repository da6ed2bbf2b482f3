#!/usr/bin/env bash
# chart-notes.sh — print the chart's NOTES for a release, without a cluster.
#
#   hack/chart-notes.sh RELEASE NAMESPACE [helm template arguments: -f FILE, --set KEY=VALUE, ...]
#
# `helm template` does not render NOTES.txt and `helm install --dry-run` needs a cluster, so this renders a copy of
# the chart in which NOTES.txt is a file that one extra template passes through `tpl` (same values, same helpers)
# into a ConfigMap, and prints that. Used by hack/chart-check.sh and the chart's e2e test.
set -euo pipefail
# shellcheck source=hack/tools.sh
source "$(dirname "$0")/tools.sh"
[ $# -ge 2 ] || die "usage: $0 RELEASE NAMESPACE [helm template arguments]"
release=$1 namespace=$2
shift 2
tools_helm
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$ROOT/manifests/chart/registry-adapter" "$tmp/chart"
mv "$tmp/chart/templates/NOTES.txt" "$tmp/chart/notes-check.txt"
cat > "$tmp/chart/templates/zz-notes-check.yaml" <<'END'
apiVersion: v1
kind: ConfigMap
metadata:
  name: notes-check
data:
  NOTES: |
{{ tpl (.Files.Get "notes-check.txt") . | indent 4 }}
END
"$HELM" template "$release" "$tmp/chart" --namespace "$namespace" "$@" --show-only templates/zz-notes-check.yaml |
  sed -n '/^  NOTES: |$/,$p' | tail -n +2 | sed 's/^    //'
