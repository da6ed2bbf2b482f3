// Command loaddriver is the load driver of `make bench`: it runs the adapter
// (real adapter loop, cache and gRPC server) in a child process per scenario
// set, connects real gRPC clients doing state-of-the-world ADS with ACKs the
// way istiod does, drives changes through a generated source or a real
// Consul, and prints one table in which every figure is also a ratio to a
// floor measured in the same run.
//
//	loaddriver [flags]              run the scenarios and print the table
//	loaddriver adapter [flags]      the child process (internal)
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/registry-adapter/registry-adapter/bench/floor"
	"github.com/registry-adapter/registry-adapter/bench/gen"
	"github.com/registry-adapter/registry-adapter/bench/internal/measure"
	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/served"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "adapter" {
		os.Exit(childMain(os.Args[2:]))
	}
	os.Exit(driverMain())
}

type options struct {
	sizes       []int
	weInstances int
	clients     []int
	reps        int
	churn       time.Duration
	churnRate   float64 // fraction of instances changed per minute
	quiet, max  time.Duration
	decode      bool
	cold3       bool

	consul         bool
	consulServices []int
	consulModes    []string
	consulLarge    []int
	consulRest     time.Duration
	consulChurn    time.Duration
	consulChanges  int
	consulKind     string
	consulTraffic  bool
	istiod         bool
	istiodServices int
	shardKs        []int
	shardSizes     []int
	shardChanges   int
	shardColds     int
	compareWays    []string
	compareSizes   []int
	compareChanges int
	compareBurst   int
	comparePprof   string
	compareTimeout time.Duration
	gobench        string
	out            string
	repo           string
	profile        string
}

