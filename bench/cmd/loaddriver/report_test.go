package main

// Golden tests of the report code: every table and section the load driver
// prints, built from fixed measurements (nothing runs), so that a refactor
// of the scenarios cannot change what people and BENCHMARKS.md read.
// `go test ./bench/cmd/loaddriver -update` rewrites testdata/*.golden.

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/served"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// golden compares got with testdata/name.golden (or rewrites it with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the output (run with -update after checking the change):\n%s", path, lineDiff(string(want), got))
	}
}

// lineDiff lists the lines that differ, with their numbers.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, c string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			c = g[i]
		}
		if a != c {
			fmt.Fprintf(&b, "line %d:\n  want %s\n  got  %s\n", i+1, a, c)
		}
	}
	return b.String()
}

// fixedOptions are the flag defaults that the report prints.
func fixedOptions() options {
	return options{quiet: 100 * time.Millisecond, max: time.Second, decode: true, churn: 20 * time.Second, churnRate: 0.01,
		consulKind: "address", consulChanges: 100, consulRest: 20 * time.Second, shardChanges: 20, shardColds: 3,
		compareChanges: 10, compareTimeout: 20 * time.Minute}
}

func fixedReport() *report {
	return &report{
		start:   time.Date(2026, 12, 6, 22, 0, 0, 0, time.UTC),
		opts:    fixedOptions(),
		env:     []string{"machine: 2 CPUs (Test CPU), go1.x linux/amd64", "load average at start: 0.10 0.20 0.30"},
		loadAvg: func() string { return "0.40 0.50 0.60" },
		since:   func(time.Time) time.Duration { return 754*time.Second + 400*time.Millisecond },
	}
}

// fixedFloors is a floor set of services inline ServiceEntries (scaled).
func fixedFloors(services int, mode convert.Mode) floorSet {
	k := served.KindServiceEntry
	if mode == convert.ModeWorkloadEntry {
		k = served.KindWorkloadEntry
	}
	f := floorSet{Marshal: map[served.Kind]time.Duration{}, Build: map[served.Kind]time.Duration{}, Decode: map[served.Kind]time.Duration{}, Copy: map[served.Kind]time.Duration{},
		Wire: map[served.Kind]int{}, Resources: map[served.Kind]int{}, Bytes: map[served.Kind]int{}}
	n := time.Duration(services)
	f.Marshal[k], f.Build[k], f.Decode[k], f.Copy[k] = n*2*time.Microsecond, n*700*time.Nanosecond, n*3*time.Microsecond, n*40*time.Nanosecond
	f.Resources[k], f.Bytes[k], f.Wire[k] = services, services*310, services*330
	if mode == convert.ModeWorkloadEntry {
		se := served.KindServiceEntry
		f.Marshal[se], f.Build[se], f.Decode[se], f.Copy[se] = n*time.Microsecond, n*300*time.Nanosecond, n*time.Microsecond, n*20*time.Nanosecond
		f.Resources[se], f.Bytes[se], f.Wire[se] = services/3, services*90, services*95
	}
	return f
}

// statsPair is the child's stats before and after a scenario that pushed
// pushes replies of kind (at bytesEach) in windows windows.
func statsPair(kind served.Kind, cpu time.Duration, pushes, bytesEach, windows float64, allocs int64) (*stats, *stats) {
	t := typeURLOf(kind)
	pre := &stats{T: 1e9, CPUNs: int64(time.Second), AllocBytes: 1 << 20, AllocObjs: 1000, Windows: 10, FlushSum: 0.5, FlushCount: 10,
		Pushes: map[string]float64{t: 20}, PushBytes: map[string]float64{t: 20 * bytesEach}}
	post := &stats{T: 3e9, CPUNs: pre.CPUNs + int64(cpu), AllocBytes: pre.AllocBytes + allocs*64, AllocObjs: pre.AllocObjs + allocs,
		Windows: pre.Windows + windows, FlushSum: pre.FlushSum + 0.002*windows, FlushCount: pre.FlushCount + windows,
		Pushes: map[string]float64{t: 20 + pushes}, PushBytes: map[string]float64{t: (20 + pushes) * bytesEach}, MaxRSS: 90 << 20, RSS: 80 << 20}
	return pre, post
}

