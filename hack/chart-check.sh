#!/usr/bin/env bash
# chart-check.sh — lint, render and validate the Helm chart and the Grafana dashboard, offline.
#
#   hack/chart-check.sh            check; fails if manifests/registry-adapter.yaml is stale
#   hack/chart-check.sh --update   rewrite manifests/registry-adapter.yaml from the chart, then check
#
# Steps:
#   1. helm (built once from the Go module proxy, cached) lints the chart with its default values and with each
#      manifests/chart/registry-adapter/ci/*-values.yaml, and renders each (release registry-adapter, namespace
#      istio-system); values.schema.json must reject a misspelt key;
#   2. the default render, with tls.existingSecret=registry-adapter-tls (a committed file must hold no key pair, and
#      the chart's generated one changes at every render), must equal the committed manifests/registry-adapter.yaml;
#   3. hack/manifestcheck (whose own tests run first) validates every render offline: strict decoding, the API
#      server's structural schema and validation code, Pod Security "restricted", the ServiceMonitor against
#      prometheus-operator's Go types, and cross-object checks (see hack/manifestcheck/main.go);
#   4. the adapter's own `validate` parses the config.yaml of each render;
#   5. the istiod values snippets (manifests/istiod-values*.yaml) decode into istio.io/api's MeshConfig, keep
#      k8s://, list the adapter, and use only what istiod implements for TLS (SIMPLE, caCertificates as PEM);
#   5b. the PrometheusRule of every values variant that renders one: every alert's expression parses with
#      Prometheus's own PromQL parser (manifestcheck alerts; always), the rules pass `promtool check rules` when
#      promtool is built, every alert the template can render is rendered by one of them, and each alert's
#      runbook_url anchor is a heading of docs/operations.md;
#   6. the Grafana dashboard is checked, and every metric it or the alerts query must be defined in the Go sources.
# Also: values.schema.json rejects bad values and accepts `global`; the NOTES of each variant (hack/chart-notes.sh)
# name the sink's steps and no other's.
#
# Environment:
#   REGISTRY_ADAPTER_CACHE  cache root (default $HOME/.cache/registry-adapter); tools in $REGISTRY_ADAPTER_CACHE/tools
#   HELM_VERSION            helm.sh/helm/v3 version to build (default v3.22.0)
#   HELM_BIN                use this helm instead of building one
set -euo pipefail
# shellcheck source=hack/tools.sh
source "$(dirname "$0")/tools.sh"

CHART=$ROOT/manifests/chart/registry-adapter
RENDERED=$ROOT/manifests/registry-adapter.yaml
DASHBOARD=$ROOT/manifests/grafana/registry-adapter-dashboard.json
RELEASE=registry-adapter
NAMESPACE=istio-system

UPDATE=0
case "${1:-}" in
  "") ;;
  --update) UPDATE=1 ;;
  *) echo "usage: $0 [--update]" >&2; exit 2 ;;
esac

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

tools_helm
tools_manifestcheck
step "tools ready: $("$HELM" version --short), $MC"

