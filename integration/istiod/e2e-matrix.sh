#!/usr/bin/env bash
# e2e-matrix.sh — the e2e's core scenarios against every istiod the module proxy here serves: the pinned
# one (./build) and each of ./versions/*. Builds each pilot-discovery once (cached like build.sh's), then runs
# the scenarios with it, and prints one line per Istio line.
#
#   e2e-matrix.sh [NAME...]      (default: default + every directory of ./versions)
#
# Environment: E2E_MATRIX_TESTS (go test -run pattern of the scenarios), and what build.sh reads.
#
# A line passes when every scenario passes, except the expected failures below, which must fail: so a green run
# means exactly what README.md's Compatibility table says, and a fixed or newly broken line turns it red.
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
# expected_failures NAME: the scenarios that fail on that line by design, with the README's reason (one line per
# case, e.g. `1.31-dev-b01690e6db7d) echo TestTLS ;;`). None today: TestTLS fails on b01690e6db7d no longer (with a
# wrong SAN that istiod does not exit at start as later ones do, but never connects, and TestTLS now asserts the
# refusal from its log when it does not exit).
expected_failures() {
  case $1 in
    *) ;;
  esac
}

# verdict NAME EXPECTED LOG [STATUS]: one result line from a run's `go test -v` output (and go test's exit status),
# and its own status (0: as the table says).
verdict() {
  local name=$1 expected=" $2 " log=$3 status=${4:-0} passed failed t unexpected=() missing=()
  passed=$(sed -n 's/^--- PASS: \([A-Za-z0-9_]*\) .*/\1/p' "$log" | tr '\n' ' ')
  failed=$(sed -n 's/^--- FAIL: \([A-Za-z0-9_]*\) .*/\1/p' "$log" | tr '\n' ' ')
  if [ -z "$passed$failed" ]; then echo "$name: FAIL (no scenario ran)"; return 1; fi
  if grep -q '^panic' "$log" || { [ "$status" != 0 ] && [ -z "${failed// }" ]; }; then
    echo "$name: FAIL (go test failed outside the scenarios: a panic, a timeout or the build)"; return 1
  fi
  for t in $failed; do [[ $expected == *" $t "* ]] || unexpected+=("$t failed"); done
  for t in $passed; do [[ $expected == *" $t "* ]] && unexpected+=("$t passed, expected to fail: update the table"); done
  for t in $2; do [[ " $failed " == *" $t "* ]] || [[ " $passed " == *" $t "* ]] || missing+=("$t"); done
  [ ${#missing[@]} -eq 0 ] || unexpected+=("expected failure not run: ${missing[*]}")
  if [ ${#unexpected[@]} -gt 0 ]; then
    local IFS=';'
    echo "$name: FAIL (${unexpected[*]})"; return 1
  fi
  echo "$name: as expected: $(wc -w <<< "$passed") passed${2:+, expected failure: $2}"
}

if [ "${E2E_MATRIX_VERDICT:-}" ]; then  # E2E_MATRIX_VERDICT="NAME LOG": judge a saved log (the script's own check)
  read -r n log <<< "$E2E_MATRIX_VERDICT"
  verdict "$n" "$(expected_failures "$n")" "$log"; exit
fi

results=()
rc=0
for n in "${names[@]}"; do
  istio=; [ "$n" = default ] || istio=$n
  log "== $n: building pilot-discovery"
  ISTIOD_ISTIO=$istio bash "$ISTIOD_DIR/build.sh" pilot-discovery >/dev/null
  log "== $n: $TESTS (expected to fail: $(expected_failures "$n"))"
  t0=$(now_ms)
  out=$(mktemp)
  status=0
  (cd "$ROOT/integration/e2e" && ISTIOD_ISTIO=$istio go test -count=1 -timeout 20m -run "$TESTS" -v ./... 2>&1 |
    grep --line-buffered -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test\.go:[0-9]+:' | tee "$out"; exit "${PIPESTATUS[0]}") || status=$?
  if r=$(verdict "$n" "$(expected_failures "$n")" "$out" "$status"); then
    results+=("$r ($(( ($(now_ms) - t0) / 1000 )) s)")
  else
    results+=("$r"); rc=1
  fi
  rm -f "$out"
done
printf '\ne2e-matrix (%s):\n' "$TESTS"
printf '  %s\n' "${results[@]}"
exit $rc