// addSet adds the rows one set's scenarios produce, through row.fromStats
// as the scenarios do.
func addSet(rep *report, label string, mode convert.Mode, services int, clients []int) {
	f := fixedFloors(services, mode)
	rep.addFloors(label, mode, f)
	kind := served.KindServiceEntry
	if mode == convert.ModeWorkloadEntry {
		kind = served.KindWorkloadEntry
	}
	newRow := func(name string, nc int) *row {
		return &row{Scenario: name, Clients: nc, Mode: mode, Kind: kind, Quiet: 100 * time.Millisecond}
	}
	scale := time.Duration(services / 1000)
	for _, nc := range clients {
		if nc == 1 || nc == clients[len(clients)-1] {
			r := newRow("cold sync", nc)
			pre, post := statsPair(kind, scale*30*time.Millisecond, float64(nc), float64(f.Wire[kind]), 1, int64(services)*40)
			r.Wall, r.WallFloor, r.WallNote = scale*12*time.Millisecond, f.total(f.Marshal)+f.total(f.Decode), "sync"
			r.fromStats(pre, post, f)
			r.Extra = "adapter ready after 8ms"
			r.PeakRSS, r.RSS, r.Resources = post.MaxRSS, post.RSS, f.count()
			rep.add(label, r)
		}
		if nc > 1 {
			r := newRow("join +2", nc)
			pre, post := statsPair(kind, scale*4*time.Millisecond, 2, float64(f.Wire[kind]), 0, 500)
			r.Wall, r.WallFloor, r.WallNote = scale*9*time.Millisecond, f.total(f.Build)+f.total(f.Decode), "sync"
			r.fromStats(pre, post, f)
			rep.add(label, r)
		}
		for _, ch := range []struct {
			name   string
			count  int
			lat    []float64
			cpuPer time.Duration
		}{
			{"one change", 3, []float64{104, 101, 131}, scale * 900 * time.Microsecond},
			{"burst 100", 100, []float64{150, 120, 180, 110}, scale * 30 * time.Microsecond},
			{"churn 1%/min", 600, nil, scale * 800 * time.Microsecond},
		} {
			r := newRow(ch.name, nc)
			windows := float64(min(ch.count, 40))
			pre, post := statsPair(kind, time.Duration(ch.count)*ch.cpuPer, windows*float64(nc), float64(f.Wire[kind])*1.02, windows, int64(ch.count)*120)
			r.Changes, r.Wall, r.WallNote = ch.count, 150*time.Millisecond+scale*time.Millisecond, "round"
			r.WallFloor = r.Quiet + f.Build[kind] + f.Decode[kind]
			r.fromStats(pre, post, f)
			r.PeakRSS, r.RSS, r.Resources = post.MaxRSS, post.RSS, f.count()
			r.setLatency(append([]float64(nil), ch.lat...))
			rep.add(label, r)
		}
		r := newRow("reconnect all", nc)
		pre, post := statsPair(kind, scale*5*time.Millisecond, float64(nc), float64(f.Wire[kind]), 0, 900)
		r.Wall, r.WallFloor, r.WallNote = scale*10*time.Millisecond, f.total(f.Build)+f.total(f.Decode), "sync"
		r.fromStats(pre, post, f)
		r.PeakRSS, r.RSS, r.Resources = post.MaxRSS, post.RSS, f.count()
		rep.add(label, r)
		r = newRow("no-op refresh", nc)
		pre, post = statsPair(kind, scale*2*time.Millisecond, 0, 0, 0, int64(services)*3)
		r.Wall, r.WallFloor, r.WallNote = scale*3*time.Millisecond, f.total(f.Marshal), "flush"
		r.fromStats(pre, post, f)
		r.CPUFloor, r.Changes, r.Noop = f.total(f.Marshal), services, true
		r.PeakRSS, r.RSS, r.Resources = post.MaxRSS, post.RSS, f.count()
		rep.add(label, r)
	}
}

