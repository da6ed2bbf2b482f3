#!/usr/bin/env bash
# consul.sh — build (once, cached) and run a real dev-mode Consul agent on 127.0.0.1 for integration tests.
#
#   consul.sh install          build or locate the binary; prints its path on stdout
#   consul.sh start [-- ARGS]  install, start `consul agent -dev` on free loopback ports, wait for a leader;
#                              prints `export CONSUL_HTTP_ADDR=127.0.0.1:PORT` on stdout
#   consul.sh stop             stop the agent of CONSUL_STATE_DIR (by its PID file)
#   consul.sh env              print the exports of the running agent of CONSUL_STATE_DIR
#   consul.sh status           exit 0 if the agent of CONSUL_STATE_DIR is running
#
# Environment:
#   CONSUL_VERSION        consul version to build (default 1.22.7)
#   CONSUL_API_PIN        github.com/hashicorp/consul/api version forced into the build (default v1.34.1 for 1.22.7,
#                         empty = keep what consul asks for)
#   CONSUL_MSGPACK_EXCLUDES  go-msgpack versions excluded from the build (default "v1.1.5 v1.1.6")
#   CONSUL_BIN            use this binary instead of building one
#   REGISTRY_ADAPTER_CACHE  cache root (default $HOME/.cache/registry-adapter); binary, stamp and scratch build
#                         module live in $REGISTRY_ADAPTER_CACHE/consul/
#   CONSUL_STATE_DIR      pid/log/env files of one agent (default $REGISTRY_ADAPTER_CACHE/consul/run/default);
#                         use one per test to run several agents side by side
#   CONSUL_EXTRA_ARGS     extra agent arguments, shell-quoted, e.g.
#                         CONSUL_EXTRA_ARGS="-hcl 'acl { enabled = true default_policy = \"deny\" tokens { initial_management = \"root\" } }'"
#                         (arguments after `start --` are appended verbatim as well)
#   CONSUL_HTTP_PORT      fixed HTTP port (default: a free one); CONSUL_SERF_LAN_PORT, CONSUL_SERVER_PORT likewise
#   CONSUL_NODE           node name (default dev)
#   CONSUL_READY_TOKEN    if set, `start` also waits until this ACL token is accepted (/v1/acl/token/self)
#   CONSUL_START_TIMEOUT  seconds to wait for a leader (default 60)
set -euo pipefail

CONSUL_VERSION=${CONSUL_VERSION:-1.22.7}
# consul v1.22.7's go.mod asks for consul/api v1.33.7, which lags the in-tree ./api consul really builds with
# (no ACLAuthMethod.TokenNameFormat / ACLToken.Name): pin the first tag that has them.
if [ -z "${CONSUL_API_PIN+x}" ]; then
  case "$CONSUL_VERSION" in 1.22.7) CONSUL_API_PIN=v1.34.1 ;; *) CONSUL_API_PIN= ;; esac
fi
CONSUL_MSGPACK_EXCLUDES=${CONSUL_MSGPACK_EXCLUDES-v1.1.5 v1.1.6}
CACHE_ROOT=${REGISTRY_ADAPTER_CACHE:-${HOME:-/root}/.cache/registry-adapter}
CACHE=$CACHE_ROOT/consul
BIN=$CACHE/bin/consul-$CONSUL_VERSION
STATE=${CONSUL_STATE_DIR:-$CACHE/run/default}
START_TIMEOUT=${CONSUL_START_TIMEOUT:-60}

