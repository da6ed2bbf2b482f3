// Package soak drives the adapter with a sustained flood of registry changes
// at a large size and checks that it neither leaks nor loses a change: a
// generated source (sources.Source) makes -soak.rate instance changes per
// second over -soak.resources served resources for -soak.duration, the
// adapter and its xDS server run in-process as `registry-adapter run` wires
// them, and a real state-of-the-world gRPC client ACKs every reply and
// decodes what changed, as istiod does.
//
// Opt-in and slow: `make soak` (10 minutes), or
//
//	cd integration/soak && go test -count=1 -timeout 40m -v . -args -soak.duration=1m
package soak

import (
	"context"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
	mcp "istio.io/api/mcp/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/registry-adapter/registry-adapter/adapter"
	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
	"github.com/registry-adapter/registry-adapter/server"
	"github.com/registry-adapter/registry-adapter/sources"
)

var (
	duration   = flag.Duration("soak.duration", 10*time.Minute, "how long changes are made")
	rate       = flag.Int("soak.rate", 1000, "instance changes per second")
	resources  = flag.Int("soak.resources", 50000, "resources served: ServiceEntries plus WorkloadEntries")
	perService = flag.Int("soak.instances", 3, "instances per service (one WorkloadEntry each)")
	sampleIntv = flag.Duration("soak.sample", 5*time.Second, "memory and goroutine sampling interval")
)

const (
	seTypeURL = "networking.istio.io/v1/ServiceEntry"
	weTypeURL = "networking.istio.io/v1/WorkloadEntry"
)

// istiodTypes are the type URLs istiod asks a config source for.
var istiodTypes = []string{
	"core/v1alpha1/MeshConfig",
	"networking.istio.io/v1/DestinationRule", "networking.istio.io/v1/Gateway",
	seTypeURL, "networking.istio.io/v1/Sidecar",
	"networking.istio.io/v1/VirtualService", weTypeURL,
	"networking.istio.io/v1/WorkloadGroup", "networking.istio.io/v1alpha3/EnvoyFilter",
	"networking.istio.io/v1beta1/ProxyConfig", "security.istio.io/v1/AuthorizationPolicy",
	"security.istio.io/v1/PeerAuthentication", "security.istio.io/v1/RequestAuthentication",
	"telemetry.istio.io/v1/Telemetry", "extensions.istio.io/v1alpha1/TrafficExtension",
	"extensions.istio.io/v1alpha1/WasmPlugin",
}

// ---------------------------------------------------------------------------
// The generated registry

// generator is a source of nServices services with perSvc instances each.
// After start, it changes one instance per change, round robin over all
// instances, at rate per second: the instance's "seq" label becomes the
// change's sequence number (1, 2, ...). It sends the changed services' groups
// every 10ms.
type generator struct {
	nServices, perSvc, rate int
	start                   chan struct{}
	stopAt                  atomic.Int64 // unix ns; 0: not set

	// genAt[seq] is when change seq was handed to the adapter (unix ns).
	genAt []atomic.Int64
	made  atomic.Int64 // changes made so far
	// blocked is the time spent waiting for the adapter to take a batch.
	blocked atomic.Int64

	// final is each instance's last seq; read once the generator is done.
	done  chan struct{}
	final []int64
}

func newGenerator(services, perSvc, rate int, d time.Duration) *generator {
	capacity := int(float64(rate)*d.Seconds()*1.05) + rate*5
	return &generator{
		nServices: services, perSvc: perSvc, rate: rate,
		start: make(chan struct{}), done: make(chan struct{}),
		genAt: make([]atomic.Int64, capacity+1),
		final: make([]int64, services*perSvc),
	}
}

func (g *generator) instances() int { return g.nServices * g.perSvc }

func address(k int) string { return fmt.Sprintf("10.%d.%d.%d", 100+(k>>16)&0x3f, (k>>8)&0xff, k&0xff) }

func (g *generator) instance(k int, seq int64) model.Instance {
	return model.Instance{
		ID:       fmt.Sprintf("node-%d/svc-%d", k, k/g.perSvc),
		Address:  address(k),
		Labels:   model.LabelsFromMap(map[string]string{"inst": fmt.Sprintf("i-%d", k), "seq": strconv.FormatInt(seq, 10), "version": "v1"}),
		Locality: fmt.Sprintf("dc1/z%d", k%3),
		Health:   model.HealthPassing,
	}
}

