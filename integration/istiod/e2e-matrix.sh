#!/usr/bin/env bash
# e2e-matrix.sh — the e2e's core scenarios against every istiod the module proxy here serves (issue 18): the pinned
# one (./build) and each of ./versions/*. Builds each pilot-discovery once (cached like build.sh's), then runs
# the scenarios with it, and prints one line per Istio line.
#
#   e2e-matrix.sh [NAME...]      (default: default + every directory of ./versions)
#
# Environment: E2E_MATRIX_TESTS (go test -run pattern of the scenarios), and what build.sh reads.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$ISTIOD_DIR/../.." && pwd)
# sync and readiness, a change, a deregistration, a restart of the adapter, TLS to istiod
TESTS=${E2E_MATRIX_TESTS:-'^(TestIstiodHoldsExactlyWhatIsServed|TestReadyOnlyAfterAdapterAnswered|TestConsulEndpointLifecycle|TestAdapterRestart|TestTLS)$'}
names=("$@")
if [ ${#names[@]} = 0 ]; then
  names=(default)
  for d in "$ISTIOD_DIR"/versions/*/; do names+=("$(basename "$d")"); done
fi
results=()
rc=0
for n in "${names[@]}"; do
  istio=; [ "$n" = default ] || istio=$n
  log "== $n: building pilot-discovery"
  ISTIOD_ISTIO=$istio bash "$ISTIOD_DIR/build.sh" pilot-discovery >/dev/null
  log "== $n: $TESTS"
  t0=$(now_ms)
  if (cd "$ROOT/integration/e2e" && ISTIOD_ISTIO=$istio go test -count=1 -timeout 20m -run "$TESTS" -v ./... 2>&1 |
      grep --line-buffered -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test\.go:[0-9]+:'; exit "${PIPESTATUS[0]}"); then
    results+=("$n: pass ($(( ($(now_ms) - t0) / 1000 )) s)")
  else
    results+=("$n: FAIL"); rc=1
  fi
done
printf '\ne2e-matrix (%s):\n' "$TESTS"
printf '  %s\n' "${results[@]}"
exit $rc