func driverMain() int {
	var o options
	sizes := flag.String("sizes", "1000,10000,50000", "inline-mode ServiceEntry counts (2 ports, 3 endpoints each)")
	flag.IntVar(&o.weInstances, "we-instances", 100000, "workloadentry mode: instances (WorkloadEntries), 3 per service; 0 skips")
	clients := flag.String("clients", "1,3", "client counts")
	flag.IntVar(&o.reps, "reps", 3, "single-change repetitions per client count")
	flag.DurationVar(&o.churn, "churn", 20*time.Second, "steady-churn sample length (at the real rate)")
	flag.Float64Var(&o.churnRate, "churn-rate", 0.01, "steady churn: fraction of instances changed per minute")
	flag.DurationVar(&o.quiet, "quiet", 100*time.Millisecond, "debounce quiet")
	flag.DurationVar(&o.max, "max", time.Second, "debounce max")
	flag.BoolVar(&o.decode, "decode", true, "clients decode every response istiod-style before ACKing")
	flag.BoolVar(&o.cold3, "cold3", true, "also measure a cold sync with 3 clients (own child process)")
	flag.BoolVar(&o.consul, "consul", true, "run the Consul scenarios (needs integration/consul/consul.sh)")
	csizes := flag.String("consul-services", "1000,10000", "Consul service counts (3 instances each)")
	clarge := flag.String("consul-large", "30000", "Consul service counts measured over HTTPS only (the source's recommended transport), after the other sizes and the real-istiod scenario (empty: none)")
	cmodes := flag.String("consul-modes", "https,default,cached,unbounded", "Consul source modes: default, https (default over Consul's HTTPS listener, HTTP/2), cached, stale, unbounded (default with maxConcurrentQueries above the service count); stale is left out by default: on a single-server agent it measured the same as default in every run")
	flag.DurationVar(&o.consulRest, "consul-rest", 20*time.Second, "Consul request-rate sample at rest")
	flag.DurationVar(&o.consulChurn, "consul-churn", 20*time.Second, "Consul request-rate sample under churn")
	flag.IntVar(&o.consulChanges, "consul-changes", 100, "Consul: at least this many changes under churn (faster than -churn-rate if needed)")
	flag.BoolVar(&o.consulTraffic, "consul-traffic", false, "Consul: every 10th service gets service-defaults, a service-resolver and a 90/10 service-splitter, the source reads them (configEntries.trafficPolicy), and each mode ends with 20 splitter changes whose config requests and visibility are measured")
	flag.StringVar(&o.consulKind, "consul-churn-kind", "address", "Consul churn: address (an instance moves to a new address with the same check: what the plain-HTTP feeds cannot see) or check (the move also changes the check's output, as a check whose result text changes does: what the checks feed shows)")
	flag.BoolVar(&o.istiod, "istiod", true, "run the real-istiod scenario (needs integration/istiod built; it runs within the Consul scenarios, so -consul too)")
	flag.IntVar(&o.istiodServices, "istiod-services", 1000, "services in the real-istiod scenario")
	shardKs := flag.String("istiod-shards", "", "sharding with the real istiod: listener counts K to compare, e.g. 1,4 (empty: skip; about 2-3 minutes per N and K)")
	shardSizes := flag.String("istiod-shard-sizes", "10000,50000", "sharding with the real istiod: inline ServiceEntry counts N")
	flag.IntVar(&o.shardChanges, "istiod-shard-changes", 20, "sharding with the real istiod: endpoint changes per N and K")
	flag.IntVar(&o.shardColds, "istiod-shard-colds", 3, "sharding with the real istiod: cold syncs (istiod restarts) per N and K")
	compareWays := flag.String("istiod-compare", "", "istiod's side, side by side: ways to serve the same services to a fresh real istiod each, e.g. inline,inline-versionless,workloadentry,workloadentry-perservice (empty: skip; -versionless relays the adapter's replies without resource versions; -perservice sets output.namespaceLayout perService)")
	compareSizes := flag.String("istiod-compare-sizes", "10000", "istiod comparison: service counts")
	flag.IntVar(&o.compareChanges, "istiod-compare-changes", 10, "istiod comparison: endpoint moves, and health changes, per row")
	flag.IntVar(&o.compareBurst, "istiod-compare-burst", 1000, "istiod comparison: endpoint moves of distinct services sent at once (0: skip)")
	flag.StringVar(&o.comparePprof, "istiod-compare-pprof", "", "istiod comparison: `dir` for istiod CPU profiles (the first 30 s of its sync, and the burst)")
	flag.DurationVar(&o.compareTimeout, "istiod-compare-timeout", 20*time.Minute, "istiod comparison: limit for istiod's sync, and for the burst")
	flag.StringVar(&o.gobench, "gobench", "", "`go test -bench` output to fold into the table")
	flag.StringVar(&o.out, "out", "", "also write the table to this file")
	flag.StringVar(&o.repo, "repo", ".", "repository root (for the integration scripts)")
	flag.StringVar(&o.profile, "profile", "", "`dir`: write CPU profiles of the adapter process (cold sync, one change, no-op) there")
	flag.Parse()
	o.sizes = ints(*sizes)
	o.clients = ints(*clients)
	o.consulServices = ints(*csizes)
	o.consulLarge = ints(*clarge)
	o.consulModes = strings.Split(*cmodes, ",")
	o.shardKs = ints(*shardKs)
	o.shardSizes = ints(*shardSizes)
	o.compareSizes = ints(*compareSizes)
	if *compareWays != "" {
		o.compareWays = strings.Split(*compareWays, ",")
	}

	rep := &report{start: time.Now(), opts: o}
	rep.machine()
	for _, n := range o.sizes {
		if err := runSet(rep, o, convert.ModeInline, n); err != nil {
			rep.fail(fmt.Sprintf("inline N=%d", n), err)
		}
	}
	if o.weInstances > 0 {
		if err := runSet(rep, o, convert.ModeWorkloadEntry, gen.ServicesFor(o.weInstances, convert.ModeWorkloadEntry)); err != nil {
			rep.fail("workloadentry", err)
		}
	}
	if o.consul {
		if err := runConsul(rep, o); err != nil {
			rep.fail("consul", err)
		}
	}
	if len(o.shardKs) > 0 {
		if err := runShards(rep, o); err != nil {
			rep.fail("istiod shards", err)
		}
	}
	if len(o.compareWays) > 0 {
		if err := runCompare(rep, o); err != nil {
			rep.fail("istiod compare", err)
		}
	}
	if o.gobench != "" {
		rep.goBench(o.gobench)
	}
	text := rep.render()
	fmt.Print(text)
	if o.out != "" {
		_ = os.WriteFile(o.out, []byte(text), 0o644)
	}
	if len(rep.failures) > 0 {
		return 1
	}
	return 0
}

