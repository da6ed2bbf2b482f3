#!/usr/bin/env bash
# start-istiod.sh — run an unpatched istiod (pilot-discovery discovery --registries=Kubernetes) on 127.0.0.1 against
# the kube-apiserver of start-kube.sh (same ISTIOD_RUN_DIR).
#
#   start-istiod.sh [--no-wait|--wait-listen|--wait-ready] [MESH_CONFIG.yaml] [-- EXTRA pilot-discovery ARGS]
#
# Mesh config, first match wins: the MESH_CONFIG argument; $ISTIOD_MESH_CONFIG; a generated one with
#   configSources: [{address: $ISTIOD_CONFIG_SOURCE}] when ISTIOD_CONFIG_SOURCE is set (e.g. xds://127.0.0.1:15999;
#   several sources, e.g. the shards of one adapter, separated by spaces or commas:
#   "xds://127.0.0.1:15999,xds://127.0.0.1:16000"); otherwise a generated one without configSources (istiod then
#   becomes ready on its own).
# With an xds:// config source istiod exits at start if the source refuses the connection, and is ready only once
# the source answered every requested type: start the source first, and use --no-wait/--wait-listen if the
# caller wants to check readiness itself.
#
# Writes $ISTIOD_RUN_DIR/istiod.{pid,log}, istiod.env, mesh.yaml (copy in use), istiod-work/ (istiod's CWD), and
# prints on stdout:
#   export ISTIOD_HTTP_ADDR=127.0.0.1:P (/ready, /debug/*)  ISTIOD_GRPC_ADDR (plain xDS)  ISTIOD_SECURE_GRPC_ADDR
#          ISTIOD_MONITORING_ADDR (/metrics)  ISTIOD_HTTPS_ADDR (webhooks)  ISTIOD_CTRLZ_PORT  ISTIOD_PID
#
# Environment:
#   ISTIOD_RUN_DIR          run dir shared with start-kube.sh (default $REGISTRY_ADAPTER_CACHE/istiod/run/default)
#   ISTIOD_WAIT             ready (default: poll /ready until 200) | listen (until the HTTP port answers) | none
#   ISTIOD_READY_TIMEOUT    seconds (default 120)
#   ISTIOD_HTTP_PORT ISTIOD_GRPC_PORT ISTIOD_SECURE_GRPC_PORT ISTIOD_HTTPS_PORT ISTIOD_MONITORING_PORT
#   ISTIOD_CTRLZ_PORT       fixed ports (default: free ones)
#   ISTIOD_KUBECONFIG       default $ISTIOD_RUN_DIR/kube/kubeconfig
#   ISTIOD_LOG_LEVEL        --log_output_level (default default:info)
#   ISTIOD_EXTRA_ARGS       extra pilot-discovery arguments (shell-quoted)
#   PILOT_DISCOVERY_BIN     binary (default: from build.sh)
#   Any other variable (PILOT_*, ISTIO_*...) is inherited by istiod.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

WAIT=${ISTIOD_WAIT:-ready}
MESH=${ISTIOD_MESH_CONFIG:-}
while [ $# -gt 0 ]; do
  case $1 in
    --no-wait) WAIT=none ;;
    --wait-listen) WAIT=listen ;;
    --wait-ready) WAIT=ready ;;
    --) shift; break ;;
    -*) die "unknown option $1" ;;
    *) MESH=$1 ;;
  esac
  shift
done
case $WAIT in ready|listen|none) ;; *) die "ISTIOD_WAIT must be ready, listen or none" ;; esac
TIMEOUT=${ISTIOD_READY_TIMEOUT:-120}
KUBECONFIG_FILE=${ISTIOD_KUBECONFIG:-$RUN_DIR/kube/kubeconfig}
[ -f "$KUBECONFIG_FILE" ] || die "no kubeconfig at $KUBECONFIG_FILE: run start-kube.sh with the same ISTIOD_RUN_DIR first"
mkdir -p "$RUN_DIR/istiod-work"

if pid_alive "$RUN_DIR/istiod.pid" pilot-discovery; then
  die "istiod already running in $RUN_DIR (pid $(cat "$RUN_DIR/istiod.pid")): run 'stop.sh istiod' first"
fi
rm -f "$RUN_DIR/istiod.pid" "$RUN_DIR/istiod.env"

if [ -z "${PILOT_DISCOVERY_BIN:-}" ]; then eval "$("$ISTIOD_DIR/build.sh" pilot-discovery)"; fi

# mesh config: always run from a copy in the run dir, so the caller may delete or rewrite its file
if [ -n "$MESH" ]; then
  [ -f "$MESH" ] || die "mesh config $MESH not found"
  [ "$(readlink -f "$MESH")" = "$(readlink -f "$RUN_DIR/mesh.yaml")" ] || cp "$MESH" "$RUN_DIR/mesh.yaml"
