package main

// istiod's side, side by side: the same generated services served
// to the same unpatched istiod (integration/istiod) several ways, one fresh
// adapter child and one fresh istiod per way (kube-apiserver and etcd stay):
//
//	inline                    the adapter, ServiceEntries with inline endpoints
//	workloadentry             the adapter, ServiceEntries + WorkloadEntries
//	inline-versionless        the adapter's replies relayed with every
//	workloadentry-versionless resource's Metadata.Version emptied: a stand-in
//	                          for the version-less full-state pattern
//	                          (compare_standin.go)
//
// For each: istiod's time to /ready and until its ingestion settles, its CPU
// and memory for that, then with one sidecar connected (fidelity.Proxy: CDS,
// LDS, NDS and EDS of every cluster) its CPU per endpoint move and per health
// change (an instance turning critical or passing), which pushes each change
// caused (istiod's own metrics: pilot_xds_pushes by xDS type, where a full
// push sends the sidecar CDS and an EDS-only push only EDS;
// pilot_push_triggers by reason), how long until
// the sidecar had it, and a burst of changes at once (istiod's throughput).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/registry-adapter/registry-adapter/bench/gen"
	"github.com/registry-adapter/registry-adapter/bench/internal/measure"
	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/fidelity"
)

type compareCase struct {
	way         string
	n           int
	adapterSync time.Duration
	ready       time.Duration // istiod start -> /ready 200
	settled     time.Duration // istiod start -> every service known and its CPU quiet for 2 s (the last tick)
	syncCPU     time.Duration // istiod CPU until settled
	rssSync     int64         // VmHWM once settled
	heapSync    float64       // go_memstats_heap_inuse_bytes once settled
	restPct     float64
	sidecarSync time.Duration
	changes     map[string]*compareCosts // "move", "health"
	burst       compareBurst
	peakRSS     int64
	rssEnd      int64
	held        string
	stripped    int64 // stand-in: resources relayed without their version
	profiles    []string
	timedOut    bool // istiod did not settle within -istiod-compare-timeout (syncCPU, rssSync: at the limit)
}

type compareCosts struct {
	istiod  []time.Duration
	lat     []float64          // ms, change -> the sidecar's next EDS of that cluster
	metrics map[string]float64 // summed deltas of istiod's push metrics
	sidecar map[string]int     // summed replies the sidecar got, by type
}

type compareBurst struct {
	count  int
	busy   time.Duration // first change -> istiod's last CPU tick
	cpu    time.Duration
	pushes float64 // istiod's pushes (push context inits) during the burst
	cds    float64 // CDS pushes to the sidecar (full pushes) during the burst
}