func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bad number", f)
			os.Exit(2)
		}
		out = append(out, v)
	}
	return out
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[loaddriver %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// ---- floors

// floorSet is the floors of one registry, per kind, measured in this run.
type floorSet struct {
	Marshal, Build, Decode map[served.Kind]time.Duration
	// Copy is the physical floor of a state-of-the-world push: one copy of
	// the reply's bytes (memmove of a full response), which any server that
	// sends the whole set pays at least once per client.
	Copy                   map[served.Kind]time.Duration
	Wire, Resources, Bytes map[served.Kind]int
}

func (f floorSet) total(m map[served.Kind]time.Duration) time.Duration {
	var t time.Duration
	for _, v := range m {
		t += v
	}
	return t
}

func (f floorSet) count() int {
	n := 0
	for _, v := range f.Resources {
		n += v
	}
	return n
}

// timeIt returns the median of k runs of fn, after a GC each.
func timeIt(k int, fn func()) time.Duration {
	ds := make([]time.Duration, k)
	for i := range ds {
		runtime.GC()
		t := time.Now()
		fn()
		ds[i] = time.Since(t)
	}
	return measure.Median(ds)
}

func measureFloors(mode convert.Mode, services int) (floorSet, error) {
	f := floorSet{Marshal: map[served.Kind]time.Duration{}, Build: map[served.Kind]time.Duration{}, Decode: map[served.Kind]time.Duration{}, Copy: map[served.Kind]time.Duration{},
		Wire: map[served.Kind]int{}, Resources: map[served.Kind]int{}, Bytes: map[served.Kind]int{}}
	all := gen.Resources(gen.Services(services), gen.Options(mode))
	byKind := map[served.Kind][]*served.Resource{}
	for _, r := range all {
		byKind[r.Kind] = append(byKind[r.Kind], r)
	}
	for kind, rs := range byKind {
		k := 3
		if len(rs) < 20000 {
			k = 5
		}
		specs, envs := floor.Specs(rs), floor.Envelopes(rs)
		var err error
		f.Marshal[kind] = timeIt(k, func() {
			if _, e := floor.Marshal(specs, envs); e != nil {
				err = e
			}
		})
		anys := floor.Serialized(rs)
		var wire []byte
		f.Build[kind] = timeIt(k, func() {
			w, e := floor.Build(typeURLOf(kind), "v", anys)
			if e != nil {
				err = e
			}
			wire = w
		})
		dst := make([]byte, len(wire))
		f.Copy[kind] = timeIt(k, func() { copy(dst, wire) })
		f.Decode[kind] = timeIt(k, func() {
			if _, e := floor.Decode(wire); e != nil {
				err = e
			}
		})
		if err != nil {
			return f, err
		}
		f.Wire[kind] = len(wire)
		f.Resources[kind] = len(rs)
		for _, a := range anys {
			f.Bytes[kind] += len(a.GetValue())
		}
	}
	return f, nil
}

// ---- the child process

type childProc struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	dec  *json.Decoder
	addr string
	// addrs are every shard's listener (addr is the first).
	addrs []string
	done  chan error
}