else
  {
    echo "rootNamespace: istio-system"
    echo "trustDomain: cluster.local"
    sources=()
    IFS=', ' read -r -a fields <<< "${ISTIOD_CONFIG_SOURCE:-}"
    for f in ${fields[@]+"${fields[@]}"}; do [ -z "$f" ] || sources+=("$f"); done
    if [ ${#sources[@]} -gt 0 ]; then
      echo "configSources:"
      printf -- '- address: %s\n' "${sources[@]}"
    fi
  } > "$RUN_DIR/mesh.yaml"
fi
echo "networks: {}" > "$RUN_DIR/meshNetworks.yaml"

extra=()
if [ -n "${ISTIOD_EXTRA_ARGS:-}" ]; then eval "extra=($ISTIOD_EXTRA_ARGS)"; fi
extra+=("$@")

launch() {
  HTTP=${ISTIOD_HTTP_PORT:-$(free_port)}
  GRPC=${ISTIOD_GRPC_PORT:-$(free_port)}
  SGRPC=${ISTIOD_SECURE_GRPC_PORT:-$(free_port)}
  HTTPS=${ISTIOD_HTTPS_PORT:-$(free_port)}
  MON=${ISTIOD_MONITORING_PORT:-$(free_port)}
  CTRLZ=${ISTIOD_CTRLZ_PORT:-$(free_port)}
  # istiod resolves ./etc and ./var relative to its working directory
  ( cd "$RUN_DIR/istiod-work" && exec env POD_NAME="${POD_NAME:-istiod-test}" POD_NAMESPACE=istio-system \
      "$PILOT_DISCOVERY_BIN" discovery --registries=Kubernetes --kubeconfig="$KUBECONFIG_FILE" \
      --meshConfig="$RUN_DIR/mesh.yaml" --networksConfig="$RUN_DIR/meshNetworks.yaml" \
      --namespace=istio-system --domain=cluster.local \
      --httpAddr="127.0.0.1:$HTTP" --monitoringAddr="127.0.0.1:$MON" \
      --grpcAddr="127.0.0.1:$GRPC" --secureGRPCAddr="127.0.0.1:$SGRPC" --httpsAddr="127.0.0.1:$HTTPS" \
      --ctrlz_address=127.0.0.1 --ctrlz_port="$CTRLZ" \
      --log_output_level="${ISTIOD_LOG_LEVEL:-default:info}" \
      ${extra[@]+"${extra[@]}"} ) </dev/null >"$RUN_DIR/istiod.log" 2>&1 &
  PID=$!
  echo "$PID" > "$RUN_DIR/istiod.pid"
  cat > "$RUN_DIR/istiod.env" <<EOF
export ISTIOD_HTTP_ADDR=127.0.0.1:$HTTP
export ISTIOD_GRPC_ADDR=127.0.0.1:$GRPC
export ISTIOD_SECURE_GRPC_ADDR=127.0.0.1:$SGRPC
export ISTIOD_HTTPS_ADDR=127.0.0.1:$HTTPS
export ISTIOD_MONITORING_ADDR=127.0.0.1:$MON
export ISTIOD_CTRLZ_PORT=$CTRLZ
export ISTIOD_PID=$PID
EOF
}

t0=$(now_ms)
for attempt in 1 2 3; do
  launch
  [ "$WAIT" = none ] && { log "started pid $PID (not waiting); log $RUN_DIR/istiod.log"; cat "$RUN_DIR/istiod.env"; exit 0; }
  deadline=$(( $(now_ms) + TIMEOUT * 1000 ))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    if ! kill -0 "$PID" 2>/dev/null; then
      rm -f "$RUN_DIR/istiod.pid" "$RUN_DIR/istiod.env"
      if grep -q 'address already in use' "$RUN_DIR/istiod.log" && [ "$attempt" -lt 3 ] && [ -z "${ISTIOD_HTTP_PORT:-}${ISTIOD_GRPC_PORT:-}${ISTIOD_SECURE_GRPC_PORT:-}${ISTIOD_HTTPS_PORT:-}${ISTIOD_MONITORING_PORT:-}${ISTIOD_CTRLZ_PORT:-}" ]; then
        log "port clash, retrying with other ports"; continue 2
      fi
      tail -20 "$RUN_DIR/istiod.log" >&2; die "istiod exited (log $RUN_DIR/istiod.log)"
    fi
    code=$(curl -s --max-time 1 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP/ready" 2>/dev/null || true)
    if [ "$code" = 200 ] || { [ "$WAIT" = listen ] && [ -n "$code" ] && [ "$code" != 000 ]; }; then
      log "istiod pid $PID $([ "$code" = 200 ] && echo ready || echo "listening (/ready $code)") after $(( $(now_ms) - t0 )) ms; log $RUN_DIR/istiod.log"
      cat "$RUN_DIR/istiod.env"; exit 0
    fi
    sleep 0.2
  done
  tail -20 "$RUN_DIR/istiod.log" >&2
  stop_pid "$RUN_DIR/istiod.pid" pilot-discovery
  rm -f "$RUN_DIR/istiod.env"
  die "istiod not $WAIT after ${TIMEOUT}s"
done
