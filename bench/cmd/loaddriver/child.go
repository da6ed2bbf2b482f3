package main

// The adapter under test runs in a child process, one per scenario set, so
// that its CPU (getrusage), allocations (runtime/metrics) and peak RSS are its
// own. It is the real adapter loop, cache and gRPC server, fed by a
// generated source (or the real Consul source), and is driven over
// stdin/stdout with one JSON object per line.

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/adapter"
	"github.com/registry-adapter/registry-adapter/bench/gen"
	"github.com/registry-adapter/registry-adapter/bench/internal/measure"
	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
	"github.com/registry-adapter/registry-adapter/server"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/consul"
)

const sourceName = "bench"

// command is one request to the child.
type command struct {
	Op string `json:"op"`
	// change: how many services get one endpoint moved, each its own
	// update; Interval spaces them (0: a burst).
	Count    int           `json:"count,omitempty"`
	Interval time.Duration `json:"interval,omitempty"`
	Seed     int           `json:"seed,omitempty"`
	// stats: also count the served resources and bytes (sorts the whole
	// set: not to be asked inside a measurement).
	Census bool `json:"census,omitempty"`
	// profile: start a CPU profile into Path ("" stops it).
	Path string `json:"path,omitempty"`
	// move, health, addport: the service changed (shard.go).
	Index int `json:"index,omitempty"`
}

// stats is what the child reports about itself.
type stats struct {
	T          int64              `json:"t"` // unix ns
	Ready      bool               `json:"ready"`
	ReadyAt    int64              `json:"readyAt"`
	CPUNs      int64              `json:"cpuNs"`
	MaxRSS     int64              `json:"maxRss"` // VmHWM bytes (peak since the last resetpeak)
	RSS        int64              `json:"rss"`    // VmRSS bytes
	HeapLive   int64              `json:"heapLive"`
	AllocBytes int64              `json:"allocBytes"`
	AllocObjs  int64              `json:"allocObjs"`
	Pushes     map[string]float64 `json:"pushes"`    // by type URL
	PushBytes  map[string]float64 `json:"pushBytes"` // by type URL
	Windows    float64            `json:"windows"`
	FlushSum   float64            `json:"flushSum"`
	FlushCount float64            `json:"flushCount"`
	Versions   map[string]string  `json:"versions"` // by kind
	Resources  map[string]int     `json:"resources"`
	Bytes      map[string]int     `json:"bytes"` // serialized bytes served, by kind
	Unassigned int                `json:"unassigned"`
	Clients    int                `json:"clients"`
}

type changeRec struct {
	T    int64  `json:"t"`
	Kind string `json:"kind"`
	Seq  int    `json:"seq"` // the Apply that published it (0: not yet)
}

type applyRec struct {
	Seq     int    `json:"seq"`
	Kind    string `json:"kind"`
	Version string `json:"version"`
	T       int64  `json:"t"`
	Upserts int    `json:"upserts"`
	Deletes int    `json:"deletes"`
}

// reply is the child's answer to a command.
type reply struct {
	Err     string      `json:"err,omitempty"`
	Addr    string      `json:"addr,omitempty"`
	Addrs   []string    `json:"addrs,omitempty"` // every shard's listener (Addr is the first)
	Host    string      `json:"host,omitempty"`  // move, addport: the service's host
	Address string      `json:"address,omitempty"`
	Port    int         `json:"port,omitempty"`
	Stats   *stats      `json:"stats,omitempty"`
	Changes []changeRec `json:"changes,omitempty"`
	Applies []applyRec  `json:"applies,omitempty"`
	T0      int64       `json:"t0,omitempty"`
	T1      int64       `json:"t1,omitempty"`
}

// tracker wraps the cache as the adapter's Publisher and records which
// Apply (and so which served version) carried each injected change.
type tracker struct {
	cache *server.Cache

	mu      sync.Mutex
	cond    *sync.Cond
	seq     int
	pending map[string][]int // resource key -> indexes into changes
	changes []changeRec
	applies []applyRec
}

func (t *tracker) Apply(kind served.Kind, upserts []served.Entry, deletes []string) bool {
	return t.applyTo(t.cache, kind, upserts, deletes)
}

