package main

// Sharding with the real istiod: the adapter (child process) spreads N inline
// ServiceEntries over K listeners by adapter.ShardOf, an unpatched istiod
// (integration/istiod) reads them as K xds:// config sources, and the driver
// measures, for K = 1 and more, what an endpoint change and a service change
// cost istiod (CPU from /proc, nothing polled during the CPU window), how long
// until a proxy sees them (an EDS watcher on istiod's plain xDS port, measured
// in a separate pass), what steady churn at the real rate costs istiod, the
// cold sync and istiod's peak RSS. Results: bench/SHARDING-RESULTS.md.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/registry-adapter/registry-adapter/bench/gen"
	"github.com/registry-adapter/registry-adapter/bench/internal/measure"
	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
)

// shardChange is the child's side of "move" (one endpoint of service Index
// gets a new address), "health" (service Index's first instance turns
// critical, or passing again) and "addport" (service Index gets one more
// port): one source update each.
func shardChange(gs *genSource, reg *gen.Registry, c command) reply {
	i := c.Index % len(reg.Services)
	var r reply
	var g model.Group
	switch c.Op {
	case "move":
		var j int
		g, j = reg.MoveEndpoint(i)
		r.Address = g.Services[0].Instances[j].Address
	case "health":
		// The service's first instance turns critical (convert drops it:
		// one endpoint fewer) or passing again.
		svc := reg.Services[i]
		insts := slices.Clone(svc.Instances)
		if insts[0].Health == model.HealthCritical {
			insts[0].Health = model.HealthPassing
		} else {
			insts[0].Health = model.HealthCritical
		}
		svc.Instances = insts
		reg.Services[i] = svc
		g = reg.Group(i)
		r.Address = insts[0].Address
	case "addport":
		svc := reg.Services[i]
		port := newPort(len(svc.Ports))
		svc.Ports = append(slices.Clone(svc.Ports), model.Port{Number: uint32(port), Protocol: model.ProtocolHTTP})
		reg.Services[i] = svc
		g = reg.Group(i)
		r.Port = port
	}
	r.Host = g.Services[0].Host
	r.T0 = time.Now().UnixNano()
	gs.batches <- []model.Group{g}
	return r
}

// newPort is the port "addport" adds to a service that has n ports.
func newPort(n int) int { return 7000 + n }

// shardCase is what one N and K measured.
type shardCase struct {
	n, k        int
	adapterSync time.Duration // adapter start -> every host converted and published
	cold        time.Duration // istiod start -> /ready
	holds       time.Duration // istiod start -> pilot_services >= N and an EDS update per service
	restPct     float64
	ep, port    changeCosts      // no watcher connected
	epW, portW  changeCosts      // with the EDS watcher (latencies)
	syncCPU     time.Duration    // istiod CPU from its start until it holds all
	rssSync     int64            // istiod VmHWM after the cold sync
	rssChanges  int64            // istiod VmHWM after the changes without watcher
	peakRSS     int64            // istiod VmHWM at the end (the watcher pass too)
	held        string           // what istiod's debug API showed at the end
	cpuCheck    [2]time.Duration // istiod CPU at the end: schedstat, stat
	gcCycles    int              // istiod GC cycles during the endpoint changes without watcher (-1: not exported)
	heap        int64            // istiod's heap in use after them
	churn       churnCosts
}

// churnCosts is a steady-churn sample.
type churnCosts struct {
	changes         int
	wall            time.Duration // first change -> istiod quiet again
	churnSeconds    time.Duration // the injection time
	istiod, adapter time.Duration // CPU over wall (istiod: minus its rest rate)
	windows         int           // the adapter's debounce windows
	shardPushes     int           // ServiceEntry replies sent (one per shard touched per window)
}

type changeCosts struct {
	istiod  []time.Duration // istiod CPU per change (minus the rest rate)
	adapter []time.Duration // adapter CPU per change
	busy    []time.Duration // change -> istiod's CPU stops moving
	lat     []float64       // ms: change -> the EDS watcher has it
}

