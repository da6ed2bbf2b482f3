#!/usr/bin/env bash
# start-kube.sh — etcd + a bare kube-apiserver (no nodes, no kubelet, no controllers) on 127.0.0.1, for istiod.
#
# Writes into $ISTIOD_RUN_DIR/kube/: sa.key, sa.pub, tokens.csv, kubeconfig, certs/, etcd-data/, etcd.{pid,log},
# apiserver.{pid,log}; and $ISTIOD_RUN_DIR/kube.env. Waits for /readyz (curl with the bearer token), creates
# namespace istio-system, then prints on stdout:
#   export KUBECONFIG=... KUBE_APISERVER_URL=https://127.0.0.1:PORT KUBE_TOKEN=...
#
# Environment:
#   ISTIOD_RUN_DIR       run dir (default $REGISTRY_ADAPTER_CACHE/istiod/run/default); one per test to run side by side
#   ETCD_CLIENT_PORT, ETCD_PEER_PORT, KUBE_APISERVER_PORT   fixed ports (default: free ones)
#   KUBE_TOKEN           static admin token (default: random)
#   KUBE_START_TIMEOUT   seconds to wait for etcd and for /readyz (default 120)
#   ETCD_BIN, KUBE_APISERVER_BIN   binaries (default: from build.sh)
#   KUBE_APISERVER_EXTRA_ARGS      extra apiserver arguments (shell-quoted)
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

TIMEOUT=${KUBE_START_TIMEOUT:-120}
KUBE=$RUN_DIR/kube
mkdir -p "$KUBE"

if pid_alive "$KUBE/apiserver.pid" kube-apiserver && [ -f "$RUN_DIR/kube.env" ]; then
  log "already running in $RUN_DIR"; cat "$RUN_DIR/kube.env"; exit 0
fi
# leftovers of a half-started run
stop_pid "$KUBE/apiserver.pid" kube-apiserver
stop_pid "$KUBE/etcd.pid" etcd
rm -f "$RUN_DIR/kube.env"

resolve_bins
command -v openssl >/dev/null || die "openssl is needed for the service-account key"
command -v curl >/dev/null || die "curl is needed"

# ---- credentials
if [ ! -s "$KUBE/sa.key" ] || [ ! -s "$KUBE/sa.pub" ]; then
  openssl genrsa -out "$KUBE/sa.key" 2048 2>/dev/null
  openssl rsa -in "$KUBE/sa.key" -pubout -out "$KUBE/sa.pub" 2>/dev/null
fi
TOKEN=${KUBE_TOKEN:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}
printf '%s,admin,admin,"system:masters"\n' "$TOKEN" > "$KUBE/tokens.csv"
chmod 600 "$KUBE/tokens.csv" "$KUBE/sa.key"

write_kubeconfig() {
  cat > "$KUBE/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$1
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: $TOKEN
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
EOF
  chmod 600 "$KUBE/kubeconfig"
}

# ---- etcd
start_etcd() {
  local attempt pid deadline
  for attempt in 1 2 3; do
    ETCD_CLIENT=${ETCD_CLIENT_PORT:-$(free_port)}
    ETCD_PEER=${ETCD_PEER_PORT:-$(free_port)}
    rm -rf "$KUBE/etcd-data"
    "$ETCD_BIN" --name=kube --data-dir="$KUBE/etcd-data" \
      --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT" --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT" \
      --listen-peer-urls="http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER" \
      --initial-cluster="kube=http://127.0.0.1:$ETCD_PEER" --initial-cluster-state=new \
      --quota-backend-bytes=$((512 * 1024 * 1024)) \
      </dev/null >"$KUBE/etcd.log" 2>&1 &
    pid=$!
    echo "$pid" > "$KUBE/etcd.pid"
    deadline=$(( $(now_ms) + TIMEOUT * 1000 ))
    while [ "$(now_ms)" -lt "$deadline" ]; do
      if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$KUBE/etcd.pid"
        if grep -q 'address already in use' "$KUBE/etcd.log" && [ "$attempt" -lt 3 ] &&
           [ -z "${ETCD_CLIENT_PORT:-}${ETCD_PEER_PORT:-}" ]; then
          log "etcd port clash, retrying"; continue 2
        fi
        tail -20 "$KUBE/etcd.log" >&2; die "etcd exited (log $KUBE/etcd.log)"
      fi
      if curl -fsS --max-time 1 "http://127.0.0.1:$ETCD_CLIENT/health" 2>/dev/null | grep -q '"health":"true"'; then
        return 0
      fi
      sleep 0.1
    done
    tail -20 "$KUBE/etcd.log" >&2; stop_pid "$KUBE/etcd.pid" etcd; die "etcd not healthy after ${TIMEOUT}s"
  done
}