func startChild(args ...string) (*childProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{"adapter"}, args...)...)
	cmd.Stderr = os.Stderr
	// The adapter's own GC settings, e.g. to see what a memory limit does to
	// its RSS: BENCH_CHILD_GOMEMLIMIT=400MiB, BENCH_CHILD_GOGC=50.
	cmd.Env = os.Environ()
	for _, v := range []string{"GOMEMLIMIT", "GOGC"} {
		if x := os.Getenv("BENCH_CHILD_" + v); x != "" {
			cmd.Env = append(cmd.Env, v+"="+x)
		}
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &childProc{cmd: cmd, in: in, dec: json.NewDecoder(bufio.NewReaderSize(out, 1<<20)), done: make(chan error, 1)}
	var r reply
	if err := p.dec.Decode(&r); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("adapter child did not start: %w", err)
	}
	p.addr, p.addrs = r.Addr, r.Addrs
	return p, nil
}

// startReady starts the child's sources and polls its stats every poll
// until it has served its first full state, or ctx ends (its deadline). It
// returns the start reply (T0 is when the child began) and the stats at
// readiness (ReadyAt).
func (p *childProc) startReady(ctx context.Context, poll time.Duration) (reply, *stats, error) {
	start, err := p.do(command{Op: "start"})
	if err != nil {
		return reply{}, nil, err
	}
	t := time.NewTimer(poll)
	defer t.Stop()
	for {
		st, err := p.stats(false)
		if err != nil {
			return reply{}, nil, err
		}
		if st.Ready {
			return start, st, nil
		}
		select {
		case <-ctx.Done():
			return reply{}, nil, fmt.Errorf("adapter child %w", context.Cause(ctx))
		case <-t.C:
			t.Reset(poll)
		}
	}
}

func (p *childProc) do(c command) (reply, error) {
	b, _ := json.Marshal(c)
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		return reply{}, err
	}
	var r reply
	if err := p.dec.Decode(&r); err != nil {
		return r, err
	}
	if r.Err != "" {
		return r, errors.New(r.Err)
	}
	return r, nil
}

func (p *childProc) stats(census bool) (*stats, error) {
	r, err := p.do(command{Op: "stats", Census: census})
	if err != nil {
		return nil, err
	}
	return r.Stats, nil
}

func (p *childProc) quit() {
	_, _ = p.do(command{Op: "quit"})
	_ = p.in.Close()
	t := time.AfterFunc(10*time.Second, func() { _ = p.cmd.Process.Kill() })
	_ = p.cmd.Wait()
	t.Stop()
}

// ---- scenarios

// set is one registry size and mode under test.
type set struct {
	o       options
	mode    convert.Mode
	n       int // services
	floors  floorSet
	child   *childProc
	clients []*client
	kind    served.Kind // the kind an endpoint change pushes
	seqOf   map[string]int
	seed    int
}

func (s *set) label() string {
	if s.mode == convert.ModeInline {
		return fmt.Sprintf("inline %s SE", human(s.n))
	}
	return fmt.Sprintf("WE %s inst", human(s.n*gen.InstancesPerService))
}

func human(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	if n >= 1000 {
		return fmt.Sprintf("%.1fk", float64(n)/1000)
	}
	return strconv.Itoa(n)
}

func (s *set) childArgs() []string { return adapterArgs(s.o, string(s.mode), s.n) }

// wanted is the served version of every kind, as type URL -> version.
func wanted(st *stats) map[string]string {
	out := map[string]string{}
	for k, v := range st.Versions {
		out[typeURLOf(served.Kind(k))] = v
	}
	return out
}

