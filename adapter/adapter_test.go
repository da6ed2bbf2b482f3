package adapter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
	"github.com/registry-adapter/registry-adapter/server"
	"github.com/registry-adapter/registry-adapter/sources"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func svc(name string, addrs ...string) model.Service {
	s := model.Service{Name: name, Host: name + ".example.com", Ports: []model.Port{{Number: 80, Protocol: model.ProtocolHTTP}}}
	for _, a := range addrs {
		s.Instances = append(s.Instances, model.Instance{ID: a, Address: a})
	}
	return s
}

func group(services ...model.Service) model.Group {
	return model.Group{Scope: services[0].Name, Services: services}
}

// opts are the default options in workloadentry mode, where every instance
// is a resource of its own, so that a test sees what changed instance by
// instance. The default mode, inline, has tests of its own where it matters.
func opts() convert.Options {
	o := convert.Options{Mode: convert.ModeWorkloadEntry}
	o.SetDefaults()
	return o
}

func TestStoreDirtyHostsAndOrder(t *testing.T) {
	st := NewStore([]string{"dc1", "dc2"})
	st.Update("dc2", []model.Group{group(svc("web", "10.0.0.2"))})
	st.Update("dc1", []model.Group{group(svc("web", "10.0.0.1")), group(svc("db", "10.0.1.1"))})
	if got := st.TakeDirty(); !slices.Equal(got, []string{"db.example.com", "web.example.com"}) {
		t.Errorf("dirty %v", got)
	}
	if got := st.TakeDirty(); len(got) != 0 {
		t.Errorf("dirty after take: %v", got)
	}
	// Configuration order, not arrival order, decides.
	c := st.Contributions("web.example.com")
	if len(c) != 2 || c[0].Source != "dc1" || c[1].Source != "dc2" {
		t.Errorf("contributions %+v", c)
	}
	// A scope that moves its service to another host dirties both hosts.
	moved := svc("db", "10.0.1.1")
	moved.Host = "db2.example.com"
	st.Update("dc1", []model.Group{{Scope: "db", Services: []model.Service{moved}}})
	if got := st.TakeDirty(); !slices.Equal(got, []string{"db.example.com", "db2.example.com"}) {
		t.Errorf("dirty after move %v", got)
	}
	// An empty group removes the scope.
	st.Update("dc1", []model.Group{{Scope: "db"}})
	if got := st.Contributions("db2.example.com"); len(got) != 0 {
		t.Errorf("removed scope still contributes: %+v", got)
	}
	// Replace removes scopes the full set does not name.
	st.Replace("dc1", []model.Group{group(svc("api", "10.0.2.1"))})
	st.TakeDirty()
	if got := st.Hosts(); !slices.Equal(got, []string{"api.example.com", "web.example.com"}) {
		t.Errorf("hosts after replace %v", got)
	}
	if got := st.Contributions("web.example.com"); len(got) != 1 || got[0].Source != "dc2" {
		t.Errorf("web after dc1 replace: %+v", got)
	}
	// Updates from an unknown source are ignored rather than panicking.
	st.Update("nope", []model.Group{group(svc("x", "1.1.1.1"))})
}