// shardPub is one more shard's cache, recorded by the same tracker (whose
// versions and stats are the first shard's).
type shardPub struct {
	t     *tracker
	cache *server.Cache
}

func (p shardPub) Apply(kind served.Kind, upserts []served.Entry, deletes []string) bool {
	return p.t.applyTo(p.cache, kind, upserts, deletes)
}

func (p shardPub) MarkReady() { p.cache.MarkReady() }

func (t *tracker) applyTo(cache *server.Cache, kind served.Kind, upserts []served.Entry, deletes []string) bool {
	changed := cache.Apply(kind, upserts, deletes)
	if !changed {
		return false
	}
	now := time.Now().UnixNano()
	v := cache.Version(kind)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	t.applies = append(t.applies, applyRec{Seq: t.seq, Kind: string(kind), Version: v, T: now, Upserts: len(upserts), Deletes: len(deletes)})
	for _, e := range upserts {
		if idx, ok := t.pending[e.Name]; ok {
			for _, i := range idx {
				t.changes[i].Seq = t.seq
			}
			delete(t.pending, e.Name)
		}
	}
	t.cond.Broadcast()
	return true
}

// waitPublished blocks until every injected change was published, or d.
func (t *tracker) waitPublished(d time.Duration) int {
	timer := time.AfterFunc(d, func() {
		t.mu.Lock()
		t.cond.Broadcast()
		t.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(d)
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.pending) > 0 && time.Now().Before(deadline) {
		t.cond.Wait()
	}
	n := 0
	for _, idx := range t.pending {
		n += len(idx)
	}
	return n
}

func (t *tracker) MarkReady() { t.cache.MarkReady() }

func (t *tracker) expect(key string, kind served.Kind, at int64) {
	t.mu.Lock()
	t.changes = append(t.changes, changeRec{T: at, Kind: string(kind)})
	t.pending[key] = append(t.pending[key], len(t.changes)-1)
	t.mu.Unlock()
}

// take returns and forgets the changes and applies recorded so far.
func (t *tracker) take() ([]changeRec, []applyRec) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, a := t.changes, t.applies
	t.changes, t.applies = nil, nil
	clear(t.pending)
	return c, a
}

func (t *tracker) unassigned() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, idx := range t.pending {
		n += len(idx)
	}
	return n
}

// genSource is the generated registry as a source: the whole state once
// started, then whatever the driver injects.
type genSource struct {
	start   chan struct{}
	initial []model.Group
	batches chan []model.Group
}