# ---- kube-apiserver
start_apiserver() {
  local attempt pid deadline code extra=()
  if [ -n "${KUBE_APISERVER_EXTRA_ARGS:-}" ]; then eval "extra=($KUBE_APISERVER_EXTRA_ARGS)"; fi
  for attempt in 1 2 3; do
    API_PORT=${KUBE_APISERVER_PORT:-$(free_port)}
    write_kubeconfig "$API_PORT"
    "$KUBE_APISERVER_BIN" --etcd-servers="http://127.0.0.1:$ETCD_CLIENT" \
      --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" --cert-dir="$KUBE/certs" \
      --service-account-issuer=https://kubernetes.default.svc.cluster.local \
      --service-account-key-file="$KUBE/sa.pub" --service-account-signing-key-file="$KUBE/sa.key" \
      --token-auth-file="$KUBE/tokens.csv" --authorization-mode=RBAC \
      --service-cluster-ip-range=10.96.0.0/16 --enable-priority-and-fairness=false \
      ${extra[@]+"${extra[@]}"} </dev/null >"$KUBE/apiserver.log" 2>&1 &
    pid=$!
    echo "$pid" > "$KUBE/apiserver.pid"
    deadline=$(( $(now_ms) + TIMEOUT * 1000 ))
    while [ "$(now_ms)" -lt "$deadline" ]; do
      if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$KUBE/apiserver.pid"
        if grep -q 'address already in use' "$KUBE/apiserver.log" && [ "$attempt" -lt 3 ] &&
           [ -z "${KUBE_APISERVER_PORT:-}" ]; then
          log "apiserver port clash, retrying"; continue 2
        fi
        tail -20 "$KUBE/apiserver.log" >&2; die "kube-apiserver exited (log $KUBE/apiserver.log)"
      fi
      code=$(curl -ks --max-time 2 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
        "https://127.0.0.1:$API_PORT/readyz" 2>/dev/null || true)
      [ "$code" = 200 ] && return 0
      sleep 0.2
    done
    tail -20 "$KUBE/apiserver.log" >&2; die "kube-apiserver not ready after ${TIMEOUT}s"
  done
}

# on any failure from here on, do not leave half a cluster behind
cleanup_on_failure() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then stop_pid "$KUBE/apiserver.pid" kube-apiserver; stop_pid "$KUBE/etcd.pid" etcd; fi
}
trap cleanup_on_failure EXIT

t0=$(now_ms)
start_etcd
log "etcd healthy on 127.0.0.1:$ETCD_CLIENT after $(( $(now_ms) - t0 )) ms"
t1=$(now_ms)
start_apiserver
log "kube-apiserver ready on 127.0.0.1:$API_PORT after $(( $(now_ms) - t1 )) ms"

code=$(curl -ks --max-time 10 -o "$KUBE/ns.out" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -X POST "https://127.0.0.1:$API_PORT/api/v1/namespaces" \
  --data '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"istio-system"}}' || true)
case $code in 201|409) ;; *) cat "$KUBE/ns.out" >&2; die "creating namespace istio-system: HTTP $code" ;; esac

cat > "$RUN_DIR/kube.env" <<EOF
export KUBECONFIG=$KUBE/kubeconfig
export KUBE_APISERVER_URL=https://127.0.0.1:$API_PORT
export KUBE_TOKEN=$TOKEN
export ETCD_ENDPOINT=http://127.0.0.1:$ETCD_CLIENT
EOF
log "kube ready in $(( $(now_ms) - t0 )) ms; logs in $KUBE"
cat "$RUN_DIR/kube.env"