func runShards(rep *report, o options) error {
	type nk struct{ n, k int }
	var runs []nk
	for _, n := range o.shardSizes {
		for _, k := range o.shardKs {
			runs = append(runs, nk{n, k})
		}
	}
	var cases []*shardCase
	lines, err := istiodFamily(o, "shards", "bench-shards-", len(runs), func(ctx context.Context, env []string, run string, i int) error {
		n, k := runs[i].n, runs[i].k
		s := &shardScenario{o: o, env: env, run: run, c: &shardCase{n: n, k: k}}
		if err := runScenario(ctx, fmt.Sprintf("N=%d K=%d", n, k), readyTimeout, s); err != nil {
			return err
		}
		cases = append(cases, s.c)
		progress("shards: N=%d K=%d: istiod CPU per endpoint change median %s ms, per port change %s ms",
			n, k, ms(measure.Median(s.c.ep.istiod)), ms(measure.Median(s.c.port.istiod)))
		return nil
	}, func(loads []string) []string { return renderShards(o, cases, loads) })
	rep.shards = append(rep.shards, lines...)
	return err
}

// shardScenario measures one N and K with a fresh adapter child and a fresh
// istiod (the kube-apiserver stays).
type shardScenario struct {
	o        options
	env      []string
	run      string
	c        *shardCase
	child    *childProc
	watchers []*edsWatcher
}

func (s *shardScenario) start(context.Context) error {
	progress("shards: N=%d K=%d: adapter", s.c.n, s.c.k)
	child, err := startChild(adapterArgs(s.o, string(convert.ModeInline), s.c.n, "-shards", strconv.Itoa(s.c.k))...)
	if err != nil {
		return err
	}
	s.child = child
	if len(child.addrs) != s.c.k {
		return fmt.Errorf("adapter child has %d listeners, want %d", len(child.addrs), s.c.k)
	}
	return nil
}

func (s *shardScenario) ready(ctx context.Context) (err error) {
	s.c.adapterSync, err = adapterReady(ctx, s.child)
	return err
}

func (s *shardScenario) stop() {
	for _, w := range s.watchers {
		w.close()
	}
	if s.child != nil {
		s.child.quit()
	}
}

