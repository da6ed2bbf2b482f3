# lib.sh — helpers shared by the integration/istiod scripts (sourced, not executed).
# shellcheck shell=bash

ISTIOD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${REGISTRY_ADAPTER_CACHE:-${HOME:-/root}/.cache/registry-adapter}
ISTIOD_CACHE=$CACHE_ROOT/istiod
# shellcheck disable=SC2034  # used by the sourcing scripts
RUN_DIR=${ISTIOD_RUN_DIR:-$ISTIOD_CACHE/run/default}

log() { echo "[$(basename "$0")] $*" >&2; }
die() { log "$*"; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# A random port free for TCP (and UDP), below the ephemeral range. Ports are re-checked at bind time by
# the callers (retry on "address already in use").
free_port() {
  local p
  while :; do
    p=$(( 20000 + RANDOM % 12000 ))
    ss -Hltun "( sport = :$p )" 2>/dev/null | grep -q . && continue
    # do not hand out the same port twice within one script run
    case " ${_HANDED_OUT_PORTS:-} " in *" $p "*) continue ;; esac
    _HANDED_OUT_PORTS="${_HANDED_OUT_PORTS:-} $p"
    echo "$p"; return
  done
}

# pid_alive PIDFILE NAME: the recorded process is alive and its command line mentions NAME
# (guards against killing a recycled PID).
pid_alive() {
  local pid
  [ -f "$1" ] || return 1
  pid=$(cat "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

# stop_pid PIDFILE NAME [TIMEOUT_S]: SIGTERM, wait, SIGKILL after the timeout; removes the pid file.
stop_pid() {
  local f=$1 name=$2 timeout=${3:-15} pid i
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if pid_alive "$f" "$name"; then
    kill "$pid" 2>/dev/null || true
    for (( i = 0; i < timeout * 10; i++ )); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) ignored SIGTERM for ${timeout}s, sending SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
      for (( i = 0; i < 50; i++ )); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  rm -f "$f"
}

# Resolve the binaries: explicit env first, else build.sh (a no-op when the cache is warm).
resolve_bins() {
  if [ -z "${PILOT_DISCOVERY_BIN:-}" ] || [ -z "${KUBE_APISERVER_BIN:-}" ] || [ -z "${ETCD_BIN:-}" ]; then
    local exports
    exports=$("$ISTIOD_DIR/build.sh") || die "build.sh failed"
    eval "$exports"
  fi
}
