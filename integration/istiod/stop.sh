#!/usr/bin/env bash
# stop.sh — stop what start-istiod.sh / start-kube.sh started in $ISTIOD_RUN_DIR, by recorded PID only.
#
#   stop.sh [all|istiod|kube]     (default all: istiod, then kube-apiserver, then etcd — etcd first hangs the apiserver)
#
# Environment: ISTIOD_RUN_DIR (default $REGISTRY_ADAPTER_CACHE/istiod/run/default), ISTIOD_STOP_TIMEOUT (s, default 15)
# ISTIOD_CLEAN=1 also removes etcd-data and istiod-work.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

T=${ISTIOD_STOP_TIMEOUT:-15}
what=${1:-all}
case $what in all|istiod|kube) ;; *) die "usage: stop.sh [all|istiod|kube]" ;; esac

if [ "$what" != kube ]; then
  stop_pid "$RUN_DIR/istiod.pid" pilot-discovery "$T"
  rm -f "$RUN_DIR/istiod.env"
fi
if [ "$what" != istiod ]; then
  stop_pid "$RUN_DIR/kube/apiserver.pid" kube-apiserver "$T"
  stop_pid "$RUN_DIR/kube/etcd.pid" etcd "$T"
  rm -f "$RUN_DIR/kube.env"
fi
if [ "${ISTIOD_CLEAN:-}" = 1 ]; then
  rm -rf "$RUN_DIR/kube/etcd-data" "$RUN_DIR/istiod-work"
fi