func (g *generator) service(i int) model.Service {
	name := fmt.Sprintf("svc-%06d", i)
	svc := model.Service{
		Name: name, Host: name + ".service.consul",
		Ports:  []model.Port{{Number: 8080, Protocol: model.ProtocolHTTP}, {Number: 9090, Protocol: model.ProtocolGRPC}},
		Labels: model.LabelsFromMap(map[string]string{"team": fmt.Sprintf("team-%02d", i%40)}),
	}
	for j := 0; j < g.perSvc; j++ {
		svc.Instances = append(svc.Instances, g.instance(i*g.perSvc+j, 0))
	}
	return svc
}

// Run implements sources.Source. Every batch carries new Service values:
// what was sent before is never modified.
func (g *generator) Run(ctx context.Context, out chan<- []model.Group) error {
	svcs := make([]model.Service, g.nServices)
	initial := make([]model.Group, g.nServices)
	for i := range svcs {
		svcs[i] = g.service(i)
		initial[i] = model.Group{Scope: svcs[i].Name, Services: []model.Service{svcs[i]}}
	}
	select {
	case out <- initial:
	case <-ctx.Done():
		return nil
	}
	select {
	case <-g.start:
	case <-ctx.Done():
		return nil
	}
	// A source returns only when ctx is done: after the last change it idles.
	idle := func() error {
		close(g.done)
		<-ctx.Done()
		return nil
	}
	begin := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var seq int64
	touched := map[int]bool{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		now := time.Now()
		if stop := g.stopAt.Load(); stop != 0 && now.UnixNano() >= stop {
			return idle()
		}
		due := int64(now.Sub(begin).Seconds() * float64(g.rate))
		// At most a second's worth at once when behind.
		n := min(due-seq, int64(g.rate))
		if n <= 0 {
			continue
		}
		if seq+n >= int64(len(g.genAt)) {
			return idle() // capacity reached
		}
		clear(touched)
		first := seq + 1
		for ; n > 0; n-- {
			seq++
			k := int((seq - 1) % int64(g.instances()))
			i, j := k/g.perSvc, k%g.perSvc
			svc := svcs[i]
			insts := slices.Clone(svc.Instances)
			insts[j] = g.instance(k, seq)
			svc.Instances = insts
			svcs[i] = svc
			touched[i] = true
			g.final[k] = seq
		}
		batch := make([]model.Group, 0, len(touched))
		for i := range touched {
			batch = append(batch, model.Group{Scope: svcs[i].Name, Services: []model.Service{svcs[i]}})
		}
		sent := time.Now()
		for s := first; s <= seq; s++ {
			g.genAt[s].Store(sent.UnixNano())
		}
		select {
		case out <- batch:
		case <-ctx.Done():
			return nil
		}
		g.blocked.Add(int64(time.Since(sent)))
		g.made.Store(seq)
	}
}

// ---------------------------------------------------------------------------
// The client: a state-of-the-world ADS stream, as istiod's config source
// client opens it

type client struct {
	gen *generator

	mu          sync.Mutex
	responses   map[string]int
	lastVersion map[string]string
	sameVersion int // WorkloadEntry replies whose version equals the previous one
	seCount     int
	weCount     int
	weVersion   map[string]string // WorkloadEntry name -> resource version
	instSeq     []int64           // instance -> last seq seen
	observed    []bool            // seq -> seen by the client
	nObserved   int64
	regressions int   // a seq older than one seen before for the same instance
	coalesced   int64 // changes never seen because a later one of the same instance came first
	decodeErrs  int
	lat         latencies
	err         error
	changed     chan struct{}
}

// latencies is a fixed log-scale histogram (1ms .. ~100s), so that recording
// does not grow memory.
type latencies struct {
	buckets [60]int64
	max     time.Duration
	n       int64
}

func (l *latencies) add(d time.Duration) {
	l.n++
	l.max = max(l.max, d)
	ms := float64(d) / float64(time.Millisecond)
	b := 0
	if ms > 1 {
		b = min(int(math.Log2(ms)*3), len(l.buckets)-1)
	}
	l.buckets[b]++
}

func (l *latencies) quantile(q float64) time.Duration {
	if l.n == 0 {
		return 0
	}
	target := int64(math.Ceil(q * float64(l.n)))
	var acc int64
	for b, c := range l.buckets {
		acc += c
		if acc >= target {
			// the bucket's upper bound, or the largest latency seen
			return min(time.Duration(math.Pow(2, float64(b+1)/3)*float64(time.Millisecond)), l.max)
		}
	}
	return l.max
}