func fixedShardCase(n, k int) *shardCase {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond+time.Duration(k)*100*time.Microsecond)
		}
		return out
	}
	return &shardCase{n: n, k: k, adapterSync: 1234 * time.Millisecond, cold: 5432 * time.Millisecond, holds: 7654 * time.Millisecond,
		restPct: 1.25,
		ep:      changeCosts{istiod: ms(40, 42, 39, 80), adapter: ms(2, 3, 2, 2), busy: ms(300, 310, 290, 500)},
		port:    changeCosts{istiod: ms(120, 130, 125), adapter: ms(9, 8, 10)},
		epW:     changeCosts{istiod: ms(45, 44, 50, 41), lat: []float64{210, 220, 205, 400}},
		portW:   changeCosts{istiod: ms(130, 129, 128), lat: []float64{330, 310, 350}},
		syncCPU: 9876 * time.Millisecond, rssSync: 300 << 20, rssChanges: 320 << 20, peakRSS: 350 << 20,
		held: "1000 services, 6000 endpoint-ports", cpuCheck: [2]time.Duration{12345678 * time.Microsecond, 12340 * time.Millisecond},
		gcCycles: 7, heap: 150 << 20,
		churn: churnCosts{changes: 600, wall: 21 * time.Second, churnSeconds: 20 * time.Second, istiod: 4200 * time.Millisecond, adapter: 900 * time.Millisecond,
			windows: 180, shardPushes: 180 * k / 2},
	}
}

func fixedCompareCases() []*compareCase {
	costs := func(base int, lat ...float64) *compareCosts {
		var d []time.Duration
		for i := range lat {
			d = append(d, time.Duration(base+i*3)*time.Millisecond)
		}
		return &compareCosts{istiod: d, lat: lat,
			metrics: map[string]float64{edsPushes: float64(len(lat)), cdsPushes: float64(len(lat)) / 2, pushInits: float64(len(lat)),
				`pilot_push_triggers{type="endpoint"}`: float64(len(lat)), "pilot_xds_push_time_count": 3},
			sidecar: map[string]int{"type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment": len(lat), "type.googleapis.com/envoy.config.cluster.v3.Cluster": 0}}
	}
	full := &compareCase{way: "inline", n: 10000, adapterSync: 2100 * time.Millisecond, ready: 3210 * time.Millisecond, settled: 6543 * time.Millisecond,
		syncCPU: 7777 * time.Millisecond, rssSync: 400 << 20, heapSync: 210 << 20, restPct: 0.75, sidecarSync: 1500 * time.Millisecond,
		changes: map[string]*compareCosts{"move": costs(50, 180, 170, 190), "health": costs(60, 210, 200)},
		burst:   compareBurst{count: 1000, busy: 4321 * time.Millisecond, cpu: 3333 * time.Millisecond, pushes: 5, cds: 2},
		peakRSS: 450 << 20, rssEnd: 430 << 20, held: "10000 services, 60000 endpoint-ports",
		profiles: []string{"/tmp/p/inline-10000-sync.pprof", "/tmp/p/inline-10000-burst.pprof"}}
	versionless := &compareCase{way: "inline-versionless", n: 10000, adapterSync: 2000 * time.Millisecond, ready: 3000 * time.Millisecond, settled: 9000 * time.Millisecond,
		syncCPU: 9999 * time.Millisecond, rssSync: 500 << 20, restPct: 0.5, sidecarSync: 1700 * time.Millisecond,
		changes: map[string]*compareCosts{"move": costs(900, 1000), "health": costs(950, 1100)},
		peakRSS: 520 << 20, rssEnd: 510 << 20, held: "10000 services, 60000 endpoint-ports", stripped: 123456}
	timedOut := &compareCase{way: "workloadentry", n: 10000, adapterSync: 2500 * time.Millisecond, syncCPU: 1200 * time.Second, rssSync: 2 << 30, timedOut: true,
		changes: map[string]*compareCosts{}}
	notFar := &compareCase{way: "workloadentry-perservice", n: 10000, adapterSync: 2600 * time.Millisecond, ready: 4 * time.Second, settled: 50 * time.Second,
		syncCPU: 60 * time.Second, rssSync: 1 << 30, heapSync: 700 << 20, changes: map[string]*compareCosts{}}
	return []*compareCase{full, versionless, timedOut, notFar}
}