func TestDiff(t *testing.T) {
	p := NewPublished()
	conv := func(addrs ...string) []*served.Resource {
		r, _ := convert.Service("web.example.com", []convert.Contribution{{Source: "dc1", Service: svc("web", addrs...)}}, opts())
		return r
	}
	count := func(m map[served.Kind]Change) (ups, dels int) {
		for _, c := range m {
			ups += len(c.Upserts)
			dels += len(c.Deletes)
		}
		return
	}
	first := conv("10.0.0.1", "10.0.0.2")
	d := p.Diff("web.example.com", first)
	if u, del := count(d); u != 3 || del != 0 {
		t.Errorf("first diff: %d upserts %d deletes", u, del)
	}
	p.Commit("web.example.com", first)
	if d := p.Diff("web.example.com", conv("10.0.0.1", "10.0.0.2")); len(d) != 0 {
		t.Errorf("unchanged input produced a change: %+v", d)
	}
	d = p.Diff("web.example.com", conv("10.0.0.1", "10.0.0.3"))
	if _, ok := d[served.KindServiceEntry]; ok {
		t.Error("an endpoint change touched the ServiceEntry")
	}
	we := d[served.KindWorkloadEntry]
	if len(we.Upserts) != 1 || len(we.Deletes) != 1 || !strings.Contains(we.Deletes[0], "10.0.0.2") {
		t.Errorf("endpoint swap: %d upserts, deletes %v", len(we.Upserts), we.Deletes)
	}
	d = p.Diff("web.example.com", nil)
	if u, del := count(d); u != 0 || del != 3 {
		t.Errorf("host gone: %d upserts %d deletes", u, del)
	}
	p.Commit("db.example.com", conv("10.0.1.1"))
	if se, we := p.Count(served.KindServiceEntry), p.Count(served.KindWorkloadEntry); se != 2 || we != 3 {
		t.Errorf("two hosts of 2 and 1 instances published: counts %d ServiceEntries, %d WorkloadEntries; want 2 and 3", se, we)
	}
	p.Commit("web.example.com", conv("10.0.0.1"))
	p.Commit("db.example.com", nil)
	if se, we := p.Count(served.KindServiceEntry), p.Count(served.KindWorkloadEntry); se != 1 || we != 1 {
		t.Errorf("after shrinking one host and removing the other: counts %d, %d; want 1 and 1", se, we)
	}
}

// In workloadentry mode the adapter warns once when the WorkloadEntries it
// serves pass the size from which istiod's selector matching was measured to
// be slow; not below it, not twice, and never in inline mode.
func TestWarnSelectorCost(t *testing.T) {
	publish := func(p *Published, n int) {
		for i := range n {
			p.commit(fmt.Sprintf("h%d", i), []publishedResource{{kind: served.KindWorkloadEntry, key: fmt.Sprintf("ns/w%d", i)}})
		}
	}
	for _, tc := range []struct {
		name  string
		mode  convert.Mode
		n     int
		warns int
	}{
		{"at the threshold", convert.ModeWorkloadEntry, workloadEntriesWarnAt, 0},
		{"past it", convert.ModeWorkloadEntry, workloadEntriesWarnAt + 1, 1},
		{"inline", convert.ModeInline, workloadEntriesWarnAt + 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zap.WarnLevel)
			o := opts()
			o.Mode = tc.mode
			a := &Adapter{log: zap.New(core), opts: o, published: NewPublished()}
			publish(a.published, tc.n)
			a.warnSelectorCost()
			a.warnSelectorCost()
			got := logs.FilterMessageSnippet("output.mode: inline").All()
			if len(got) != tc.warns {
				t.Fatalf("%d WorkloadEntries in %s mode: %d warnings, want %d", tc.n, tc.mode, len(got), tc.warns)
			}
			if tc.warns > 0 && got[0].ContextMap()["workloadEntries"] != int64(tc.n) {
				t.Errorf("warning fields %v, want workloadEntries %d", got[0].ContextMap(), tc.n)
			}
		})
	}
}