func (s *genSource) Run(ctx context.Context, out chan<- []model.Group) error {
	select {
	case <-s.start:
	case <-ctx.Done():
		return nil
	}
	select {
	case out <- s.initial:
	case <-ctx.Done():
		return nil
	}
	for {
		select {
		case b := <-s.batches:
			select {
			case out <- b:
			case <-ctx.Done():
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// childMain is the adapter process the driver starts ("loaddriver adapter
// FLAGS"): it runs the adapter on a generated or Consul source and takes
// commands from the driver on stdin.
func childMain(args []string) int {
	fs := flag.NewFlagSet("adapter", flag.ExitOnError)
	mode := fs.String("mode", "inline", "output mode: inline or workloadentry")
	services := fs.Int("services", 1000, "services of the generated registry (without -consul)")
	quiet := fs.Duration("quiet", 100*time.Millisecond, "debounce quiet")
	maxd := fs.Duration("max", time.Second, "debounce max")
	caddr := fs.String("consul", "", "watch the Consul agent at this address instead of a generated registry")
	cmode := fs.String("consul-mode", "default", "Consul source mode: default, cached, stale, or unbounded (default; the driver raises -consul-max-queries above the service count)")
	cmaxq := fs.Int("consul-max-queries", 0, "the Consul source's maxConcurrentQueries (0: its default)")
	cglob := fs.String("consul-services-glob", "", "watch only the Consul services matching this glob")
	ctraffic := fs.Bool("consul-traffic", false, "the Consul source reads its traffic policy config entries (configEntries.trafficPolicy)")
	shards := fs.Int("shards", 1, "xDS listeners (one cache each) the hosts are spread over by adapter.ShardOf")
	layout := fs.String("namespace-layout", "shared", "output.namespaceLayout: shared or perService")
	_ = fs.Parse(args)
	err := runChild(childConfig{mode: convert.Mode(*mode), layout: convert.NamespaceLayout(*layout), services: *services, quiet: *quiet, max: *maxd,
		consulAddr: *caddr, consulMode: *cmode, consulMaxQ: *cmaxq, consulGlob: *cglob, consulTraffic: *ctraffic, shards: *shards})
	if err != nil {
		fmt.Fprintln(os.Stderr, "adapter child:", err)
		return 1
	}
	return 0
}

type childConfig struct {
	mode       convert.Mode
	layout     convert.NamespaceLayout
	services   int
	quiet, max time.Duration
	consulAddr string
	consulMode string
	consulMaxQ int
	consulGlob string
	// consulTraffic: the source reads service-resolver, -splitter and -router.
	consulTraffic bool
	// shards: listeners (one cache each) hosts are spread over by
	// adapter.ShardOf; 0 or 1: one.
	shards int
}

func runChild(cfg childConfig) error {
	log := zap.NewNop()
	opts := gen.Options(cfg.mode)
	if cfg.layout != "" {
		opts.NamespaceLayout = cfg.layout
		if err := opts.Validate(); err != nil {
			return err
		}
	}
	var reg *gen.Registry
	var src sources.Source
	var gs *genSource
	if cfg.consulAddr != "" {
		cc := consul.Config{Address: cfg.consulAddr}
		switch cfg.consulMode {
		case "cached":
			cc.Cached = true
		case "stale":
			cc.Stale = true
		case "default", "", "unbounded":
		default:
			return fmt.Errorf("unknown consul mode %q", cfg.consulMode)
		}
		cc.MaxConcurrentQueries = cfg.consulMaxQ
		// BENCH_CONSUL_MAX_STREAMS sets the source's maxStreams (HTTP/2
		// streams), for runs past its default of 20,000 services.
		if v := os.Getenv("BENCH_CONSUL_MAX_STREAMS"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("BENCH_CONSUL_MAX_STREAMS: %w", err)
			}
			cc.MaxStreams = n
		}
		if cfg.consulGlob != "" {
			cc.Services = []string{cfg.consulGlob}
		}
		cc.ConfigEntries.TrafficPolicy = cfg.consulTraffic
		cs, err := consul.New(cc, sources.Options{Name: sourceName, Logger: log})
		if err != nil {
			return err
		}
		src = cs
	} else {
		reg = gen.NewRegistry(cfg.services)
		gs = &genSource{start: make(chan struct{}), initial: gen.Groups(reg.Services), batches: make(chan []model.Group)}
		src = gs
		if err := checkNaming(reg, opts); err != nil {
			return err
		}
	}

	promReg := prometheus.NewRegistry()
	sm := server.NewMetrics(promReg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	caches := make([]*server.Cache, max(cfg.shards, 1))
	addrs := make([]string, len(caches))
	for i := range caches {
		caches[i] = server.NewCache(sm)
		srv, err := server.New(server.Config{Listen: "127.0.0.1:0", KeepaliveMinTime: 10 * time.Second}, caches[i], sm, log)
		if err != nil {
			return err
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		go func() { _ = srv.Serve(ctx, lis) }()
		addrs[i] = lis.Addr().String()
	}
	cache := caches[0]

	tr := &tracker{cache: cache, pending: map[string][]int{}}
	tr.cond = sync.NewCond(&tr.mu)
	pubs := []adapter.Publisher{tr}
	for _, c := range caches[1:] {
		pubs = append(pubs, shardPub{t: tr, cache: c})
	}
	settings := adapter.Settings{Output: opts, Debounce: adapter.DebounceConfig{Quiet: cfg.quiet, Max: cfg.max}}
	a := adapter.NewSharded([]adapter.NamedSource{{Name: sourceName, Source: src, Reporter: sources.NewReporter(sourceName, nil)}},
		settings, pubs, adapter.NewMetrics(promReg), log)
	var readyAt atomic.Int64
	go func() { _ = a.Run(ctx) }()
	go func() {
		for ctx.Err() == nil {
			if a.Ready() {
				readyAt.Store(time.Now().UnixNano())
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()

	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(reply{Addr: addrs[0], Addrs: addrs}); err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	seed := 1
	for in.Scan() {
		var c command
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			_ = out.Encode(reply{Err: err.Error()})
			continue
		}
		var r reply
		switch c.Op {
		case "start":
			if gs != nil {
				close(gs.start)
			}
			r.T0 = time.Now().UnixNano()
		case "stats":
			r.Stats = collect(promReg, cache, tr, a.Ready(), readyAt.Load(), c.Census)
		case "resetpeak":
			// Linux: writing 5 resets VmHWM to the current RSS.
			if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
				r.Err = err.Error()
			}
		case "waitpublished":
			if n := tr.waitPublished(5 * time.Minute); n > 0 {
				r.Err = fmt.Sprintf("%d changes never published", n)
			}
			r.Stats = collect(promReg, cache, tr, a.Ready(), readyAt.Load(), false)
		case "waitwindow":
			// Wait (polling cheaply) until a debounce window closes after
			// the current count.
			base := windows(promReg)
			deadline := time.Now().Add(5 * time.Minute)
			for windows(promReg) <= base && time.Now().Before(deadline) {
				time.Sleep(2 * time.Millisecond)
			}
			r.T1 = time.Now().UnixNano()
		case "profile":
			r.Err = profile(c.Path)
		case "goroutines":
			// Every goroutine's stack: where a watch waits.
			if f, err := os.Create(c.Path); err != nil {
				r.Err = err.Error()
			} else {
				_ = pprof.Lookup("goroutine").WriteTo(f, 2)
				f.Close()
			}
		case "heap":
			runtime.GC()
			if f, err := os.Create(c.Path); err != nil {
				r.Err = err.Error()
			} else {
				_ = pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
		case "gc":
			runtime.GC()
		case "take":
			r.Changes, r.Applies = tr.take()
		case "change", "noop":
			if gs == nil {
				r.Err = "no generated source"
				break
			}
			if c.Seed != 0 {
				seed = c.Seed
			}
			base := windows(promReg)
			r.T0, r.T1 = inject(gs, reg, tr, opts, c, &seed)
			if c.Op == "noop" {
				deadline := time.Now().Add(5 * time.Minute)
				for windows(promReg) <= base && time.Now().Before(deadline) {
					time.Sleep(2 * time.Millisecond)
				}
				r.T1 = time.Now().UnixNano()
			}
		case "move", "health", "addport":
			if gs == nil {
				r.Err = "no generated source"
				break
			}
			r = shardChange(gs, reg, c)
		case "quit":
			cancel()
			_ = out.Encode(reply{})
			return nil
		default:
			r.Err = "unknown op " + c.Op
		}
		if err := out.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

// inject sends c.Count one-service updates, each moving one endpoint of a
// different pseudo-random service, spaced by c.Interval; "noop" re-sends the
// whole state unchanged as one update instead.
func inject(gs *genSource, reg *gen.Registry, tr *tracker, opts convert.Options, c command, seed *int) (int64, int64) {
	t0 := time.Now()
	if c.Op == "noop" {
		gs.batches <- gen.Groups(reg.Services)
		return t0.UnixNano(), time.Now().UnixNano()
	}
	n := len(reg.Services)
	used := make(map[int]bool, c.Count)
	next := t0
	for k := 0; k < c.Count; k++ {
		i := 0
		for {
			*seed = (*seed*1103515245 + 12345) & 0x7fffffff
			i = *seed % n
			if !used[i] || len(used) >= n {
				break
			}
		}
		used[i] = true
		if c.Interval > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(c.Interval)
		}
		g, j := reg.MoveEndpoint(i)
		svc := g.Services[0]
		kind, key := changedKey(svc, j, opts)
		tr.expect(key, kind, time.Now().UnixNano())
		gs.batches <- []model.Group{g}
	}
	return t0.UnixNano(), time.Now().UnixNano()
}

// changedKey is the resource an endpoint move changes: the ServiceEntry
// inline, the instance's WorkloadEntry otherwise (named as convert names it;
// checkNaming verifies the rule at start).
func changedKey(svc model.Service, inst int, opts convert.Options) (served.Kind, string) {
	se := convert.ResourceName(svc.Host)
	ns := opts.NamespaceFor(svc.Host) // the perService layout's own namespace
	if opts.Mode == convert.ModeInline {
		return served.KindServiceEntry, ns + "/" + se
	}
	return served.KindWorkloadEntry, ns + "/" + convert.ResourceName(se+"-"+sourceName+"-"+svc.Instances[inst].ID)
}

func checkNaming(reg *gen.Registry, opts convert.Options) error {
	svc := reg.Services[0]
	rs, _ := convert.Service(svc.Host, []convert.Contribution{{Source: sourceName, Service: svc}}, opts)
	for j := range svc.Instances {
		kind, key := changedKey(svc, j, opts)
		found := false
		for _, r := range rs {
			if r.Kind == kind && r.Key() == key {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("resource naming changed: %s %s not produced; update changedKey", kind, key)
		}
	}
	return nil
}

var runtimeSamples = []metrics.Sample{
	{Name: "/gc/heap/allocs:bytes"},
	{Name: "/gc/heap/allocs:objects"},
	{Name: "/gc/heap/live:bytes"},
}

func collect(reg *prometheus.Registry, cache *server.Cache, tr *tracker, ready bool, readyAt int64, census bool) *stats {
	s := &stats{T: time.Now().UnixNano(), Ready: ready, ReadyAt: readyAt,
		Pushes: map[string]float64{}, PushBytes: map[string]float64{},
		Versions: map[string]string{}, Resources: map[string]int{}, Bytes: map[string]int{}}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		s.CPUNs = ru.Utime.Nano() + ru.Stime.Nano()
	}
	s.MaxRSS, s.RSS = measure.Self.StatusBytes("VmHWM:"), measure.Self.StatusBytes("VmRSS:")
	metrics.Read(runtimeSamples)
	s.AllocBytes = int64(runtimeSamples[0].Value.Uint64())
	s.AllocObjs = int64(runtimeSamples[1].Value.Uint64())
	s.HeapLive = int64(runtimeSamples[2].Value.Uint64())
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			label := func(name string) string {
				for _, l := range m.GetLabel() {
					if l.GetName() == name {
						return l.GetValue()
					}
				}
				return ""
			}
			switch mf.GetName() {
			case "registry_adapter_server_pushes_total":
				s.Pushes[label("type")] += m.GetCounter().GetValue()
			case "registry_adapter_server_push_bytes_total":
				s.PushBytes[label("type")] += m.GetCounter().GetValue()
			case "registry_adapter_debounce_windows_total":
				s.Windows += m.GetCounter().GetValue()
			case "registry_adapter_flush_duration_seconds":
				s.FlushSum += m.GetHistogram().GetSampleSum()
				s.FlushCount += float64(m.GetHistogram().GetSampleCount())
			case "registry_adapter_server_connected_clients":
				s.Clients = int(m.GetGauge().GetValue())
			}
		}
	}
	for _, k := range served.Kinds {
		s.Versions[string(k)] = cache.Version(k)
		if !census {
			continue
		}
		es := cache.Entries(k)
		s.Resources[string(k)] = len(es)
		for _, e := range es {
			s.Bytes[string(k)] += len(e.Resource.GetValue())
		}
	}
	s.Unassigned = tr.unassigned()
	return s
}

func windows(reg *prometheus.Registry) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "registry_adapter_debounce_windows_total" {
			for _, m := range mf.GetMetric() {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

var profFile *os.File

func profile(path string) string {
	if profFile != nil {
		pprof.StopCPUProfile()
		profFile.Close()
		profFile = nil
	}
	if path == "" {
		return ""
	}
	f, err := os.Create(path)
	if err != nil {
		return err.Error()
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err.Error()
	}
	profFile = f
	return ""
}
