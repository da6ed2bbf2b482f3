#!/usr/bin/env bash
# bench.sh — `make bench`: the Go benchmarks (-benchmem) and the load driver, one table with every figure also as a
# ratio to a floor measured in the same run. See BENCHMARKS.md for what each figure means and the latest results.
#
# Environment:
#   BENCH_OUT        directory for the raw outputs (default .run/bench); the table is also written to $BENCH_OUT/table.md
#   BENCH_QUICK=1    a short run (about 5 minutes): N = 1k and 10k, no 100k-instance WorkloadEntry set, Consul at 1k
#                    only, no istiod, Go benchmarks at -benchtime 100ms
#   BENCH_CONSUL=0   skip the Consul scenarios (and so istiod); BENCH_ISTIOD=0 skip istiod only
#   BENCH_ARGS       extra load driver flags (loaddriver -h lists them), e.g. BENCH_ARGS="-profile .run/bench/prof"
#   BENCH_TIME       -benchtime of the Go benchmarks (default 300ms)
# Takes about 13 minutes on 2 cores (first run: plus the Consul build, see integration/consul/consul.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
OUT=${BENCH_OUT:-.run/bench}
mkdir -p "$OUT"
log() { echo "[bench.sh $(date +%H:%M:%S)] $*" >&2; }

log "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(go version | cut -d' ' -f3); load: $(cut -d' ' -f1-3 /proc/loadavg)"
if awk '{exit !($1 >= 1)}' /proc/loadavg; then
  log "warning: load average is $(cut -d' ' -f1 /proc/loadavg) (>= 1): other work competes for the 2 cores, figures will be noisy"
fi

log "building the load driver"
go build -o "$OUT/loaddriver" ./bench/cmd/loaddriver

args=(-out "$OUT/table.md" -gobench "$OUT/gobench.txt")
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  args+=(-sizes 1000,10000 -we-instances 0 -consul-services 1000 -consul-large "" -istiod=false -churn 10s)
  : "${BENCH_TIME:=100ms}"
fi
[ "${BENCH_CONSUL:-1}" = 0 ] && args+=(-consul=false -istiod=false)
[ "${BENCH_ISTIOD:-1}" = 0 ] && args+=(-istiod=false)
if [ "${BENCH_CONSUL:-1}" != 0 ]; then
  log "building or locating consul (integration/consul/consul.sh; the first time about 3 minutes on an idle machine)"
  bash integration/consul/consul.sh install >/dev/null
fi

log "Go benchmarks (go test -bench -benchmem)"
go test -run '^$' -benchmem -benchtime "${BENCH_TIME:-300ms}" -timeout 20m \
  -bench 'Floor|EncodeShared|Snapshot|CacheApply|ResponseEncode|FlushOneChange|NoopRefresh|ColdFlush|BenchmarkService|ResourceAny' \
  ./bench/floor ./server ./adapter ./convert > "$OUT/gobench.txt" 2>&1 || gofail=1
grep -E '^(Benchmark|ok|FAIL|---)' "$OUT/gobench.txt" >&2 || true
if [ "${gofail:-0}" = 1 ]; then
  log "some Go benchmarks failed (see $OUT/gobench.txt); going on with the load driver"
  grep -vE '^(Benchmark|ok|PASS|goos|goarch|pkg|cpu)' "$OUT/gobench.txt" | head -20 >&2 || true
fi

log "load driver"
# shellcheck disable=SC2086
"$OUT/loaddriver" "${args[@]}" ${BENCH_ARGS:-} || rc=$?
log "done; table in $OUT/table.md"
exit "${rc:-${gofail:-0}}"