// pushMetric reports whether a scraped series is one of the push metrics
// summed per change.
func pushMetric(k string) bool {
	for _, p := range []string{"pilot_xds_pushes{", "pilot_push_triggers{", "pilot_inbound_updates{", "pilot_pushcontext_init_seconds_count"} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// pushInits counts istiod's pushes (every push, EDS-only too, inits a push
// context; pilot/pkg/xds/discovery.go Push). cdsPushes and edsPushes count
// what it sent the sidecar: a full push sends CDS (and LDS), an EDS-only
// push only the changed cluster's endpoints.
const (
	pushInits = "pilot_pushcontext_init_seconds_count"
	cdsPushes = `pilot_xds_pushes{type="cds"}`
	edsPushes = `pilot_xds_pushes{type="eds"}`
)

func runCompare(rep *report, o options) error {
	type nway struct {
		n   int
		way string
	}
	var runs []nway
	for _, n := range o.compareSizes {
		for _, way := range o.compareWays {
			runs = append(runs, nway{n, way})
		}
	}
	var cases []*compareCase
	lines, err := istiodFamily(o, "compare", "bench-compare-", len(runs), func(ctx context.Context, env []string, run string, i int) error {
		s := &compareScenario{o: o, env: env, run: run, way: runs[i].way, n: runs[i].n}
		err := runScenario(ctx, fmt.Sprintf("N=%d %s", s.n, s.way), readyTimeout, s)
		// A case that timed out or failed after istiod started still has a row.
		if s.c != nil {
			cases = append(cases, s.c)
		}
		return err
	}, func(loads []string) []string { return renderCompare(o, cases, loads) })
	rep.compare = append(rep.compare, lines...)
	return err
}

func parseWay(way string) (convert.Mode, bool, error) {
	m, versionless := strings.CutSuffix(way, "-versionless")
	switch convert.Mode(m) {
	case convert.ModeInline, convert.ModeWorkloadEntry:
		return convert.Mode(m), versionless, nil
	}
	return "", false, fmt.Errorf("unknown way %q (inline, workloadentry, and either with -versionless)", way)
}

// compareScenario serves n services one way to a fresh istiod, through a
// fresh adapter child (the kube-apiserver stays).
type compareScenario struct {
	o        options
	env      []string
	run, way string
	n        int
	vl       bool // relayed by the version-less stand-in
	child    *childProc
	si       *standIn
	c        *compareCase // the row, once istiod got as far as one
	sync     time.Duration
}

func (s *compareScenario) start(context.Context) error {
	// workloadentry-perservice: output.namespaceLayout perService.
	baseWay, perService := strings.CutSuffix(s.way, "-perservice")
	mode, versionless, err := parseWay(baseWay)
	if err != nil {
		return err
	}
	s.vl = versionless
	progress("compare: N=%d %s: adapter", s.n, s.way)
	var extra []string
	if perService {
		extra = []string{"-namespace-layout", string(convert.LayoutPerService)}
	}
	s.child, err = startChild(adapterArgs(s.o, string(mode), s.n, extra...)...)
	return err
}

func (s *compareScenario) ready(ctx context.Context) (err error) {
	s.sync, err = adapterReady(ctx, s.child)
	return err
}

func (s *compareScenario) stop() {
	if s.si != nil {
		if s.c != nil {
			s.c.stripped = s.si.stripped.Load()
		}
		s.si.stop()
	}
	if s.child != nil {
		s.child.quit()
	}
}

func (s *compareScenario) measure(context.Context) error {
	c, err := s.measureCase()
	s.c = c
	return err
}

// measureCase returns the row, or nil when istiod did not get as far as
// one.
func (s *compareScenario) measureCase() (*compareCase, error) {
	o, env, run, way, n, child, versionless := s.o, s.env, s.run, s.way, s.n, s.child, s.vl
	c := &compareCase{way: way, n: n, changes: map[string]*compareCosts{}, adapterSync: s.sync}
	source := child.addr
	if versionless {
		si, err := startStandIn(child.addr)
		if err != nil {
			return nil, err
		}
		s.si = si
		source = si.addr
	}
	meshFile, err := writeMesh(run, "mesh-compare.yaml", source)
	if err != nil {
		return nil, err
	}

	progress("compare: N=%d %s: istiod", n, way)
	t0 := time.Now()
	ist, err := startIstiod(o.repo, env, meshFile, "ISTIOD_WAIT=listen", "ISTIOD_READY_TIMEOUT=120", "ISTIOD_LOG_LEVEL=default:warn")
	if err != nil {
		return nil, err
	}
	pid, base, mon := ist.pid, ist.base(), ist.metricsURL()
	tag := fmt.Sprintf("%s-%d", way, n)
	profDone := make(chan struct{})
	close(profDone)
	if o.comparePprof != "" {
		profDone = make(chan struct{})
		path := filepath.Join(o.comparePprof, tag+"-sync.pprof")
		c.profiles = append(c.profiles, path)
		go func() { defer close(profDone); istiodProfile(base, 30*time.Second, path) }()
	}
	deadline := t0.Add(o.compareTimeout)
	for {
		if resp, err := http.Get(base + "/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			c.timedOut, c.syncCPU, c.rssSync = true, measure.PID(pid).CPUPrecise(), measure.PID(pid).StatusBytes("VmHWM:")
			return c, fmt.Errorf("istiod not ready after %s", o.compareTimeout)
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return nil, fmt.Errorf("istiod exited before ready (log %s/istiod.log)", run)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.ready = time.Since(t0)
	progress("compare: N=%d %s: istiod ready after %s", n, way, c.ready.Round(time.Millisecond))
	for {
		m, err := measure.Scrape(mon)
		if err == nil && m["pilot_services"] >= float64(n) {
			break
		}
		if time.Now().After(deadline) {
			c.timedOut, c.syncCPU, c.rssSync = true, measure.PID(pid).CPUPrecise(), measure.PID(pid).StatusBytes("VmHWM:")
			return c, fmt.Errorf("istiod does not know %d services after %s", n, o.compareTimeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := waitQuiet(pid, time.Now(), 2*time.Second, 2*time.Second, time.Until(deadline)); err != nil {
		c.timedOut, c.syncCPU, c.rssSync = true, measure.PID(pid).CPUPrecise(), measure.PID(pid).StatusBytes("VmHWM:")
		return c, fmt.Errorf("ingestion: %w", err)
	}
	c.settled, c.syncCPU = lastTick.Sub(t0), measure.PID(pid).CPUPrecise()
	<-profDone
	c.rssSync = measure.PID(pid).StatusBytes("VmHWM:")
	if m, err := measure.Scrape(mon); err == nil {
		c.heapSync = m["go_memstats_heap_inuse_bytes"]
	}
	progress("compare: N=%d %s: istiod settled after %s, CPU %s, VmHWM %s", n, way,
		c.settled.Round(time.Millisecond), c.syncCPU.Round(time.Millisecond), bytesH(float64(c.rssSync)))

	if err := waitQuiet(pid, time.Now(), time.Second, time.Second, 2*time.Minute); err != nil {
		return c, err
	}
	c.restPct = restRate(measure.PID(pid).CPUPrecise)

	// One sidecar, connected throughout the changes: what a push costs
	// includes building it for a proxy.
	ts := time.Now()
	sc, err := fidelity.DialProxy(fidelity.ProxyConfig{Address: ist.grpcAddr()})
	if err != nil {
		return c, err
	}
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	err = sc.Wait(ctx)
	cancel()
	if err != nil {
		return c, fmt.Errorf("sidecar: %w", err)
	}
	c.sidecarSync = time.Since(ts)
	progress("compare: N=%d %s: sidecar synced after %s; %d endpoint moves, %d health changes", n, way,
		c.sidecarSync.Round(time.Millisecond), o.compareChanges, o.compareChanges)
	if err := waitQuiet(pid, time.Now(), time.Second, time.Second, 2*time.Minute); err != nil {
		return c, err
	}
	for _, op := range []string{"move", "health"} {
		cc := &compareCosts{metrics: map[string]float64{}, sidecar: map[string]int{}}
		c.changes[op] = cc
		for i := 0; i < o.compareChanges; i++ {
			idx := (i*7919 + 13) % n
			if op == "health" {
				idx = (i*4099 + 17) % n
			}
			if err := compareMeasure(child, pid, c.restPct, mon, sc, command{Op: op, Index: idx}, cc); err != nil {
				return c, fmt.Errorf("%s %d: %w", op, i, err)
			}
		}
	}

	// A burst: o.compareBurst endpoint moves of distinct services at once
	// (one source update each, within one debounce window of the adapter).
	if o.compareBurst > 0 {
		progress("compare: N=%d %s: burst of %d moves", n, way, o.compareBurst)
		if o.comparePprof != "" {
			profDone = make(chan struct{})
			path := filepath.Join(o.comparePprof, tag+"-burst.pprof")
			c.profiles = append(c.profiles, path)
			go func() { defer close(profDone); istiodProfile(base, 20*time.Second, path) }()
		}
		m0, _ := measure.Scrape(mon)
		c0 := measure.PID(pid).CPUPrecise()
		r, err := child.do(command{Op: "change", Count: o.compareBurst, Seed: 77})
		if err != nil {
			return c, err
		}
		t := time.Unix(0, r.T0)
		if err := waitQuiet(pid, t, time.Second, time.Second, o.compareTimeout); err != nil {
			return c, fmt.Errorf("burst: %w", err)
		}
		wall := time.Since(t)
		c.burst = compareBurst{count: o.compareBurst, busy: lastTick.Sub(t),
			cpu: max(measure.PID(pid).CPUPrecise()-c0-time.Duration(c.restPct/100*float64(wall)), 0)}
		<-profDone
		if m1, err := measure.Scrape(mon); err == nil {
			c.burst.pushes = m1[pushInits] - m0[pushInits]
			c.burst.cds = m1[cdsPushes] - m0[cdsPushes]
		}
	}
	c.peakRSS = measure.PID(pid).StatusBytes("VmHWM:")
	c.rssEnd = measure.PID(pid).StatusBytes("VmRSS:")
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("sidecar stream: %w", err)
	}

	svcs, eps, err := istiodHolds(base, 5*time.Minute)
	if err != nil {
		c.held = "debug API: " + err.Error()
		return c, nil
	}
	c.held = fmt.Sprintf("%d services, %d endpoint-ports", svcs, eps)
	if svcs != n || eps < n*gen.InstancesPerService*2-2*o.compareChanges {
		return c, fmt.Errorf("istiod holds %s, want %d services and at least %d endpoint-ports", c.held, n, n*gen.InstancesPerService*2-2*o.compareChanges)
	}
	return c, nil
}

// compareMeasure makes one change and waits until istiod's CPU has not moved
// for 500 ms (at least 1 s), recording istiod's CPU minus its rest rate, the
// push metrics' deltas, the sidecar's replies and when its EDS of the
// changed cluster arrived.
func compareMeasure(child *childProc, pid int, restPct float64, mon string, sc *fidelity.Proxy, cmd command, cc *compareCosts) error {
	m0, err := measure.Scrape(mon)
	if err != nil {
		return err
	}
	rep0 := sc.Replies()
	_, ev0 := sc.Events(int(^uint(0) >> 1))
	c0 := measure.PID(pid).CPUPrecise()
	r, err := child.do(cmd)
	if err != nil {
		return err
	}
	t := time.Unix(0, r.T0)
	if err := waitQuiet(pid, t, time.Second, 500*time.Millisecond, 5*time.Minute); err != nil {
		return err
	}
	d := measure.PID(pid).CPUPrecise() - c0 - time.Duration(restPct/100*float64(time.Since(t)))
	cc.istiod = append(cc.istiod, max(d, 0))
	m1, err := measure.Scrape(mon)
	if err != nil {
		return err
	}
	for k, v := range m1 {
		if pushMetric(k) && v != m0[k] {
			cc.metrics[k] += v - m0[k]
		}
	}
	for k, v := range sc.Replies() {
		cc.sidecar[k] += v - rep0[k]
	}
	evs, _ := sc.Events(ev0)
	cluster := "outbound|8080||" + r.Host
	for _, e := range evs {
		if e.Cluster == cluster {
			cc.lat = append(cc.lat, float64(e.At.Sub(t))/1e6)
			return nil
		}
	}
	return fmt.Errorf("the sidecar got no EDS for %s after the %s", cluster, cmd.Op)
}

// istiodProfile saves a CPU profile of istiod (pprof on its HTTP port,
// loopback callers need no token).
func istiodProfile(base string, d time.Duration, path string) {
	client := &http.Client{Timeout: d + 30*time.Second}
	resp, err := client.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, int(d.Seconds())))
	if err != nil {
		progress("compare: profile %s: %v", path, err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err == nil {
		_, err = io.Copy(f, resp.Body)
		err = errors.Join(err, f.Close())
	}
	if err != nil || resp.StatusCode != http.StatusOK {
		progress("compare: profile %s: %v (HTTP %d)", path, err, resp.StatusCode)
	}
}

func renderCompare(o options, cases []*compareCase, loads []string) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	add("Generated services (2 ports, 3 instances each), unpatched istiod (integration/istiod), a fresh adapter child and a fresh istiod per row. "+
		"`-versionless`: the adapter's replies relayed by a stand-in that empties every resource's Metadata.Version (the version-less full-state pattern; compare_standin.go). "+
		"istiod CPU per change: /proc/PID/task/*/schedstat minus the rest rate, from the change until istiod's CPU has not moved for 500 ms, with one sidecar connected (CDS, LDS, NDS, EDS of every cluster); "+
		"pushes per change = istiod's pilot_xds_pushes to that sidecar by type (a full push sends CDS, an EDS-only push only EDS). %d endpoint moves and %d health changes per row. Debounce quiet %s (adapter) + 100 ms (istiod). "+
		"Load average before and after each row: %s.", o.compareChanges, o.compareChanges, o.quiet, strings.Join(loads, " | "))
	add("")
	add("| N | way | istiod /ready | settled | istiod CPU to settle | VmHWM after sync (heap in use) | CPU / endpoint move, ms: median, mean (max) | CPU / health change, ms: median, mean (max) | pushes per change, EDS / CDS (move; health) | change → sidecar EDS, ms p50 | burst: moves, istiod busy, CPU, changes/s, pushes (CDS) | peak VmHWM | rest CPU |")
	add("|---:|---|---:|---:|---:|---|---|---|---|---:|---|---:|---:|")
	for _, c := range cases {
		mv, hc := c.changes["move"], c.changes["health"]
		if mv == nil || hc == nil || len(mv.istiod) == 0 || len(hc.istiod) == 0 {
			ready, settled := c.ready.Round(10*time.Millisecond).String(), c.settled.Round(10*time.Millisecond).String()
			if c.timedOut {
				settled = "> " + o.compareTimeout.String()
				if c.ready == 0 {
					ready = settled
				}
			}
			cpu, heap := c.syncCPU.Round(10*time.Millisecond).String(), "-"
			if c.timedOut {
				cpu = "> " + cpu
			}
			if c.heapSync > 0 {
				heap = bytesH(c.heapSync)
			}
			add("| %s | %s | %s | %s | %s | %s (%s) | - | - | - | - | - | - | - |", human(c.n), c.way, ready, settled, cpu, bytesH(float64(c.rssSync)), heap)
			continue
		}
		lat := append(slices.Clone(mv.lat), hc.lat...)
		burst := "-"
		if c.burst.count > 0 {
			burst = fmt.Sprintf("%d, %s, %s, %.0f, %.0f (%.0f)", c.burst.count, c.burst.busy.Round(10*time.Millisecond), c.burst.cpu.Round(10*time.Millisecond),
				float64(c.burst.count)/max(c.burst.busy.Seconds(), 0.001), c.burst.pushes, c.burst.cds)
		}
		per := func(cc *compareCosts, k string) float64 { return cc.metrics[k] / float64(len(cc.istiod)) }
		add("| %s | %s | %s | %s | %s | %s (%s) | %s, %s (%s) | %s, %s (%s) | %.1f / %.1f; %.1f / %.1f | %.0f | %s | %s | %.1f%% |",
			human(c.n), c.way, c.ready.Round(10*time.Millisecond), c.settled.Round(10*time.Millisecond), c.syncCPU.Round(10*time.Millisecond),
			bytesH(float64(c.rssSync)), bytesH(c.heapSync),
			ms(measure.Median(mv.istiod)), ms(measure.Mean(mv.istiod)), ms(slices.Max(mv.istiod)),
			ms(measure.Median(hc.istiod)), ms(measure.Mean(hc.istiod)), ms(slices.Max(hc.istiod)),
			per(mv, edsPushes), per(mv, cdsPushes), per(hc, edsPushes), per(hc, cdsPushes),
			measure.Quantile(lat, 0.5), burst, bytesH(float64(c.peakRSS)), c.restPct)
	}
	add("")
	for _, c := range cases {
		if c.sidecarSync == 0 {
			add("- N=%s %s: adapter sync %s; istiod did not get as far as the changes.", human(c.n), c.way, c.adapterSync.Round(time.Millisecond))
		} else {
			add("- N=%s %s: adapter sync %s; sidecar synced %s after connecting; istiod held at the end: %s; VmRSS at the end %s.",
				human(c.n), c.way, c.adapterSync.Round(time.Millisecond), c.sidecarSync.Round(time.Millisecond), c.held, bytesH(float64(c.rssEnd)))
		}
		if c.stripped > 0 {
			add("  - stand-in: %d resources relayed without their version.", c.stripped)
		}
		for _, op := range []string{"move", "health"} {
			cc := c.changes[op]
			if cc == nil || len(cc.istiod) == 0 {
				continue
			}
			add("  - %s: istiod CPU per change, ms, in order: %s; latency to the sidecar, ms: %s; istiod metrics, summed over %d changes: %s; sidecar replies: %s.",
				op, msList(cc.istiod), fList(cc.lat), len(cc.istiod), metricList(cc.metrics), replyList(cc.sidecar))
		}
		if len(c.profiles) > 0 {
			add("  - istiod CPU profiles: %s.", strings.Join(c.profiles, ", "))
		}
	}
	return out
}

func metricList(m map[string]float64) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		if !strings.HasSuffix(k, "_count") || k == pushInits {
			out = append(out, fmt.Sprintf("%s %g", k, m[k]))
		}
	}
	return strings.Join(out, ", ")
}

func replyList(m map[string]int) string {
	var keys []string
	for k, v := range m {
		if v != 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s %d", k[strings.LastIndex(k, ".")+1:], m[k]))
	}
	return strings.Join(out, ", ")
}
