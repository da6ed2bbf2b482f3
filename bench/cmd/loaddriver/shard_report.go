package main

// The sharding scenario's section of the report (shard.go).

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/registry-adapter/registry-adapter/bench/internal/measure"
)

func renderShards(o options, cases []*shardCase, loads []string) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	add("Inline ServiceEntries (2 ports, 3 endpoints) spread over K listeners by adapter.ShardOf, one xds:// config source each, unpatched istiod (integration/istiod). "+
		"istiod CPU per change: the sum of /proc/PID/task/*/schedstat (ns) minus istiod's rest rate, from the change until its CPU (/proc/PID/stat) has not moved for 500 ms, nothing polled meanwhile; "+
		"latency: change entering the adapter -> an EDS watcher (sidecar xDS client of istiod asking for that cluster) receives it, measured in a second pass (%d endpoint changes, 3 port additions each). "+
		"Debounce quiet %s (adapter) + 100 ms (istiod). Load average before and after each run: %s.",
		o.shardChanges, o.quiet, strings.Join(loads, " | "))
	add("")
	add("| N | K | istiod CPU / endpoint change, ms: median, p90 (mean) | with EDS watcher: median | endpoint change visible, ms: p50 / p99 | istiod CPU / port added, ms (median of 3) | port added visible, ms (median) | adapter CPU / endpoint change, ms: median | steady churn %.0f%%/min of instances for %s: istiod CPU, cores; adapter, cores; shard pushes per window | cold sync (median of %d): istiod /ready, holds all; istiod CPU to hold all | istiod peak RSS: after sync, after changes, end | istiod rest CPU |",
		o.churnRate*100, o.churn, o.shardColds)
	add("|---:|---:|---|---:|---|---:|---:|---:|---|---|---|---:|")
	for _, c := range cases {
		add("| %s | %d | %s, %s (%s) | %s | %.0f / %.0f | %s | %.0f | %s | %s | %s, %s; %s | %s, %s, %s | %.1f%% |",
			human(c.n), c.k,
			ms(measure.Median(c.ep.istiod)), ms(measure.Quantile(c.ep.istiod, 0.9)), ms(measure.Mean(c.ep.istiod)),
			ms(measure.Median(c.epW.istiod)),
			measure.Quantile(c.epW.lat, 0.5), measure.Quantile(c.epW.lat, 0.99),
			ms(measure.Median(c.port.istiod)), measure.Quantile(c.portW.lat, 0.5),
			ms(measure.Median(c.ep.adapter)), c.churn.cell(),
			c.cold.Round(10*time.Millisecond), c.holds.Round(10*time.Millisecond), c.syncCPU.Round(10*time.Millisecond),
			bytesH(float64(c.rssSync)), bytesH(float64(c.rssChanges)), bytesH(float64(c.peakRSS)), c.restPct)
	}
	add("")
	for _, c := range cases {
		add("- N=%s K=%d: istiod ran %d GC cycles during the %d endpoint changes of the first pass (heap in use after them %s); adapter sync %s, adapter CPU per port added %s ms; istiod busy after an endpoint change (until its last CPU tick) median %s ms; istiod held at the end: %s; "+
			"istiod CPU per endpoint change, ms, in order: %s; per port added: %s; with the watcher: %s; latency per endpoint change, ms: %s; "+
			"istiod CPU at the end %s (schedstat) vs %s (stat).",
			human(c.n), c.k, c.gcCycles, len(c.ep.istiod), bytesH(float64(c.heap)), c.adapterSync.Round(time.Millisecond), ms(measure.Median(c.port.adapter)), ms(measure.Median(c.ep.busy)), c.held,
			msList(c.ep.istiod), msList(c.port.istiod), msList(c.epW.istiod), fList(c.epW.lat), c.cpuCheck[0].Round(time.Millisecond), c.cpuCheck[1])
	}
	return out
}

func msList(ds []time.Duration) string {
	var out []string
	for _, d := range ds {
		out = append(out, strconv.FormatInt(d.Milliseconds(), 10))
	}
	return strings.Join(out, " ")
}

func fList(v []float64) string {
	var out []string
	for _, f := range v {
		out = append(out, strconv.FormatFloat(f, 'f', 0, 64))
	}
	return strings.Join(out, " ")
}

func (c churnCosts) cell() string {
	if c.changes == 0 || c.wall <= 0 {
		return "-"
	}
	per := func(d time.Duration) float64 { return d.Seconds() / c.wall.Seconds() }
	pw := 0.0
	if c.windows > 0 {
		pw = float64(c.shardPushes) / float64(c.windows)
	}
	return fmt.Sprintf("%.3f; %.3f; %.1f (%d changes/s, %d windows)", per(c.istiod), per(c.adapter), pw,
		int(math.Round(float64(c.changes)/c.churnSeconds.Seconds())), c.windows)
}