func runSet(rep *report, o options, mode convert.Mode, services int) error {
	s := &set{o: o, mode: mode, n: services, kind: served.KindServiceEntry, seqOf: map[string]int{}, seed: 7}
	if mode == convert.ModeWorkloadEntry {
		s.kind = served.KindWorkloadEntry
	}
	progress("%s: floors", s.label())
	f, err := measureFloors(mode, services)
	if err != nil {
		return err
	}
	s.floors = f
	rep.addFloors(s.label(), mode, f)
	runtime.GC()

	maxC := slices.Max(o.clients)
	if o.cold3 && maxC > 1 {
		progress("%s: cold sync, %d clients", s.label(), maxC)
		if err := s.cold(rep, maxC, true); err != nil {
			return err
		}
	}
	progress("%s: cold sync, %d client", s.label(), o.clients[0])
	if err := s.cold(rep, o.clients[0], false); err != nil {
		return err
	}
	defer func() {
		for _, c := range s.clients {
			c.close()
		}
		s.child.quit()
	}()
	for _, nc := range o.clients {
		if nc > len(s.clients) {
			if err := s.join(rep, nc); err != nil {
				return err
			}
		}
		progress("%s: changes, %d clients", s.label(), nc)
		if err := s.changes(rep, "one change", 1, s.o.reps, 0); err != nil {
			return err
		}
		if err := s.changes(rep, "burst 100", 100, 1, 0); err != nil {
			return err
		}
		if err := s.changes(rep, "burst 1000", 1000, 1, 0); err != nil {
			return err
		}
		instances := s.n * gen.InstancesPerService
		perMin := float64(instances) * o.churnRate
		count := int(perMin * o.churn.Minutes())
		if count > 0 {
			interval := time.Duration(float64(time.Minute) / perMin)
			name := fmt.Sprintf("churn %.0f%%/min", o.churnRate*100)
			if err := s.changes(rep, name, count, 1, interval); err != nil {
				return err
			}
		}
		progress("%s: reconnect and no-op, %d clients", s.label(), nc)
		if err := s.reconnect(rep); err != nil {
			return err
		}
		if err := s.noop(rep); err != nil {
			return err
		}
	}
	return nil
}

// cold starts a child, connects nc clients, starts the source and waits
// until every client has ACKed the full state. With once it then stops the
// child; otherwise the child and clients stay for the next scenarios.
func (s *set) cold(rep *report, nc int, once bool) error {
	child, err := startChild(s.childArgs()...)
	if err != nil {
		return err
	}
	var clients []*client
	for i := 0; i < nc; i++ {
		c := newClient(i, s.o.decode)
		if err := c.connect(child.addr); err != nil {
			return err
		}
		clients = append(clients, c)
	}
	if _, err := child.do(command{Op: "gc"}); err != nil {
		return err
	}
	if _, err := child.do(command{Op: "resetpeak"}); err != nil {
		return err
	}
	pre, err := child.stats(false)
	if err != nil {
		return err
	}
	s.startProfile(child, fmt.Sprintf("cold-%dcl", nc))
	ctx, cancel := context.WithTimeoutCause(context.Background(), readyTimeout, fmt.Errorf("not ready after %s", readyTimeout))
	start, st, err := child.startReady(ctx, 5*time.Millisecond)
	cancel()
	if err != nil {
		return err
	}
	last, err := waitAll(clients, wanted(st), 10*time.Minute)
	if err != nil {
		return err
	}
	time.Sleep(20 * time.Millisecond)
	s.stopProfile(child)
	post, err := child.stats(true)
	if err != nil {
		return err
	}
	r := s.newRow("cold sync", nc)
	r.Wall = time.Duration(last - start.T0)
	r.WallFloor = s.floors.total(s.floors.Marshal) + s.floors.total(s.floors.Decode)
	r.WallNote = "sync"
	r.fromStats(pre, post, s.floors)
	r.Extra = fmt.Sprintf("adapter ready after %s", time.Duration(post.ReadyAt-start.T0).Round(time.Millisecond))
	r.PeakRSS, r.RSS = post.MaxRSS, post.RSS
	r.Resources = s.floors.count()
	rep.add(s.label(), r)
	if once {
		for _, c := range clients {
			c.close()
		}
		child.quit()
		return nil
	}
	s.child, s.clients = child, clients
	s.learn(post)
	if s.o.profile != "" {
		name := strings.NewReplacer(" ", "-").Replace(s.label()) + "-heap-after-sync.pprof"
		_, _ = child.do(command{Op: "heap", Path: filepath.Join(s.o.profile, name)})
	}
	_, _ = child.do(command{Op: "take"})
	return nil
}