func newClient(g *generator) *client {
	c := &client{
		gen: g, responses: map[string]int{}, lastVersion: map[string]string{}, weVersion: map[string]string{},
		instSeq: make([]int64, g.instances()), observed: make([]bool, len(g.genAt)), changed: make(chan struct{}, 1),
	}
	return c
}

func (c *client) run(ctx context.Context, addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)))
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	md, _ := structpb.NewStruct(map[string]any{"GENERATOR": "api", "ISTIO_VERSION": "1.31.0"})
	node := &core.Node{Id: "sidecar~127.0.0.1~istiod-soak.istio-system~istio-system.svc.cluster.local", Metadata: md}
	for i, t := range istiodTypes {
		req := &discovery.DiscoveryRequest{TypeUrl: t}
		if i == 0 {
			req.Node = node
		}
		if err := stream.Send(req); err != nil {
			return err
		}
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		c.handle(resp)
		if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
			return err
		}
		select {
		case c.changed <- struct{}{}:
		default:
		}
	}
}

// handle decodes a reply the way istiod does for what changed: the MCP
// envelope of every resource, the body of those whose version moved.
func (c *client) handle(resp *discovery.DiscoveryResponse) {
	now := time.Now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	typ := resp.GetTypeUrl()
	c.responses[typ]++
	if typ == weTypeURL && c.responses[typ] > 1 && resp.GetVersionInfo() == c.lastVersion[typ] {
		c.sameVersion++
	}
	c.lastVersion[typ] = resp.GetVersionInfo()
	switch typ {
	case seTypeURL:
		c.seCount = len(resp.GetResources())
		return
	case weTypeURL:
	default:
		return
	}
	c.weCount = len(resp.GetResources())
	var r mcp.Resource
	var we networking.WorkloadEntry
	for _, a := range resp.GetResources() {
		r.Reset()
		if err := a.UnmarshalTo(&r); err != nil {
			c.decodeErrs++
			continue
		}
		name, version := r.GetMetadata().GetName(), r.GetMetadata().GetVersion()
		if c.weVersion[name] == version {
			continue
		}
		c.weVersion[name] = version
		we.Reset()
		if err := r.GetBody().UnmarshalTo(&we); err != nil || we.GetAddress() == "" {
			c.decodeErrs++
			continue
		}
		// Instance labels travel as the resource's metadata labels (istiod
		// copies them onto the config, where selectors see them).
		labels := r.GetMetadata().GetLabels()
		k, err1 := strconv.Atoi(strings.TrimPrefix(labels["inst"], "i-"))
		seq, err2 := strconv.ParseInt(labels["seq"], 10, 64)
		if err1 != nil || err2 != nil || k < 0 || k >= len(c.instSeq) {
			c.decodeErrs++
			continue
		}
		prev := c.instSeq[k]
		switch {
		case seq == 0 && prev == 0:
			// the initial state
		case seq <= prev:
			c.regressions++
		default:
			c.instSeq[k] = seq
			if !c.observed[seq] {
				c.observed[seq] = true
				c.nObserved++
				c.lat.add(time.Duration(now - c.gen.genAt[seq].Load()))
			}
			// Every change of instance k between prev and seq is a
			// multiple of the number of instances apart.
			if prev > 0 {
				c.coalesced += (seq-prev)/int64(c.gen.instances()) - 1
			} else if seq > int64(c.gen.instances()) {
				c.coalesced += (seq - 1) / int64(c.gen.instances())
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Process measurements

type sample struct {
	at         time.Duration // since the changes started
	liveHeap   uint64        // bytes live after the last GC
	heapInUse  uint64
	rss        uint64
	goroutines int
	made       int64
	observed   int64
	weReplies  int
}

func measure() (live, inUse uint64, goroutines int) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}, {Name: "/sched/goroutines:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64(), int(s[2].Value.Uint64())
}

func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// ---------------------------------------------------------------------------

func TestSoak(t *testing.T) {
	nServices := *resources / (1 + *perService)
	g := newGenerator(nServices, *perService, *rate, *duration)
	t.Logf("soak: %d services x %d instances = %d resources (%d ServiceEntries, %d WorkloadEntries), %d changes/s for %s, GOMAXPROCS %d, load %s",
		nServices, *perService, nServices*(1+*perService), nServices, g.instances(), *rate, *duration, runtime.GOMAXPROCS(0), loadavg())

	// The adapter, wired as `registry-adapter run` wires it.
	reg := prometheus.NewRegistry()
	log := zap.NewNop()
	srvMetrics := server.NewMetrics(reg)
	cache := server.NewCache(srvMetrics)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvCfg := server.Config{Listen: lis.Addr().String()}
	srvCfg.SetDefaults()
	srv, err := server.New(srvCfg, cache, srvMetrics, log)
	if err != nil {
		t.Fatal(err)
	}
	var settings adapter.Settings
	// The soak watches WorkloadEntry replies: one per instance change.
	settings.Output.Mode = convert.ModeWorkloadEntry
	settings.Output.SetDefaults()
	settings.Debounce.SetDefaults()
	settings.Guard.SetDefaults()
	rep := sources.NewReporter("soak", sources.NewMetrics(reg))
	a := adapter.New([]adapter.NamedSource{{Name: "soak", Source: g, Reporter: rep}}, settings, cache, adapter.NewMetrics(reg), log)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	errc := make(chan error, 3)
	for _, fn := range []func() error{
		func() error { return srv.Serve(ctx, lis) },
		func() error { return a.Run(ctx) },
	} {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- fn() }()
	}
	c := newClient(g)
	wg.Add(1)
	go func() { defer wg.Done(); errc <- c.run(ctx, lis.Addr().String()) }()

	// The initial state reaches the client whole.
	initStart := time.Now()
	waitFor(t, ctx, c, errc, 5*time.Minute, "the initial state", func() bool {
		return c.seCount == nServices && c.weCount == g.instances() && len(c.weVersion) == g.instances()
	})
	t.Logf("initial state (%d resources) served and decoded in %s; RSS %s", nServices+g.instances(),
		time.Since(initStart).Round(time.Millisecond), mib(rss()))

	// Sample memory and goroutines while changes flow.
	var (
		smu     sync.Mutex
		samples []sample
	)
	start := time.Now()
	take := func() sample {
		live, inUse, gr := measure()
		c.mu.Lock()
		s := sample{at: time.Since(start), liveHeap: live, heapInUse: inUse, rss: rss(), goroutines: gr,
			made: g.made.Load(), observed: c.nObserved, weReplies: c.responses[weTypeURL]}
		c.mu.Unlock()
		return s
	}
	sampler := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(*sampleIntv)
		defer tick.Stop()
		lastLog := time.Now()
		for {
			select {
			case <-sampler:
				return
			case <-tick.C:
			}
			s := take()
			smu.Lock()
			samples = append(samples, s)
			smu.Unlock()
			if time.Since(lastLog) >= 30*time.Second {
				lastLog = time.Now()
				fmt.Printf("soak %s: %d changes made, %d seen by the client, %d WorkloadEntry replies; live heap %s, RSS %s, %d goroutines, load %s\n",
					s.at.Round(time.Second), s.made, s.observed, s.weReplies, mib(s.liveHeap), mib(s.rss), s.goroutines, loadavg())
			}
		}
	}()

	g.stopAt.Store(start.Add(*duration).UnixNano())
	close(g.start)
	select {
	case <-g.done:
	case err := <-errc:
		t.Fatalf("stopped early: %v", err)
	}
	changesEnd := time.Now()
	made := g.made.Load()
	took := changesEnd.Sub(start)

	// Every instance's last change reaches the client.
	converge := time.Now()
	waitFor(t, ctx, c, errc, 2*time.Minute, "the final state", func() bool {
		for k, seq := range g.final {
			if c.instSeq[k] != seq {
				return false
			}
		}
		return true
	})
	convergeTook := time.Since(converge)
	close(sampler)
	final := take()

	c.mu.Lock()
	defer c.mu.Unlock()
	smu.Lock()
	defer smu.Unlock()

	achieved := float64(made) / took.Seconds()
	t.Logf("changes: %d made in %s (%.0f/s, target %d/s); the adapter kept the generator waiting %s in total",
		made, took.Round(time.Millisecond), achieved, *rate, time.Duration(g.blocked.Load()).Round(time.Millisecond))
	t.Logf("client: %d changes seen (%d coalesced, %d out of order), %d WorkloadEntry replies (%d with an unchanged version), final state reached %s after the last change",
		c.nObserved, c.coalesced, c.regressions, c.responses[weTypeURL], c.sameVersion, convergeTook.Round(time.Millisecond))
	t.Logf("change -> client latency: p50 <= %s, p99 <= %s, max %s (log buckets, upper bounds)", c.lat.quantile(0.5).Round(time.Millisecond), c.lat.quantile(0.99).Round(time.Millisecond), c.lat.max.Round(time.Millisecond))

	if achieved < 0.95*float64(*rate) {
		t.Errorf("only %.0f changes/s of %d", achieved, *rate)
	}
	if c.nObserved != made || c.coalesced != 0 || c.regressions != 0 || c.decodeErrs != 0 {
		t.Errorf("of %d changes the client saw %d (%d coalesced, %d out of order, %d undecodable)", made, c.nObserved, c.coalesced, c.regressions, c.decodeErrs)
	}
	missing := 0
	for seq := int64(1); seq <= made; seq++ {
		if !c.observed[seq] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d changes never reached the client", missing)
	}
	if c.sameVersion > 0 {
		t.Errorf("%d WorkloadEntry replies repeated the previous version", c.sameVersion)
	}
	if c.seCount != nServices || c.weCount != g.instances() {
		t.Errorf("client holds %d ServiceEntries and %d WorkloadEntries, want %d and %d", c.seCount, c.weCount, nServices, g.instances())
	}
	if v := cache.Version(served.KindWorkloadEntry); c.lastVersion[weTypeURL] != v {
		t.Errorf("client's last WorkloadEntry version %s, served %s", c.lastVersion[weTypeURL], v)
	}

	// Flat memory and goroutines: the first window of the run against the last.
	window := max(min(time.Minute, *duration/4), 2**sampleIntv)
	var first, last []sample
	for _, s := range samples {
		if s.at <= window {
			first = append(first, s)
		}
		if s.at >= took-window && s.at <= took {
			last = append(last, s)
		}
	}
	if len(first) == 0 || len(last) == 0 {
		t.Fatalf("too few samples (%d)", len(samples))
	}
	avg := func(ss []sample, f func(sample) uint64) uint64 {
		var sum uint64
		for _, s := range ss {
			sum += f(s)
		}
		return sum / uint64(len(ss))
	}
	maxG := func(ss []sample) int {
		m := 0
		for _, s := range ss {
			m = max(m, s.goroutines)
		}
		return m
	}
	live := func(s sample) uint64 { return s.liveHeap }
	rssOf := func(s sample) uint64 { return s.rss }
	l1, l2 := avg(first, live), avg(last, live)
	r1, r2 := avg(first, rssOf), avg(last, rssOf)
	g1, g2 := maxG(first), maxG(last)
	t.Logf("first %s vs last %s: live heap %s -> %s, RSS %s -> %s, goroutines (max) %d -> %d; %d samples, slope of live heap %s/min",
		window, window, mib(l1), mib(l2), mib(r1), mib(r2), g1, g2, len(samples), slope(samples))
	if float64(l2) > 1.15*float64(l1)+16<<20 {
		t.Errorf("live heap grew: %s -> %s", mib(l1), mib(l2))
	}
	if float64(r2) > 1.25*float64(r1)+64<<20 {
		t.Errorf("RSS grew: %s -> %s", mib(r1), mib(r2))
	}
	if g2 > g1+10 {
		t.Errorf("goroutines grew: %d -> %d", g1, g2)
	}
	t.Logf("end: live heap %s, RSS %s, %d goroutines", mib(final.liveHeap), mib(final.rss), final.goroutines)
}

// waitFor polls cond (under the client's lock) until it holds, failing on a
// component's error or after timeout.
func waitFor(t *testing.T, ctx context.Context, c *client, errc <-chan error, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok := cond()
		err := c.err
		c.mu.Unlock()
		if ok {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-c.changed:
		case err := <-errc:
			t.Fatalf("%s: a component stopped: %v", what, err)
		case <-deadline.C:
			t.Fatalf("%s: not reached after %s", what, timeout)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
}

// slope is the least-squares slope of the live heap over time.
func slope(ss []sample) string {
	if len(ss) < 2 {
		return "n/a"
	}
	var sx, sy, sxx, sxy float64
	for _, s := range ss {
		x, y := s.at.Minutes(), float64(s.liveHeap)
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
	}
	n := float64(len(ss))
	d := n*sxx - sx*sx
	if d == 0 {
		return "n/a"
	}
	b := (n*sxy - sx*sy) / d
	sign := ""
	if b < 0 {
		sign, b = "-", -b
	}
	return sign + mib(uint64(b))
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
