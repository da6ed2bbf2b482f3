#!/usr/bin/env bash
# demo.sh — the five-minute tour: a local Consul dev agent with a few VM services, the adapter watching it, what
# istiod would receive, and a live change flowing through. Stops everything it started and exits by itself.
#
#   scripts/demo.sh            (make demo)
#   ISTIOD=1 scripts/demo.sh   (make demo ISTIOD=1): also runs a real istiod against the adapter and shows its view
#
# Needs only Go; Consul (and with ISTIOD=1 istiod, kube-apiserver, etcd) are built from the module proxy on first
# use and cached in ~/.cache/registry-adapter.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=$(mktemp -d "${TMPDIR:-/tmp}/registry-adapter-demo.XXXXXX")
export CONSUL_STATE_DIR=$RUN/consul ISTIOD_RUN_DIR=$RUN/istiod
ADAPTER_PID=

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() {
  set +e
  [ -n "$ADAPTER_PID" ] && kill "$ADAPTER_PID" 2>/dev/null && wait "$ADAPTER_PID" 2>/dev/null
  [ "${ISTIOD:-0}" = 1 ] && bash integration/istiod/stop.sh >/dev/null 2>&1
  bash integration/consul/consul.sh stop >/dev/null 2>&1
  rm -rf "$RUN"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
  || echo $(( 20000 + RANDOM % 10000 )); }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  for _ in $(seq $(( secs * 10 ))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $what" >&2; return 1
}

bold "Building the adapter"
go build -o "$RUN/registry-adapter" ./cmd/registry-adapter

bold "Starting a Consul dev agent on 127.0.0.1 (built from source on first use, ~6-10 min; cached after)"
eval "$(bash integration/consul/consul.sh start)"
C=http://$CONSUL_HTTP_ADDR
put() { curl -fsS -o /dev/null -X PUT --data "$2" "$C$1"; }

bold "Registering sample VM services in Consul"
# web: two VMs, HTTP (from service meta), version labels from key=value tags.
for i in 1 2; do
  put /v1/catalog/register "{\"Node\":\"vm-web-$i\",\"Address\":\"10.10.0.$i\",\"NodeMeta\":{\"zone\":\"zone-$i\"},
    \"Service\":{\"ID\":\"web\",\"Service\":\"web\",\"Port\":8080,\"Tags\":[\"version=v$i\"],\"Meta\":{\"protocol\":\"http\"}},
    \"Check\":{\"CheckID\":\"web\",\"Name\":\"web\",\"Status\":\"passing\",\"ServiceID\":\"web\"}}"
done
# payments: gRPC, one healthy instance and one failing its health check (left out).
for i in 1 2; do st=passing; [ "$i" = 2 ] && st=critical
  put /v1/catalog/register "{\"Node\":\"vm-pay-$i\",\"Address\":\"10.20.0.$i\",
    \"Service\":{\"ID\":\"payments\",\"Service\":\"payments\",\"Port\":9090,\"Tags\":[\"protocol|grpc\",\"env=prod\"]},
    \"Check\":{\"CheckID\":\"payments\",\"Name\":\"payments\",\"Status\":\"$st\",\"ServiceID\":\"payments\"}}"
done
# db: plain TCP (the default protocol), and a Connect sidecar proxy that the adapter skips.
put /v1/agent/service/register '{"ID":"db-1","Name":"db","Port":5432,"Address":"10.30.0.1","Connect":{"SidecarService":{}}}'
curl -fsS "$C/v1/catalog/services" | python3 -m json.tool 2>/dev/null || curl -fsS "$C/v1/catalog/services"

XDS=127.0.0.1:$(free_port); DEBUG=127.0.0.1:$(free_port)
cat > "$RUN/config.yaml" <<EOF
server: {listen: "$XDS", debugListen: "$DEBUG"}
output: {}   # the default namespace, registry-adapter-entries; mode: inline, the default: instances are ServiceEntry endpoints
debounce: {quiet: 100ms, max: 1s}
log: {format: console}
sources:
- name: dc1
  consul: {address: "$CONSUL_HTTP_ADDR", zoneMetaKey: zone}
EOF
bold "Starting the adapter (config: $RUN/config.yaml)"
cat "$RUN/config.yaml"
"$RUN/registry-adapter" run --config "$RUN/config.yaml" > "$RUN/adapter.log" 2>&1 &
ADAPTER_PID=$!
wait_for 30 "the adapter to sync" curl -fsS "http://$DEBUG/readyz"

bold "What istiod receives over xds://$XDS (the adapter's /debug/resources)"
curl -fsS "http://$DEBUG/debug/resources"

if [ "${ISTIOD:-0}" = 1 ]; then
  bold "Starting a real istiod (kube-apiserver + etcd + pilot-discovery on 127.0.0.1; first build ~15 min)"
  bash integration/istiod/start-kube.sh > "$RUN/kube.env"
  ISTIOD_CONFIG_SOURCE=xds://$XDS bash integration/istiod/start-istiod.sh > "$RUN/istiod.env"
  eval "$(cat "$RUN/istiod.env")"
  bold "istiod's own view, compared with Consul by the fidelity checker"
  wait_for 30 "istiod to converge" "$RUN/registry-adapter" check --config "$RUN/config.yaml" --istiod "http://$ISTIOD_HTTP_ADDR"
  "$RUN/registry-adapter" check --config "$RUN/config.yaml" --istiod "http://$ISTIOD_HTTP_ADDR" 2>/dev/null
  curl -fsS "http://$ISTIOD_HTTP_ADDR/debug/registryz" | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    if s["Attributes"]["Labels"].get("app.kubernetes.io/managed-by") == "registry-adapter":
        print(" ", s["hostname"], [p["name"] + "/" + p["protocol"] for p in s["ports"]])'
fi

bold "A live change: vm-web-2 is deregistered from Consul"
put /v1/catalog/deregister '{"Node":"vm-web-2"}'
wait_for 30 "the change to reach the adapter" sh -c "! curl -fsS 'http://$DEBUG/debug/resources?kind=ServiceEntry' | grep -q 10.10.0.2"
echo "ServiceEntries and their endpoints now served:"
curl -fsS "http://$DEBUG/debug/resources?kind=ServiceEntry" | grep -E '^  name:|^  - address:' | sed 's/^/  /'
echo "The adapter logged:"
grep -E 'published changes' "$RUN/adapter.log" | tail -1 | sed 's/^/  /'
if [ "${ISTIOD:-0}" = 1 ]; then
  wait_for 30 "istiod to converge" "$RUN/registry-adapter" check --config "$RUN/config.yaml" --istiod "http://$ISTIOD_HTTP_ADDR"
  echo "istiod converged:"; "$RUN/registry-adapter" check --config "$RUN/config.yaml" --istiod "http://$ISTIOD_HTTP_ADDR" 2>/dev/null | sed 's/^/  /'
fi

bold "Metrics excerpt"
curl -fsS "http://$DEBUG/metrics" | grep -E '^registry_adapter_(server_resources|source_instances|changes_applied_total|debounce_windows_total)' | sed 's/^/  /'

bold "Done: stopping everything the demo started"