log() { echo "[consul.sh] $*" >&2; }
die() { log "$*"; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# Everything that changes the binary; the binary is rebuilt only when this text changes.
build_inputs() {
  printf 'consul=%s\napi=%s\nexclude-go-msgpack=%s\n%s\nflags=-trimpath -s -w\n' \
    "$CONSUL_VERSION" "$CONSUL_API_PIN" "$CONSUL_MSGPACK_EXCLUDES" "$(go version 2>/dev/null || echo go-missing)"
}

up_to_date() { [ -x "$BIN" ] && [ -f "$BIN.stamp" ] && [ "$(cat "$BIN.stamp")" = "$(build_inputs)" ]; }

build_consul() {  # caller holds the lock
  command -v go >/dev/null || die "go is not on PATH"
  local mod=$CACHE/build-$CONSUL_VERSION t0 v
  t0=$(now_ms)
  rm -rf "$mod"; mkdir -p "$mod" "$CACHE/bin"
  {
    printf 'module consulbuild\n\ngo 1.25\n\n'
    if [ -n "$CONSUL_MSGPACK_EXCLUDES" ]; then
      printf 'exclude (\n'; for v in $CONSUL_MSGPACK_EXCLUDES; do printf '\tgithub.com/hashicorp/go-msgpack %s\n' "$v"; done; printf ')\n\n'
    fi
    printf 'require github.com/hashicorp/consul v%s\n' "$CONSUL_VERSION"
  } > "$mod/go.mod"
  printf '//go:build tools\n\npackage consulbuild\n\nimport _ "github.com/hashicorp/consul"\n' > "$mod/tools.go"
  log "building consul v$CONSUL_VERSION (api pin '${CONSUL_API_PIN}') in $mod; about 3 min cold on an idle 2-core machine (measured 198 s), longer under load"
  (
    cd "$mod"
    export GOTOOLCHAIN=local GOFLAGS=-mod=mod
    if [ -n "$CONSUL_API_PIN" ]; then go mod edit -require="github.com/hashicorp/consul/api@$CONSUL_API_PIN"; fi
    nice -n 10 go mod tidy
    nice -n 10 go build -trimpath -o "$BIN.tmp.$$" \
      -ldflags "-s -w -X github.com/hashicorp/consul/version.GitCommit=modproxy-v$CONSUL_VERSION" \
      github.com/hashicorp/consul
  ) || { rm -f "$BIN.tmp.$$"; die "consul build failed"; }
  # Captured, not piped into grep -q: with pipefail, grep exiting at the first match can SIGPIPE the binary
  # and fail a good build (seen under load).
  v=$("$BIN.tmp.$$" version 2>&1) || true
  case "$v" in *"Consul v$CONSUL_VERSION"*) ;; *) rm -f "$BIN.tmp.$$"; die "built binary does not report v$CONSUL_VERSION: $v" ;; esac
  mv -f "$BIN.tmp.$$" "$BIN"
  build_inputs > "$BIN.stamp.tmp.$$" && mv -f "$BIN.stamp.tmp.$$" "$BIN.stamp"
  # $CACHE/bin/consul for tools that look consul up on PATH (e.g. consul/sdk/testutil)
  ln -sfn "consul-$CONSUL_VERSION" "$CACHE/bin/.consul.tmp.$$" && mv -Tf "$CACHE/bin/.consul.tmp.$$" "$CACHE/bin/consul"
  log "built $BIN in $(( ($(now_ms) - t0) / 1000 )) s ($(du -h "$BIN" | cut -f1))"
}

install_consul() {
  if [ -n "${CONSUL_BIN:-}" ]; then
    [ -x "$CONSUL_BIN" ] || die "CONSUL_BIN=$CONSUL_BIN is not executable"
    BIN=$CONSUL_BIN; return
  fi
  up_to_date && return
  mkdir -p "$CACHE"
  # flock in a subshell: the lock fd must not leak into the agent started later.
  (
    exec 9>"$CACHE/build.lock"
    flock 9
    up_to_date || build_consul   # another caller may have built it while we waited
  )
}

free_port() {  # a random port free for TCP and UDP (serf uses both), below the ephemeral range
  local p
  while :; do
    p=$(( 20000 + RANDOM % 12000 ))
    ss -Hltun "( sport = :$p )" 2>/dev/null | grep -q . || { echo "$p"; return; }
  done
}