func TestDebouncer(t *testing.T) {
	t0 := time.Unix(1000, 0)
	d := debouncer{cfg: DebounceConfig{Quiet: 100 * time.Millisecond, Max: time.Second}}
	if d.open() {
		t.Fatal("open before any change")
	}
	steps := []struct {
		at, due time.Duration
	}{
		{0, 100 * time.Millisecond},                     // quiet period from the first change
		{50 * time.Millisecond, 150 * time.Millisecond}, // each change pushes it back
		{950 * time.Millisecond, time.Second},           // but never past first+max
		{2 * time.Second, time.Second},                  // already overdue: close now
	}
	for _, s := range steps {
		if got := d.change(t0.Add(s.at)); !got.Equal(t0.Add(s.due)) {
			t.Errorf("change at +%s: due +%s, want +%s", s.at, got.Sub(t0), s.due)
		}
	}
	d.close()
	if got := d.change(t0.Add(5 * time.Second)); !got.Equal(t0.Add(5*time.Second + 100*time.Millisecond)) {
		t.Errorf("a new window starts from its own first change, got +%s", got.Sub(t0))
	}
	for _, bad := range []DebounceConfig{{Quiet: time.Second, Max: time.Millisecond}, {Quiet: -1, Max: 1}} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// chanSource is a test source driven by the test through a channel.
type chanSource struct {
	batches chan []model.Group
	fail    chan error
}

func newChanSource() *chanSource {
	return &chanSource{batches: make(chan []model.Group), fail: make(chan error)}
}

func (s *chanSource) Run(ctx context.Context, out chan<- []model.Group) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-s.fail:
			return err
		case b := <-s.batches:
			select {
			case out <- b:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// recordingPublisher is a server.Cache that also records every Apply.
type recordingPublisher struct {
	*server.Cache
	mu      sync.Mutex
	applies []string
	signal  chan struct{}
}

func newRecorder() *recordingPublisher {
	return &recordingPublisher{Cache: server.NewCache(nil), signal: make(chan struct{}, 100)}
}

func (p *recordingPublisher) Apply(kind served.Kind, ups []served.Entry, dels []string) bool {
	changed := p.Cache.Apply(kind, ups, dels)
	p.mu.Lock()
	p.applies = append(p.applies, fmt.Sprintf("%s +%d -%d", kind, len(ups), len(dels)))
	p.mu.Unlock()
	p.signal <- struct{}{}
	return changed
}

func (p *recordingPublisher) waitApply(t *testing.T) {
	t.Helper()
	select {
	case <-p.signal:
	case <-time.After(10 * time.Second):
		t.Fatal("no publication within 10s")
	}
}

func (p *recordingPublisher) names(kind served.Kind) []string {
	var out []string
	for _, e := range p.Entries(kind) {
		out = append(out, e.Name)
	}
	return out
}

func startAdapter(t *testing.T, deb DebounceConfig, srcs ...*chanSource) (*Adapter, *recordingPublisher, *prometheus.Registry) {
	t.Helper()
	return startAdapterGuarded(t, deb, GuardConfig{}, srcs...)
}

func startAdapterGuarded(t *testing.T, deb DebounceConfig, guard GuardConfig, srcs ...*chanSource) (*Adapter, *recordingPublisher, *prometheus.Registry) {
	t.Helper()
	return startAdapterLogged(t, deb, guard, zaptest.NewLogger(t), srcs...)
}

func startAdapterLogged(t *testing.T, deb DebounceConfig, guard GuardConfig, log *zap.Logger, srcs ...*chanSource) (*Adapter, *recordingPublisher, *prometheus.Registry) {
	t.Helper()
	guard.SetDefaults()
	var named []NamedSource
	for i, s := range srcs {
		name := fmt.Sprintf("src%d", i)
		named = append(named, NamedSource{Name: name, Source: s, Reporter: sources.NewReporter(name, nil)})
	}
	pub := newRecorder()
	reg := prometheus.NewRegistry()
	a := New(named, Settings{Output: opts(), Debounce: deb, Guard: guard}, pub, NewMetrics(reg), log)
	a.restartBackoff = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return a, pub, reg
}

func TestAdapterReadyOnlyAfterEverySource(t *testing.T) {
	s1, s2 := newChanSource(), newChanSource()
	a, pub, _ := startAdapter(t, DebounceConfig{Quiet: time.Millisecond, Max: time.Millisecond}, s1, s2)
	s1.batches <- []model.Group{group(svc("web", "10.0.0.1"))}
	if a.Ready() || pub.Ready() {
		t.Fatal("ready with one of two sources synced")
	}
	s2.batches <- []model.Group{group(svc("db", "10.0.1.1"))}
	pub.waitApply(t)
	pub.waitApply(t)
	waitUntil(t, "ready", a.Ready)
	if !pub.Ready() {
		t.Error("cache not marked ready")
	}
	if got := pub.names(served.KindServiceEntry); !slices.Equal(got, []string{convert.DefaultNamespace + "/db.example.com", convert.DefaultNamespace + "/web.example.com"}) {
		t.Errorf("served %v", got)
	}
}

func TestAdapterDebouncesBursts(t *testing.T) {
	src := newChanSource()
	// A quiet period longer than the test and a Max far longer than the
	// burst takes even on a loaded machine: one window, closed by Max.
	a, pub, _ := startAdapter(t, DebounceConfig{Quiet: time.Hour, Max: 2 * time.Second}, src)
	src.batches <- []model.Group{group(svc("web", "10.0.0.1"))}
	pub.waitApply(t)
	pub.waitApply(t)
	waitUntil(t, "ready", a.Ready)
	pub.mu.Lock()
	pub.applies = nil
	pub.mu.Unlock()

	for i := 2; i <= 101; i++ {
		addrs := []string{"10.0.0.1"}
		for j := 2; j <= i; j++ {
			addrs = append(addrs, fmt.Sprintf("10.0.%d.%d", j/200, j%200))
		}
		src.batches <- []model.Group{group(svc("web", addrs...))}
	}
	pub.waitApply(t)
	pub.mu.Lock()
	applies := slices.Clone(pub.applies)
	pub.mu.Unlock()
	// 100 changes, one publication: WorkloadEntries only (the ServiceEntry
	// did not change), the 100 new instances in one Apply.
	if !slices.Equal(applies, []string{"WorkloadEntry +100 -0"}) {
		t.Errorf("applies %v, want one WorkloadEntry publication of 100", applies)
	}
	// The window counter moves once the flush that applied the burst ends.
	waitUntil(t, "second window counted", func() bool { return testutil.ToFloat64(a.metrics.windows) >= 2 })
	if got := testutil.ToFloat64(a.metrics.windows); got != 2 {
		t.Errorf("debounce windows %v, want 2 (initial sync + burst)", got)
	}
	if got := len(pub.names(served.KindWorkloadEntry)); got != 101 {
		t.Errorf("%d WorkloadEntries served, want 101", got)
	}
}

func TestAdapterNoOpRefreshPublishesNothing(t *testing.T) {
	src := newChanSource()
	a, pub, _ := startAdapter(t, DebounceConfig{Quiet: time.Millisecond, Max: 5 * time.Millisecond}, src)
	batch := []model.Group{group(svc("web", "10.0.0.1", "10.0.0.2"))}
	src.batches <- batch
	pub.waitApply(t)
	pub.waitApply(t)
	waitUntil(t, "ready", a.Ready)
	seVersion := pub.Version(served.KindServiceEntry)

	// The same state again: the window closes with nothing to publish.
	src.batches <- batch
	waitUntil(t, "second window", func() bool { return testutil.ToFloat64(a.metrics.windows) == 2 })
	// Then a real change is the next (and only) publication.
	src.batches <- []model.Group{group(svc("web", "10.0.0.1"))}
	pub.waitApply(t)
	pub.mu.Lock()
	defer pub.mu.Unlock()
	// Initial sync (ServiceEntry, WorkloadEntries), then only the deletion.
	want := []string{"ServiceEntry +1 -0", "WorkloadEntry +2 -0", "WorkloadEntry +0 -1"}
	if !slices.Equal(pub.applies, want) {
		t.Errorf("applies %v, want %v: the no-op refresh must publish nothing", pub.applies, want)
	}
	if pub.Version(served.KindServiceEntry) != seVersion {
		t.Error("ServiceEntry version changed on an endpoint-only change")
	}
}

func TestAdapterKeepsStateWhenSourceCrashes(t *testing.T) {
	src := newChanSource()
	a, pub, _ := startAdapter(t, DebounceConfig{Quiet: time.Millisecond, Max: 5 * time.Millisecond}, src)
	src.batches <- []model.Group{group(svc("web", "10.0.0.1")), group(svc("db", "10.0.1.1"))}
	pub.waitApply(t)
	pub.waitApply(t)
	waitUntil(t, "ready", a.Ready)

	src.fail <- errors.New("watch exploded")
	waitUntil(t, "failure reported", func() bool { return a.sources[0].Reporter.Status().Stale })
	if got := len(pub.names(served.KindServiceEntry)); got != 2 {
		t.Fatalf("%d ServiceEntries after the crash, want the last state (2)", got)
	}
	// The restarted source's first batch is its complete state: db is gone.
	src.batches <- []model.Group{group(svc("web", "10.0.0.1"))}
	pub.waitApply(t)
	waitUntil(t, "db deleted", func() bool { return len(pub.names(served.KindServiceEntry)) == 1 })
}

func TestAdapterCountsRejections(t *testing.T) {
	src := newChanSource()
	a, pub, _ := startAdapter(t, DebounceConfig{Quiet: time.Millisecond, Max: 5 * time.Millisecond}, src)
	bad := svc("web", "10.0.0.1", "10.0.0.1") // duplicate instance id
	src.batches <- []model.Group{group(bad), group(svc("db", "10.0.1.1"))}
	pub.waitApply(t)
	if got := testutil.ToFloat64(a.metrics.rejected.WithLabelValues("src0", convert.CodeDuplicate)); got != 1 {
		t.Errorf("rejected counter %v, want 1", got)
	}
	waitUntil(t, "both services served", func() bool { return len(pub.names(served.KindServiceEntry)) == 2 })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestStoreRepeatedScopeIsNotDirty(t *testing.T) {
	st := NewStore([]string{"dc1"})
	st.Update("dc1", []model.Group{group(svc("web", "10.0.0.1", "10.0.0.2")), group(svc("db", "10.0.1.1"))})
	st.TakeDirty()
	if st.instances["dc1"] != 3 {
		t.Errorf("instance count %d, want 3", st.instances["dc1"])
	}
	// The same content again (a fresh copy, as a refresh brings) is no change.
	st.Update("dc1", []model.Group{group(svc("web", "10.0.0.1", "10.0.0.2"))})
	if got := st.TakeDirty(); len(got) != 0 {
		t.Errorf("an identical refresh dirtied %v", got)
	}
	st.Replace("dc1", []model.Group{group(svc("web", "10.0.0.1"))})
	if got := st.TakeDirty(); !slices.Equal(got, []string{"db.example.com", "web.example.com"}) || st.instances["dc1"] != 1 {
		t.Errorf("after replace: dirty %v, instances %d", got, st.instances["dc1"])
	}
}

// stuckSource ignores its context: it returns only when release is closed,
// as a client call without a context would.
type stuckSource struct{ release chan struct{} }

func (s stuckSource) Run(_ context.Context, out chan<- []model.Group) error {
	out <- []model.Group{group(svc("web", "10.0.0.1"))}
	<-s.release
	return nil
}

// TestAdapterShutdownDoesNotWaitForStuckSource: Run returns once the stop
// timeout is up even though a source never does.
func TestAdapterShutdownDoesNotWaitForStuckSource(t *testing.T) {
	src := stuckSource{release: make(chan struct{})}
	// The source goroutine is released once the test is over, for goleak.
	t.Cleanup(func() { close(src.release) })
	named := []NamedSource{{Name: "stuck", Source: src, Reporter: sources.NewReporter("stuck", nil)}}
	a := New(named, Settings{Output: opts(), Debounce: DebounceConfig{Quiet: time.Millisecond, Max: time.Millisecond}},
		newRecorder(), nil, zaptest.NewLogger(t))
	a.stopTimeout = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitUntil(t, "ready", a.Ready)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run still waits for a source that ignores its context")
	}
}

// panickingSource sends its state, then panics on its first run only.
type panickingSource struct{ runs *atomic.Int32 }

func (s panickingSource) Run(ctx context.Context, out chan<- []model.Group) error {
	select {
	case out <- []model.Group{group(svc("web", "10.0.0.1")), group(svc("db", "10.0.1.1"))}:
	case <-ctx.Done():
		return nil
	}
	if s.runs.Add(1) == 1 {
		var m map[string]int
		m["boom"]++ // a nil map write, as a bad registry answer could cause
	}
	<-ctx.Done()
	return nil
}

// TestAdapterRecoversPanickingSource: issue 15 item 4. A source that panics
// is recovered, reported as crashed and restarted; the adapter keeps its state.
func TestAdapterRecoversPanickingSource(t *testing.T) {
	var runs atomic.Int32
	named := []NamedSource{{Name: "p", Source: panickingSource{&runs}, Reporter: sources.NewReporter("p", nil)}}
	pub := newRecorder()
	a := New(named, Settings{Output: opts(), Debounce: DebounceConfig{Quiet: time.Millisecond, Max: time.Millisecond}}, pub, nil, zaptest.NewLogger(t))
	a.restartBackoff = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitUntil(t, "restarted after the panic", func() bool { return runs.Load() >= 2 })
	// The state sent before the panic is published by the flush that follows.
	waitUntil(t, "served", a.Ready)
	if st := named[0].Reporter.Status(); !strings.Contains(st.LastError, "panic") {
		t.Errorf("status after the panic: %+v", st)
	}
	if got := len(pub.names(served.KindServiceEntry)); got != 2 {
		t.Errorf("%d ServiceEntries after the panic, want 2", got)
	}
}