# ---- 1. lint and render: the default values, then each ci/*-values.yaml
VARIANTS=(default)
for f in "$CHART"/ci/*-values.yaml; do
  [ -e "$f" ] && VARIANTS+=("$(basename "$f" -values.yaml)")
done
for v in "${VARIANTS[@]}"; do
  args=()
  [ "$v" = default ] || args=(-f "$CHART/ci/$v-values.yaml")
  "$HELM" lint --strict --namespace "$NAMESPACE" "$CHART" "${args[@]}" >"$WORK/lint-$v.log" 2>&1 ||
    { cat "$WORK/lint-$v.log" >&2; die "helm lint ($v values)"; }
  "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "${args[@]}" >"$WORK/$v.yaml" 2>"$WORK/template-$v.log" ||
    { cat "$WORK/template-$v.log" >&2; die "helm template ($v values)"; }
done
step "helm lint --strict and helm template: ${VARIANTS[*]}"

# values.schema.json must turn typos and chart-owned config keys into errors.
# The config part of the schema is generated from the configuration's Go types (go test ./config -run TestChartSchema).
for bad in "replicas=3" "config.server.listen=127.0.0.1:15010" "config.server.shards=2" "shards=0" "shards=65" \
  "tls.enabeld=true" "podAntiAffinity=maybe" "config.output.namspace=istio-system" "config.debounce.quiet=fast" \
  "config.sources[0].consul.tokn=x" "config.guard.minInstances=ten" "config.server.adminListen=0.0.0.0:15015" \
  "networkPolicy.egress.registries[0].prots[0].port=80" "config.stateFile.path=/tmp/state.json" "env[0].value=x" "istiodToken.expirationSeconds=60" \
  "prometheusRule.sourceStaleFor=often" "config.sink=kafka" "config.output.mode=sidecar" "config.log.level=verbose" \
  "config.sources[0].consul.address=consul:8500" "tls.certManager.issuerRef.kind=Secret" "outputNamespace.create=yes"; do
  if "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --set "$bad" >/dev/null 2>"$WORK/neg.log"; then
    die "values.schema.json accepts --set $bad"
  fi
done
step "values.schema.json rejects bad values"

# Helm sets `global` in the values of a chart that is a dependency of another (an umbrella chart): the schema must
# take it.
"$HELM" lint --strict --namespace "$NAMESPACE" "$CHART" --set global.imageRegistry=registry.example.com >"$WORK/lint-global.log" 2>&1 ||
  { cat "$WORK/lint-global.log" >&2; die "helm lint with global set"; }
"$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --set global.imageRegistry=registry.example.com >/dev/null 2>"$WORK/global.log" ||
  { cat "$WORK/global.log" >&2; die "helm template with global set"; }
step "helm lint and template accept global (umbrella charts)"

# NOTES say what to do for the chosen sink, and nothing else: an xds:// config source only where the xDS sink
# serves one, with TLS settings when TLS is on; the Kubernetes objects only with the Kubernetes sink.
for v in "${VARIANTS[@]}"; do
  args=()
  [ "$v" = default ] || args=(-f "$CHART/ci/$v-values.yaml")
  bash "$ROOT/hack/chart-notes.sh" "$RELEASE" "$NAMESPACE" "${args[@]}" >"$WORK/notes-$v.txt" 2>"$WORK/notes-$v.err" ||
    { cat "$WORK/notes-$v.err" >&2; die "rendering the NOTES ($v values)"; }
  [ -s "$WORK/notes-$v.txt" ] || die "no NOTES for the $v values"
  sink=$(grep -o '(sink: [a-z]*)' "$WORK/notes-$v.txt" | head -n1)
  xds=0; kube=0; tlsn=0
  grep -q 'address: xds://' "$WORK/notes-$v.txt" && xds=1
  grep -q 'get serviceentries,workloadentries' "$WORK/notes-$v.txt" && kube=1
  grep -q 'mode: SIMPLE' "$WORK/notes-$v.txt" && tlsn=1
  case "$sink" in
    "(sink: xds)") want="1 0" ;;
    "(sink: kubernetes)") want="0 1" ;;
    "(sink: both)") want="1 1" ;;
    *) die "the $v NOTES name no sink" ;;
  esac
  [ "$xds $kube" = "$want" ] || { cat "$WORK/notes-$v.txt" >&2; die "the $v NOTES ($sink): xds:// $xds, Kubernetes objects $kube, want $want"; }
  if [ "$xds" = 1 ] && grep -q '^    server:' <(sed -n '/config.yaml: |/,/^---/p' "$WORK/$v.yaml") &&
     grep -q 'certFile:' <(sed -n '/config.yaml: |/,/^---/p' "$WORK/$v.yaml"); then
    [ "$tlsn" = 1 ] || die "the $v NOTES: TLS is on but the config sources carry no tlsSettings"
  fi
done
step "NOTES per sink: ${VARIANTS[*]}"

# ---- 2. the committed plain YAML: the default values but for the TLS key pair, which is the user's Secret. The
# chart's generated pair would put a private key every user of the file shares in the repository, and a new one at
# every render.
PLAIN_TLS_SECRET=registry-adapter-tls
"$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --set tls.existingSecret=$PLAIN_TLS_SECRET \
  >"$WORK/plain.yaml" 2>"$WORK/template-plain.log" || { cat "$WORK/template-plain.log" >&2; die "helm template (plain)"; }
if grep -q '^kind: Secret' "$WORK/plain.yaml"; then die "the plain render holds a Secret"; fi
{
  echo "# Generated by hack/chart-check.sh --update from manifests/chart/registry-adapter with its default values and"
  echo "# tls.existingSecret=$PLAIN_TLS_SECRET:"
  echo "#   helm template $RELEASE manifests/chart/registry-adapter --namespace $NAMESPACE --set tls.existingSecret=$PLAIN_TLS_SECRET"
  echo "# Do not edit: change the chart (or its values) and regenerate. Create the Secret $PLAIN_TLS_SECRET (kubernetes.io/tls,"
  echo "# with ca.crt, for $RELEASE.$NAMESPACE.svc) before applying: manifests/README.md, \"Plain manifest\"."
  cat "$WORK/plain.yaml"
} > "$WORK/registry-adapter.yaml"
if [ "$UPDATE" = 1 ]; then
  cp "$WORK/registry-adapter.yaml" "$RENDERED"
  step "wrote ${RENDERED#"$ROOT"/}"
elif ! diff -u "$RENDERED" "$WORK/registry-adapter.yaml" >"$WORK/stale.diff" 2>&1; then
  head -n 60 "$WORK/stale.diff" >&2
  die "${RENDERED#"$ROOT"/} is stale (or missing): run hack/chart-check.sh --update"
else
  step "${RENDERED#"$ROOT"/} is up to date"
fi

# ---- 3. Kubernetes validation, offline
# The checker's own tests first: the committed render passes, and each kind of mistake is caught by the layer
# meant to catch it (go test caches the result while nothing changed).
(cd "$MC_DIR" && GOFLAGS=-mod=readonly nice -n 10 go test . >"$WORK/mc-test.log" 2>&1) ||
  { cat "$WORK/mc-test.log" >&2; die "hack/manifestcheck tests"; }
files=()
for v in "${VARIANTS[@]}"; do files+=("$WORK/$v.yaml"); done
files+=("$WORK/plain.yaml")
"$MC" k8s "${files[@]}" 2>&1 | sed "s|$WORK/||g" >&2 || die "manifest validation"
step "manifests valid: strict decoding, API schema and validation, pod security restricted, cross-object checks"

# ---- 4. the rendered adapter configuration, parsed by the adapter itself. Sources read the files the pod
# mounts (the Consul token, CA certificates) when they are built, so the paths under /etc/registry-adapter/ are
# moved into a scratch tree of placeholders: a throwaway certificate or key for *.crt, *.pem and *.key, text for
# the rest.
# (Built as make vet and make image build: static, -trimpath, so that the three share one compile.)
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$WORK/registry-adapter" ./cmd/registry-adapter) || die "go build ./cmd/registry-adapter"
"$MC" selfsigned "$WORK" || die "placeholder certificate"
for v in "${VARIANTS[@]}"; do
  "$MC" config "$WORK/$v.yaml" > "$WORK/$v.config.yaml" || die "no adapter config in the $v render"
  mnt=$WORK/mnt-$v
  sed "s|/etc/registry-adapter/|$mnt/etc/registry-adapter/|g" "$WORK/$v.config.yaml" > "$WORK/$v.local.yaml"
  { grep -o "$mnt/[^\"' ,}]*" "$WORK/$v.local.yaml" || true; } | sort -u | while read -r f; do
    mkdir -p "$(dirname "$f")"
    case "$f" in
      *.crt | *.pem) cp "$WORK/placeholder.crt" "$f" ;;
      *.key) cp "$WORK/placeholder.key" "$f" ;;
      *) echo "placeholder-for-chart-check" > "$f" ;;
    esac
  done
  if ! "$WORK/registry-adapter" validate --config "$WORK/$v.local.yaml" >"$WORK/validate-$v.log" 2>&1; then
    sed "s|$mnt||g" "$WORK/validate-$v.log" >&2
    die "the adapter rejects the config.yaml of the $v render"
  fi
  log "  $v: $(sed -e "s|$WORK/||g" "$WORK/validate-$v.log")"
done
step "adapter config validated"

# ---- 5. the istiod values snippets: meshConfig decoded by istio.io/api, and held to what istiod does
"$MC" istiod "$ROOT"/manifests/istiod-values*.yaml 2>&1 | sed "s|$ROOT/||g" >&2 || die "istiod values"
step "istiod values ok"

# ---- 5b. the PrometheusRule: promtool (built from the module proxy, cached) parses every rule, and every alert's
# runbook_url anchor is a heading of docs/operations.md
rules_from=()
for v in "${VARIANTS[@]}"; do grep -q '^kind: PrometheusRule' "$WORK/$v.yaml" && rules_from+=("$v"); done
[ ${#rules_from[@]} -gt 0 ] || die "no values variant renders the PrometheusRule (ci/options-values.yaml should)"
# Every alert's expression, parsed by Prometheus's own PromQL parser (always, whether or not promtool runs below).
rule_renders=()
for v in "${rules_from[@]}"; do rule_renders+=("$WORK/$v.yaml"); done
"$MC" alerts "${rule_renders[@]}" > "$WORK/alerts.json" 2> >(sed "s|$WORK/||g" >&2) || die "alert expressions (PromQL parser)"
# promtool is a large build (Prometheus's module, ~10 minutes cold on 2 cores): built with CHART_CHECK_PROMTOOL=1
# (or PROMTOOL_BIN=...), used whenever it is in the cache, skipped otherwise (manifestcheck's strict decoding and
# bracket check still ran).
promtool_note="promtool skipped (CHART_CHECK_PROMTOOL=1 builds it)"
if [ -n "${PROMTOOL_BIN:-}" ] || [ "${CHART_CHECK_PROMTOOL:-0}" = 1 ] || [ -x "$PROMTOOL" ]; then
  tools_promtool
  promtool_note="promtool check rules"
fi
alerts=()
for v in "${rules_from[@]}"; do
  "$MC" rules "$WORK/$v.yaml" > "$WORK/rules-$v.yaml" || die "extracting the PrometheusRule's groups ($v values)"
  if [ "$promtool_note" = "promtool check rules" ]; then
    "$PROMTOOL" check rules "$WORK/rules-$v.yaml" >"$WORK/promtool.log" 2>&1 ||
      { cat "$WORK/promtool.log" >&2; die "promtool check rules ($v values)"; }
  fi
  anchors=$(grep -o 'runbook_url: .*#[a-z0-9-]*' "$WORK/rules-$v.yaml" | sed 's/.*#//' | sort -u)
  for a in $anchors; do
    grep -qi "^## $a\$" "$ROOT/docs/operations.md" || die "runbook anchor #$a has no '## ' heading in docs/operations.md"
  done
  while read -r a; do alerts+=("$a"); done < <(sed -n 's/^ *- alert: //p' "$WORK/rules-$v.yaml")
done
# Every alert the chart can render is rendered by some ci/ values, so promtool sees each one.
for a in $(grep -o 'alert: RegistryAdapter[A-Za-z]*' "$CHART/templates/prometheusrule.yaml" | sed 's/alert: //' | sort -u); do
  printf '%s\n' "${alerts[@]}" | grep -x "$a" >/dev/null || die "alert $a is rendered by none of the ci/ values"
done
step "PrometheusRule ok: PromQL parsed, $promtool_note (${rules_from[*]}: $(printf '%s\n' "${alerts[@]}" | sort -u | wc -l) alerts), every runbook in docs/operations.md"

# ---- 6. Grafana dashboard: structure, and every metric defined in the Go sources
"$MC" dashboard "$DASHBOARD" > "$WORK/metrics.txt" || die "dashboard ${DASHBOARD#"$ROOT"/}"
# The alerts' metrics too.
cat "$WORK"/rules-*.yaml | grep -o 'registry_adapter_[a-z0-9_]*' | sort -u > "$WORK/rule-metrics.txt"
defined() {
  grep -rqF --include='*.go' --exclude='*_test.go' --exclude-dir=hack --exclude-dir=integration --exclude-dir=.git \
    "\"$1\"" "$ROOT"
}
# The cloud sources' metrics are named by sources/cloudsource from a subsystem and an item word
# (registry_adapter_<subsystem>_requests_total, _<items>_seen, _<items>_skipped, or NewCounter names).
cloud_defined() {
  [[ $1 =~ ^registry_adapter_([a-z0-9]+)_(.+)$ ]] || return 1
  local sub=${BASH_REMATCH[1]} rest=${BASH_REMATCH[2]} f items
  f=$ROOT/sources/${BASH_REMATCH[1]}/metrics.go
  grep -qF "cloudsource.NewMetrics(source, \"$sub\"" "$f" 2>/dev/null || return 1
  items=$(sed -n 's/.*Items: *"\([a-z]*\)".*/\1/p' "$f")
  [ "$rest" = requests_total ] || [ "$rest" = "${items}_seen" ] || [ "$rest" = "${items}_skipped" ] ||
    grep -qF "NewCounter(\"$rest\"" "$f"
}
missing=()
while read -r m; do
  [ -n "$m" ] || continue
  base=$m
  case "$m" in *_bucket | *_sum | *_count) defined "$m" || base=${m%_*} ;; esac
  defined "$base" || cloud_defined "$base" || missing+=("$m")
done < <(sort -u "$WORK/metrics.txt" "$WORK/rule-metrics.txt")
[ ${#missing[@]} -eq 0 ] || die "the dashboard or the alerts query metrics no Go source defines: ${missing[*]}"
step "dashboard ok: $(wc -l < "$WORK/metrics.txt") metrics; alerts: $(wc -l < "$WORK/rule-metrics.txt") adapter metrics; all defined in the Go sources"
log "ok"