func fixedConsulRows() []string {
	st := func(t, cpu, rss int64) *stats { return &stats{T: t, CPUNs: cpu, RSS: rss} }
	https := consulRow{services: 1000, mode: "https", sync: 2345 * time.Millisecond, lat: []float64{0.11, 0.12, 0.15, 0.4}, changes: 100,
		rest: map[string]int{"health": 100, "catalog": 20, "config": 1, "other": 3}, restD: 20 * time.Second,
		churn: map[string]int{"health": 400, "catalog": 20, "other": 2}, churnD: 20100 * time.Millisecond, churnBytes: 12 << 20,
		conns: 2, throttled: 0, pre: st(1e9, 1e8, 0), mid: st(21e9, 3e8, 60<<20), post: st(41e9, 9e8, 0), consulCPU: 3.25, load: "1.00 0.90 0.80"}
	unbounded := consulRow{services: 1000, mode: "unbounded", sync: 1500 * time.Millisecond, changes: 100,
		rest: map[string]int{"health": 10}, restD: 20 * time.Second, churn: map[string]int{"health": 1000}, churnD: 20 * time.Second,
		conns: 1016, throttled: 4, consulCPU: 10, load: "2.00 1.50 1.00"}
	lines := append([]string(nil), consulHeader...)
	lines = append(lines, https.line(), unbounded.line(), consulUnboundedSkipped(10000))
	o := fixedOptions()
	lines = append(lines, consulFooter(o)...)
	o.consulKind = "check"
	return append(lines, consulFooter(o)[2])
}

func TestReportGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		text func(t *testing.T) string
	}{
		{"report-empty", func(*testing.T) string { return fixedReport().render() }},
		{"report-full", func(t *testing.T) string {
			rep := fixedReport()
			addSet(rep, "inline 1k SE", convert.ModeInline, 1000, []int{1, 3})
			addSet(rep, "inline 10k SE", convert.ModeInline, 10000, []int{1, 3})
			addSet(rep, "WE 30k inst", convert.ModeWorkloadEntry, 10000, []int{1})
			rep.notes = append(rep.notes, "Consul: registered 3000 instances (1000 services) through /v1/catalog/register, 32 in parallel, in 1.5s (2000/s).",
				configChurnNote(1000, "default", 20, 15300*time.Millisecond, map[string]int{"config": 25, "health": 3, "other": 1}, 45678, []float64{0.2, 0.25, 1.5}),
				configChurnNote(10000, "https", 20, 15*time.Second, map[string]int{}, 0, nil))
			rep.consul = fixedConsulRows()
			o := fixedOptions()
			rep.istiod = istiodResult{n: 1000, ready: 4567 * time.Millisecond, size: 3 << 20, endpointsAt: 6789 * time.Millisecond, restCPU: 0.8,
				lat: []float64{150, 160, 170, 180, 400}, cpu: []time.Duration{30 * time.Millisecond, 40 * time.Millisecond, 35 * time.Millisecond}}.lines(o)
			o.shardChanges = 4
			rep.shards = renderShards(o, []*shardCase{fixedShardCase(1000, 1), fixedShardCase(1000, 4)}, []string{"0.1 0.2 0.3", "0.4 0.5 0.6", "0.7 0.8 0.9"})
			rep.compare = renderCompare(o, fixedCompareCases(), []string{"a", "b", "c", "d", "e"})
			rep.goBench(filepath.Join("testdata", "gobench.txt"))
			return rep.render()
		}},
		{"report-failed", func(t *testing.T) string {
			rep := fixedReport()
			addSet(rep, "inline 1k SE", convert.ModeInline, 1000, []int{1})
			rep.shards = append(rep.shards, istiodSkippedText, "- failed: N=1000 K=4: interrupted")
			rep.goBench(filepath.Join("testdata", "no-such-gobench.txt"))
			rep.failures = append(rep.failures, "consul: 1000 services, https: adapter child not ready after 10m0s", "istiod compare: 1 of 4 runs failed")
			return rep.render()
		}},
		{"shards", func(t *testing.T) string {
			var c0 shardCase // nothing measured: no churn, empty lists
			return strings.Join(renderShards(fixedOptions(), []*shardCase{fixedShardCase(50000, 4), &c0}, []string{"x"}), "\n") + "\n"
		}},
		{"compare", func(t *testing.T) string {
			return strings.Join(renderCompare(fixedOptions(), fixedCompareCases(), []string{"l0", "l1"}), "\n") + "\n"
		}},
		{"consul", func(t *testing.T) string { return strings.Join(fixedConsulRows(), "\n") + "\n" }},
	} {
		t.Run(tc.name, func(t *testing.T) { golden(t, tc.name, tc.text(t)) })
	}
}