func (s *shardScenario) measure(ctx context.Context) error {
	o, env, run, c, child := s.o, s.env, s.run, s.c, s.child
	n, k := c.n, c.k
	meshFile, err := writeMesh(run, "mesh-shards.yaml", child.addrs...)
	if err != nil {
		return err
	}
	// Cold sync, o.shardColds times (a fresh istiod each; the last one stays
	// for the changes).
	var ist istiodProc
	var pid int
	var colds, holds, syncCPU []time.Duration
	for r := 0; r < max(o.shardColds, 1); r++ {
		if r > 0 {
			if _, err := runScript(o.repo, env, "integration/istiod/stop.sh", "istiod"); err != nil {
				return fmt.Errorf("stop.sh: %w", err)
			}
		}
		if ctx.Err() != nil {
			return errors.New("interrupted")
		}
		progress("shards: N=%d K=%d: istiod (cold sync %d)", n, k, r+1)
		t0 := time.Now()
		ist, err = startIstiod(o.repo, env, meshFile, "ISTIOD_WAIT=ready", "ISTIOD_READY_TIMEOUT=300", "ISTIOD_LOG_LEVEL=default:warn")
		if err != nil {
			return err
		}
		ready := time.Since(t0)
		pid = ist.pid
		mon := ist.metricsURL()
		// Holding everything: every service in the push context, and an EDS
		// update per service (polled on /metrics, a few KB).
		deadline := time.Now().Add(15 * time.Minute)
		for {
			m, err := measure.Scrape(mon)
			if err == nil && m["pilot_services"] >= float64(n) && m[`pilot_inbound_updates{type="eds"}`] >= float64(n) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("istiod does not hold %d services after 15 minutes (metrics %v, err %v)", n, m, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		colds, holds, syncCPU = append(colds, ready), append(holds, time.Since(t0)), append(syncCPU, measure.PID(pid).CPUPrecise())
		c.rssSync = max(c.rssSync, measure.PID(pid).StatusBytes("VmHWM:"))
		progress("shards: N=%d K=%d: istiod ready after %s, holds all after %s, CPU %s", n, k,
			ready.Round(time.Millisecond), holds[r].Round(time.Millisecond), syncCPU[r].Round(time.Millisecond))
	}
	c.cold, c.holds, c.syncCPU = measure.Median(colds), measure.Median(holds), measure.Median(syncCPU)

	// Rest rate, once istiod has settled.
	if err := waitQuiet(pid, time.Now(), 2*time.Second, time.Second, 2*time.Minute); err != nil {
		return err
	}
	c.restPct = restRate(measure.PID(pid).CPUPrecise)

	m := o.shardChanges
	ports := 3
	// 1. CPU, no watcher, nothing polled but /proc (istiod's GC count is
	// read before and after the endpoint changes, outside their windows).
	progress("shards: N=%d K=%d: %d endpoint changes, %d port changes (CPU)", n, k, m, ports)
	mon := ist.metricsURL()
	gc0, _ := measure.Scrape(mon)
	if err := waitQuiet(pid, time.Now(), time.Second, 500*time.Millisecond, time.Minute); err != nil {
		return err
	}
	for i := 0; i < m; i++ {
		if err := shardMeasure(child, pid, c.restPct, command{Op: "move", Index: (i*7919 + 13) % n}, &c.ep, nil); err != nil {
			return err
		}
	}
	if gc1, err := measure.Scrape(mon); err == nil {
		const cycles = "go_gc_duration_seconds_count"
		if _, ok := gc1[cycles]; ok {
			c.gcCycles = int(gc1[cycles] - gc0[cycles])
		} else {
			c.gcCycles = -1
		}
		c.heap = int64(gc1["go_memstats_heap_inuse_bytes"])
	}
	for i := 0; i < ports; i++ {
		if err := shardMeasure(child, pid, c.restPct, command{Op: "addport", Index: (i*4099 + 17) % n}, &c.port, nil); err != nil {
			return err
		}
	}
	c.rssChanges = measure.PID(pid).StatusBytes("VmHWM:")
	// 2. Latency: an EDS watcher (a sidecar asking istiod for the endpoints of
	// the clusters about to change), changes one at a time.
	progress("shards: N=%d K=%d: %d endpoint changes, %d port changes (latency, EDS watcher)", n, k, m, ports)
	var clusters []string
	for i := 0; i < m; i++ {
		clusters = append(clusters, fmt.Sprintf("outbound|8080||%s", gen.Service((i*7919+29)%n).Host))
	}
	for i := 0; i < ports; i++ {
		svc := gen.Service((i*4099 + 31) % n)
		clusters = append(clusters, fmt.Sprintf("outbound|%d||%s", newPort(len(svc.Ports)), svc.Host))
	}
	w, err := newEDSWatcher(ist.grpcAddr(), clusters)
	if err != nil {
		return err
	}
	s.watchers = append(s.watchers, w)
	if err := w.waitInitial(m, time.Minute); err != nil {
		return err
	}
	if err := waitQuiet(pid, time.Now(), time.Second, 500*time.Millisecond, time.Minute); err != nil {
		return err
	}
	for i := 0; i < m; i++ {
		if err := shardMeasure(child, pid, c.restPct, command{Op: "move", Index: (i*7919 + 29) % n}, &c.epW, w); err != nil {
			return err
		}
	}
	for i := 0; i < ports; i++ {
		if err := shardMeasure(child, pid, c.restPct, command{Op: "addport", Index: (i*4099 + 31) % n}, &c.portW, w); err != nil {
			return err
		}
	}
	w.close()

	// 3. Steady churn at the real rate (o.churnRate of the instances per
	// minute, for o.churn): changes closer together than the debounce quiet
	// share a window, and a window pushes every shard it touched.
	if o.churn > 0 && o.churnRate > 0 {
		rate := float64(n*gen.InstancesPerService) * o.churnRate / 60 // per second
		count := int(rate * o.churn.Seconds())
		progress("shards: N=%d K=%d: churn, %d changes in %s", n, k, count, o.churn)
		if err := waitQuiet(pid, time.Now(), time.Second, 500*time.Millisecond, time.Minute); err != nil {
			return err
		}
		pre, err := child.stats(false)
		if err != nil {
			return err
		}
		c0, t := measure.PID(pid).CPUPrecise(), time.Now()
		if _, err := child.do(command{Op: "change", Count: count, Interval: time.Duration(float64(time.Second) / rate), Seed: 99}); err != nil {
			return err
		}
		if err := waitQuiet(pid, time.Now(), 500*time.Millisecond, 500*time.Millisecond, 2*time.Minute); err != nil {
			return err
		}
		post, err := child.stats(false)
		if err != nil {
			return err
		}
		wall := time.Since(t)
		c.churn = churnCosts{changes: count, wall: wall,
			istiod:       max(measure.PID(pid).CPUPrecise()-c0-time.Duration(c.restPct/100*float64(wall)), 0),
			adapter:      time.Duration(post.CPUNs - pre.CPUNs),
			windows:      int(post.Windows - pre.Windows),
			shardPushes:  int(post.Pushes[typeURLOf(served.KindServiceEntry)] - pre.Pushes[typeURLOf(served.KindServiceEntry)]),
			churnSeconds: o.churn}
	}
	c.peakRSS = measure.PID(pid).StatusBytes("VmHWM:")
	c.cpuCheck = [2]time.Duration{measure.PID(pid).CPUPrecise(), measure.PID(pid).CPU()}

	// 3. What istiod holds (full debug dumps: after every measurement).
	svcs, eps, err := istiodHolds(ist.base(), 5*time.Minute)
	if err != nil {
		c.held = "debug API: " + err.Error()
	} else {
		c.held = fmt.Sprintf("%d services, %d endpoint-ports", svcs, eps)
		if svcs != n || eps < n*gen.InstancesPerService*2 {
			return fmt.Errorf("istiod holds %s, want %d services and at least %d endpoint-ports", c.held, n, n*gen.InstancesPerService*2)
		}
	}
	return nil
}

// shardMeasure makes one change and waits until istiod's CPU stops moving
// (and, with a watcher, until the watcher has the change), recording
// istiod's CPU (minus the rest rate), the adapter's CPU, and the latency.
func shardMeasure(child *childProc, pid int, restPct float64, cmd command, cc *changeCosts, w *edsWatcher) error {
	pre, err := child.stats(false)
	if err != nil {
		return err
	}
	c0 := measure.PID(pid).CPUPrecise()
	r, err := child.do(cmd)
	if err != nil {
		return err
	}
	t := time.Unix(0, r.T0)
	if w != nil {
		var cluster string
		var ok func([]string) bool
		if cmd.Op == "move" {
			cluster = "outbound|8080||" + r.Host
			ok = func(addrs []string) bool { return slices.Contains(addrs, r.Address) }
		} else {
			cluster = fmt.Sprintf("outbound|%d||%s", r.Port, r.Host)
			ok = func(addrs []string) bool { return len(addrs) > 0 }
		}
		at, err := w.waitFor(cluster, ok, time.Minute)
		if err != nil {
			return fmt.Errorf("%s %s: %w", cmd.Op, r.Host, err)
		}
		cc.lat = append(cc.lat, float64(at.Sub(t))/1e6)
	}
	// istiod debounces 100 ms after the adapter's debounce: at least 1 s,
	// then 500 ms without a CPU tick.
	if err := waitQuiet(pid, t, time.Second, 500*time.Millisecond, 2*time.Minute); err != nil {
		return err
	}
	busyEnd := lastTick
	post, err := child.stats(false)
	if err != nil {
		return err
	}
	d := measure.PID(pid).CPUPrecise() - c0 - time.Duration(restPct/100*float64(time.Since(t)))
	cc.istiod = append(cc.istiod, max(d, 0))
	cc.adapter = append(cc.adapter, time.Duration(post.CPUNs-pre.CPUNs))
	cc.busy = append(cc.busy, busyEnd.Sub(t))
	return nil
}

// lastTick is when waitQuiet last saw istiod's CPU move.
var lastTick time.Time

// waitQuiet waits, from t, at least minWait and then until istiod's CPU
// time has not moved for quiet (read from /proc every 10 ms, 10 ms
// resolution).
func waitQuiet(pid int, t time.Time, minWait, quiet, limit time.Duration) error {
	last := measure.PID(pid).CPU()
	lastTick = t
	for {
		time.Sleep(10 * time.Millisecond)
		now := time.Now()
		if cur := measure.PID(pid).CPU(); cur != last {
			last, lastTick = cur, now
		}
		if now.Sub(t) >= minWait && now.Sub(lastTick) >= quiet {
			return nil
		}
		if now.Sub(t) > limit {
			return fmt.Errorf("istiod still busy %s after a change", limit)
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return fmt.Errorf("istiod (pid %d) exited", pid)
		}
	}
}