pid_alive() {  # pid file -> 0 if that process is alive and is a consul agent
  local pid
  [ -f "$1" ] || return 1
  pid=$(cat "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q 'consul.* agent'
}

start_consul() {
  install_consul
  mkdir -p "$STATE"
  if pid_alive "$STATE/consul.pid" && [ -f "$STATE/env" ]; then
    log "already running (pid $(cat "$STATE/consul.pid"))"; cat "$STATE/env"; return
  fi
  rm -f "$STATE/consul.pid" "$STATE/env"
  local extra=()
  if [ -n "${CONSUL_EXTRA_ARGS:-}" ]; then eval "extra=($CONSUL_EXTRA_ARGS)"; fi
  extra+=("$@")
  local attempt http lan srv pid t0 leader deadline
  for attempt in 1 2 3; do   # a port picked free can be taken before the agent binds it: retry with new ones
    http=${CONSUL_HTTP_PORT:-$(free_port)}
    lan=${CONSUL_SERF_LAN_PORT:-$(free_port)}
    srv=${CONSUL_SERVER_PORT:-$(free_port)}
    t0=$(now_ms)
    "$BIN" agent -dev -node "${CONSUL_NODE:-dev}" -bind 127.0.0.1 -client 127.0.0.1 -advertise 127.0.0.1 \
      -http-port "$http" -serf-lan-port "$lan" -server-port "$srv" \
      -serf-wan-port -1 -dns-port -1 -grpc-port -1 -grpc-tls-port -1 \
      ${extra[@]+"${extra[@]}"} </dev/null >"$STATE/consul.log" 2>&1 &
    pid=$!
    echo "$pid" > "$STATE/consul.pid"
    deadline=$(( $(now_ms) + START_TIMEOUT * 1000 ))
    while [ "$(now_ms)" -lt "$deadline" ]; do
      if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$STATE/consul.pid"
        if grep -q 'address already in use' "$STATE/consul.log" && [ "$attempt" -lt 3 ] &&
           [ -z "${CONSUL_HTTP_PORT:-}${CONSUL_SERF_LAN_PORT:-}${CONSUL_SERVER_PORT:-}" ]; then
          log "port clash, retrying with other ports"; continue 2
        fi
        tail -20 "$STATE/consul.log" >&2; die "consul agent exited (log $STATE/consul.log)"
      fi
      leader=$(curl -fsS --max-time 1 "http://127.0.0.1:$http/v1/status/leader" 2>/dev/null || true)
      if [ -n "$leader" ] && [ "$leader" != '""' ]; then
        if [ -n "${CONSUL_READY_TOKEN:-}" ] && ! curl -fsS --max-time 1 -o /dev/null \
             -H "X-Consul-Token: $CONSUL_READY_TOKEN" "http://127.0.0.1:$http/v1/acl/token/self" 2>/dev/null; then
          sleep 0.1; continue
        fi
        echo "export CONSUL_HTTP_ADDR=127.0.0.1:$http" > "$STATE/env"
        log "leader after $(( $(now_ms) - t0 )) ms; pid $pid; log $STATE/consul.log"
        cat "$STATE/env"; return
      fi
      sleep 0.1
    done
    tail -20 "$STATE/consul.log" >&2
    stop_consul
    die "no leader after ${START_TIMEOUT}s"
  done
}

stop_consul() {
  local f=$STATE/consul.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if pid_alive "$f"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then log "pid $pid ignored SIGTERM for 10s, killing"; kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$f" "$STATE/env"
}

usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

cmd=${1:-start}; [ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
case "$cmd" in
  install) install_consul; echo "$BIN" ;;
  start)   start_consul "$@" ;;
  stop)    stop_consul ;;
  env)     if [ -f "$STATE/env" ] && pid_alive "$STATE/consul.pid"; then cat "$STATE/env"; else die "no agent running in $STATE"; fi ;;
  status)  pid_alive "$STATE/consul.pid" ;;
  -h|--help|help) usage ;;
  *) usage ;;
esac