func (s *set) learn(st *stats) {
	for _, v := range st.Versions {
		if _, ok := s.seqOf[v]; !ok {
			s.seqOf[v] = 0
		}
	}
}

func (s *set) newRow(name string, nc int) *row {
	return &row{Scenario: name, Clients: nc, Mode: s.mode, Kind: s.kind, Quiet: s.o.quiet}
}

// join connects clients until there are nc, all at once, and measures the
// time until they have the full state.
func (s *set) join(rep *report, nc int) error {
	pre, err := s.child.stats(false)
	if err != nil {
		return err
	}
	t0 := time.Now()
	var fresh []*client
	for i := len(s.clients); i < nc; i++ {
		c := newClient(i, s.o.decode)
		if err := c.connect(s.child.addr); err != nil {
			return err
		}
		fresh = append(fresh, c)
	}
	last, err := waitAll(fresh, wanted(pre), 5*time.Minute)
	if err != nil {
		return err
	}
	time.Sleep(20 * time.Millisecond)
	post, err := s.child.stats(false)
	if err != nil {
		return err
	}
	r := s.newRow(fmt.Sprintf("join +%d", len(fresh)), nc)
	r.Wall = time.Duration(last - t0.UnixNano())
	r.WallFloor = s.floors.total(s.floors.Build) + s.floors.total(s.floors.Decode)
	r.WallNote = "sync"
	r.fromStats(pre, post, s.floors)
	rep.add(s.label(), r)
	s.clients = append(s.clients, fresh...)
	return nil
}

// changes runs reps rounds of count endpoint moves (interval apart, 0: a
// burst) and waits after each round until every client ACKed the result.
func (s *set) changes(rep *report, name string, count, reps int, interval time.Duration) error {
	r := s.newRow(name, len(s.clients))
	if count == 1 {
		s.startProfile(s.child, fmt.Sprintf("one-change-%dcl", len(s.clients)))
		defer s.stopProfile(s.child)
	}
	var lat []float64
	var first *stats
	var post *stats
	for i := 0; i < reps; i++ {
		if _, err := s.child.do(command{Op: "take"}); err != nil {
			return err
		}
		_, _ = s.child.do(command{Op: "resetpeak"})
		pre, err := s.child.stats(false)
		if err != nil {
			return err
		}
		if first == nil {
			first = pre
		}
		s.seed++
		inj, err := s.child.do(command{Op: "change", Count: count, Interval: interval, Seed: s.seed})
		if err != nil {
			return err
		}
		pub, err := s.child.do(command{Op: "waitpublished"})
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		st := pub.Stats
		last, err := waitAll(s.clients, wanted(st), 5*time.Minute)
		if err != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
		if post, err = s.child.stats(false); err != nil {
			return err
		}
		tk, err := s.child.do(command{Op: "take"})
		if err != nil {
			return err
		}
		for _, a := range tk.Applies {
			s.seqOf[a.Version] = a.Seq
		}
		lat = append(lat, s.latencies(tk.Changes)...)
		r.Wall += time.Duration(last - inj.T0)
		r.PeakRSS = max(r.PeakRSS, post.MaxRSS)
		r.Changes += count
	}
	r.Wall /= time.Duration(reps)
	r.WallNote = "round"
	fl := s.floors
	r.WallFloor = time.Duration(interval*time.Duration(max(count-1, 0))) + s.o.quiet + fl.Build[s.kind] + fl.Decode[s.kind]
	r.fromStats(first, post, fl)
	r.RSS = post.RSS
	r.Resources = fl.count()
	r.setLatency(lat)
	rep.add(s.label(), r)
	return nil
}

// latencies returns, for every change and client, the time from the change
// entering the adapter to the client's ACK of the first version carrying it,
// in milliseconds.
func (s *set) latencies(changes []changeRec) []float64 {
	var out []float64
	for _, ch := range changes {
		if ch.Seq == 0 {
			continue
		}
		t := typeURLOf(served.Kind(ch.Kind))
		for _, c := range s.clients {
			for _, a := range c.acksSince(t, ch.T) {
				if seq, ok := s.seqOf[a.Version]; ok && seq >= ch.Seq {
					out = append(out, float64(a.T-ch.T)/1e6)
					break
				}
			}
		}
	}
	return out
}

// reconnect drops every client at once and reconnects them all.
func (s *set) reconnect(rep *report) error {
	_, _ = s.child.do(command{Op: "resetpeak"})
	pre, err := s.child.stats(false)
	if err != nil {
		return err
	}
	for _, c := range s.clients {
		c.close()
	}
	t0 := time.Now()
	errs := make(chan error, len(s.clients))
	for _, c := range s.clients {
		go func() { errs <- c.connect(s.child.addr) }()
	}
	for range s.clients {
		if err := <-errs; err != nil {
			return err
		}
	}
	last, err := waitAll(s.clients, wanted(pre), 5*time.Minute)
	if err != nil {
		return err
	}
	time.Sleep(20 * time.Millisecond)
	post, err := s.child.stats(false)
	if err != nil {
		return err
	}
	r := s.newRow("reconnect all", len(s.clients))
	r.Wall = time.Duration(last - t0.UnixNano())
	r.WallFloor = s.floors.total(s.floors.Build) + s.floors.total(s.floors.Decode)
	r.WallNote = "sync"
	r.fromStats(pre, post, s.floors)
	r.PeakRSS, r.RSS, r.Resources = post.MaxRSS, post.RSS, s.floors.count()
	rep.add(s.label(), r)
	return nil
}

// noop re-sends the whole registry unchanged, as a restarted source does.
func (s *set) noop(rep *report) error {
	_, _ = s.child.do(command{Op: "resetpeak"})
	pre, err := s.child.stats(false)
	if err != nil {
		return err
	}
	s.startProfile(s.child, fmt.Sprintf("noop-%dcl", len(s.clients)))
	inj, err := s.child.do(command{Op: "noop"})
	s.stopProfile(s.child)
	if err != nil {
		return err
	}
	time.Sleep(s.o.max + 200*time.Millisecond)
	post, err := s.child.stats(false)
	if err != nil {
		return err
	}
	r := s.newRow("no-op refresh", len(s.clients))
	r.Wall = time.Duration(inj.T1 - inj.T0)
	r.WallFloor = s.floors.total(s.floors.Marshal)
	r.WallNote = "flush"
	r.fromStats(pre, post, s.floors)
	r.CPUFloor = s.floors.total(s.floors.Marshal)
	r.Changes = s.n
	r.PeakRSS, r.RSS, r.Resources = post.MaxRSS, post.RSS, s.floors.count()
	r.Noop = true
	rep.add(s.label(), r)
	return nil
}

func (s *set) startProfile(child *childProc, what string) {
	if s.o.profile == "" {
		return
	}
	_ = os.MkdirAll(s.o.profile, 0o755)
	name := strings.NewReplacer(" ", "-").Replace(s.label()) + "-" + what + ".pprof"
	if _, err := child.do(command{Op: "profile", Path: filepath.Join(s.o.profile, name)}); err != nil {
		progress("profile: %v", err)
	}
}

func (s *set) stopProfile(child *childProc) {
	if s.o.profile != "" {
		_, _ = child.do(command{Op: "profile"})
	}
}
