package adapter

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
	"github.com/registry-adapter/registry-adapter/sources"
)

func labelled(s model.Service, labels map[string]string) model.Service {
	for i := range s.Instances {
		s.Instances[i].Labels = model.LabelsFromMap(labels)
	}
	return s
}

func manyLabels(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprint("k", i)] = "v"
	}
	return m
}

// instanceIDs lists "scope/host/id" of every instance of a batch.
func instanceIDs(groups []model.Group) []string {
	var out []string
	for _, g := range groups {
		for _, s := range g.Services {
			out = append(out, g.Scope+"/"+s.Host+"/")
			for _, i := range s.Instances {
				out = append(out, g.Scope+"/"+s.Host+"/"+i.ID)
			}
		}
	}
	return out
}

func withPorts(s model.Service, n int) model.Service {
	s.Ports = nil
	for i := range n {
		s.Ports = append(s.Ports, model.Port{Number: uint32(8000 + i), Protocol: model.ProtocolTCP})
	}
	return s
}

// TestSourceLimits: a cap on one item leaves that item out, by name, and
// the rest of the batch flows; a cap on the whole source refuses the batch.
func TestSourceLimits(t *testing.T) {
	small := SourceLimits{Services: 2, Instances: 3, LabelsPerInstance: 2, LabelValueBytes: 8, PortsPerService: 2}
	type batch struct {
		groups []model.Group
		full   bool
	}
	for _, c := range []struct {
		name    string
		limits  SourceLimits
		batches []batch
		// refused is the index of the batch refused (-1: none); want is in its error.
		refused int
		want    string
		// left are in the reasons of the last batch's items left out, in
		// order; kept is what of the last batch is admitted (instanceIDs).
		left []string
		kept []string
	}{
		{name: "within every cap", limits: small, batches: []batch{{[]model.Group{group(svc("web", "10.0.0.1", "10.0.0.2")), group(svc("db", "10.0.1.1"))}, true}},
			refused: -1, kept: []string{"web/web.example.com/", "web/web.example.com/10.0.0.1", "web/web.example.com/10.0.0.2", "db/db.example.com/", "db/db.example.com/10.0.1.1"}},
		{name: "services in one batch", limits: small, batches: []batch{{[]model.Group{group(svc("a", "10.0.0.1")), group(svc("b")), group(svc("c"))}, true}},
			refused: 0, want: `source "s": 3 services, more than limits.services 2`},
		{name: "services over batches", limits: small, batches: []batch{
			{[]model.Group{group(svc("a", "10.0.0.1")), group(svc("b"))}, true},
			{[]model.Group{group(svc("c"))}, false},
		}, refused: 1, want: `source "s": 3 services, more than limits.services 2`},
		// A scope that is replaced or removed frees what it held.
		{name: "a scope replaced", limits: small, batches: []batch{
			{[]model.Group{group(svc("a", "10.0.0.1")), group(svc("b"))}, true},
			{[]model.Group{{Scope: "b"}, group(svc("c", "10.0.0.3", "10.0.0.4"))}, false},
			{[]model.Group{group(svc("c", "10.0.0.3"))}, false},
		}, refused: -1, kept: []string{"c/c.example.com/", "c/c.example.com/10.0.0.3"}},
		// A full batch replaces everything: what the scopes held before does
		// not count.
		{name: "a full batch starts over", limits: small, batches: []batch{
			{[]model.Group{group(svc("a", "10.0.0.1")), group(svc("b"))}, true},
			{[]model.Group{group(svc("c", "10.0.0.1", "10.0.0.2", "10.0.0.3"))}, true},
		}, refused: -1, kept: []string{"c/c.example.com/", "c/c.example.com/10.0.0.1", "c/c.example.com/10.0.0.2", "c/c.example.com/10.0.0.3"}},
		{name: "instances", limits: small, batches: []batch{
			{[]model.Group{group(svc("a", "10.0.0.1", "10.0.0.2"))}, true},
			{[]model.Group{group(svc("b", "10.0.1.1", "10.0.1.2"))}, false},
		}, refused: 1, want: `source "s": 4 instances, more than limits.instances 3`},
		// Per-item caps: the item is left out by name, its neighbours flow.
		{name: "labels per instance", limits: small, batches: []batch{{[]model.Group{
			group(func() model.Service {
				s := svc("a", "10.0.0.1", "10.0.0.2")
				s.Instances[1].Labels = model.LabelsFromMap(manyLabels(3))
				return s
			}()),
			group(svc("b", "10.0.1.1")),
		}, true}}, refused: -1,
			left: []string{`source "s": service a.example.com instance 10.0.0.2 has 3 labels, more than limits.labelsPerInstance 2; left out`},
			kept: []string{"a/a.example.com/", "a/a.example.com/10.0.0.1", "b/b.example.com/", "b/b.example.com/10.0.1.1"}},
		{name: "label value", limits: small, batches: []batch{{[]model.Group{group(labelled(svc("a", "10.0.0.1"), map[string]string{"team": "123456789"}))}, true}},
			refused: -1, left: []string{`source "s": service a.example.com instance 10.0.0.1 label "team" has a value of 9 bytes, more than limits.labelValueBytes 8`},
			kept: []string{"a/a.example.com/"}},
		{name: "label key", limits: small, batches: []batch{{[]model.Group{group(labelled(svc("a", "10.0.0.1"), map[string]string{"abcdefghi": "v"}))}, true}},
			refused: -1, left: []string{`a label key of 9 bytes`}, kept: []string{"a/a.example.com/"}},
		{name: "service label value", limits: small, batches: []batch{{[]model.Group{group(func() model.Service {
			s := svc("a", "10.0.0.1")
			s.Labels = model.LabelsFromMap(map[string]string{"team": strings.Repeat("x", 9)})
			return s
		}()), group(svc("b", "10.0.1.1"))}, true}}, refused: -1,
			left: []string{`source "s": service a.example.com label "team" has a value of 9 bytes`},
			kept: []string{"b/b.example.com/", "b/b.example.com/10.0.1.1"}},
		{name: "ports per service", limits: small, batches: []batch{{[]model.Group{
			group(withPorts(svc("a", "10.0.0.1"), 3)), group(withPorts(svc("b", "10.0.1.1"), 2)),
		}, true}}, refused: -1,
			left: []string{`source "s": service a.example.com has 3 ports, more than limits.portsPerService 2; left out`},
			kept: []string{"b/b.example.com/", "b/b.example.com/10.0.1.1"}},
		// What is left out does not count toward the totals: a hostile
		// instance cannot use the source's share.
		{name: "left out is not counted", limits: small, batches: []batch{
			{[]model.Group{group(svc("a", "10.0.0.1", "10.0.0.2")), group(withPorts(svc("b", "10.0.1.1", "10.0.1.2"), 3))}, true},
			{[]model.Group{group(svc("c", "10.0.2.1"))}, false},
		}, refused: -1, kept: []string{"c/c.example.com/", "c/c.example.com/10.0.2.1"}},
		// The defaults take a 100k-instance source with room to spare.
		{name: "defaults", limits: SourceLimits{}, batches: []batch{{func() []model.Group {
			var gs []model.Group
			for i := range 20_000 {
				s := svc(fmt.Sprint("svc", i))
				for j := range 5 {
					s.Instances = append(s.Instances, model.Instance{ID: fmt.Sprint(j), Address: "10.0.0.1", Labels: model.LabelsFromMap(manyLabels(32))})
				}
				gs = append(gs, group(s))
			}
			return gs
		}(), true}}, refused: -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			tally := newSourceTally("s", c.limits)
			refused := -1
			var err error
			var admitted []model.Group
			var left []string
			for i, b := range c.batches {
				before := tally.total
				orig := instanceIDs(b.groups)
				admitted, left, err = tally.admit(b.groups, b.full)
				if !slices.Equal(instanceIDs(b.groups), orig) {
					t.Errorf("batch %d: admit changed the source's groups", i)
				}
				if err != nil {
					refused = i
					if tally.total != before {
						t.Errorf("a refused batch changed the tally from %+v to %+v", before, tally.total)
					}
					break
				}
			}
			if refused != c.refused || (c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want))) {
				t.Fatalf("batch %d refused with %v; want batch %d refused with %q", refused, err, c.refused, c.want)
			}
			if refused >= 0 {
				return
			}
			if len(left) != len(c.left) {
				t.Fatalf("left out %q, want %q", left, c.left)
			}
			for i := range left {
				if !strings.Contains(left[i], c.left[i]) {
					t.Errorf("left out %q, want %q", left[i], c.left[i])
				}
			}
			if c.kept != nil && !slices.Equal(instanceIDs(admitted), c.kept) {
				t.Errorf("admitted %q, want %q", instanceIDs(admitted), c.kept)
			}
		})
	}
}

func TestSourceLimitsValidate(t *testing.T) {
	if err := (SourceLimits{}).Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	err := SourceLimits{Services: -1, LabelValueBytes: -2, PortsPerService: -3}.Validate()
	if err == nil || !strings.Contains(err.Error(), "limits.services -1") || !strings.Contains(err.Error(), "limits.labelValueBytes -2") ||
		!strings.Contains(err.Error(), "limits.portsPerService -3") {
		t.Errorf("negative caps: %v", err)
	}
}

// scriptedSource sends, on its n-th run, the batches of script[n] (the last
// one for later runs), then waits.
type scriptedSource struct {
	runs   *atomic.Int32
	script [][][]model.Group
}

func (s scriptedSource) Run(ctx context.Context, out chan<- []model.Group) error {
	n := int(s.runs.Add(1)) - 1
	for _, b := range s.script[min(n, len(s.script)-1)] {
		select {
		case out <- b:
		case <-ctx.Done():
			return nil
		}
	}
	<-ctx.Done()
	return nil
}

// TestSourceOverLimitKeepsLastGoodState: issue 15 item 4. A batch beyond a
// cap is not applied; the source keeps what it had, its status names the
// source and the cap, the error is counted, and the source is restarted.
func TestSourceOverLimitKeepsLastGoodState(t *testing.T) {
	var runs atomic.Int32
	good := []model.Group{group(svc("web", "10.0.0.1")), group(svc("db", "10.0.1.1"))}
	src := scriptedSource{runs: &runs, script: [][][]model.Group{
		{good, {group(svc("api", "10.0.2.1"))}}, // the second batch is a third service
		{good},
	}}
	reg := prometheus.NewRegistry()
	rep := sources.NewReporter("dc1", sources.NewMetrics(reg))
	named := []NamedSource{{Name: "dc1", Source: src, Reporter: rep, Limits: SourceLimits{Services: 2}}}
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
	waitUntil(t, "restarted after the refused batch", func() bool { return runs.Load() >= 2 })
	waitUntil(t, "served", a.Ready)
	if st := rep.Status(); !strings.Contains(st.LastError, `source "dc1": 3 services, more than limits.services 2`) || !st.Stale {
		t.Errorf("status after the refused batch: %+v", st)
	}
	if n := testutil.ToFloat64(sourceErrors(t, reg, "dc1", "limit")); n < 1 {
		t.Errorf("limit errors counted: %v", n)
	}
	got := pub.names(served.KindServiceEntry)
	slices.Sort(got)
	if len(got) != 2 || slices.ContainsFunc(got, func(n string) bool { return strings.Contains(n, "api") }) {
		t.Errorf("ServiceEntries %v: want web and db only", got)
	}
}

// TestSourceItemOverLimitIsLeftOut: an instance with 257 labels (a Consul
// registration with 257 k=v tags) is left out by name, logged and counted,
// and the rest of the source flows: the source is neither refused nor
// restarted, and a later change of another service still arrives.
func TestSourceItemOverLimitIsLeftOut(t *testing.T) {
	var runs atomic.Int32
	hostile := svc("web", "10.0.0.1", "10.0.0.2")
	hostile.Instances[1].Labels = model.LabelsFromMap(manyLabels(257))
	src := scriptedSource{runs: &runs, script: [][][]model.Group{{
		{group(hostile), group(svc("db", "10.0.1.1"))},
		{group(svc("api", "10.0.2.1"))},
	}}}
	reg := prometheus.NewRegistry()
	rep := sources.NewReporter("dc1", sources.NewMetrics(reg))
	named := []NamedSource{{Name: "dc1", Source: src, Reporter: rep}}
	pub := newRecorder()
	core, logs := observer.New(zap.WarnLevel)
	a := New(named, Settings{Output: opts(), Debounce: DebounceConfig{Quiet: time.Millisecond, Max: time.Millisecond}}, pub,
		NewMetrics(reg), zap.New(core))
	a.restartBackoff = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitUntil(t, "api served", func() bool {
		return slices.ContainsFunc(pub.names(served.KindServiceEntry), func(n string) bool { return strings.HasSuffix(n, "/api.example.com") })
	})
	wes := pub.names(served.KindWorkloadEntry)
	if len(wes) != 3 || slices.ContainsFunc(wes, func(n string) bool { return strings.Contains(n, "10.0.0.2") }) {
		t.Errorf("WorkloadEntries %v: want web's 10.0.0.1, db's and api's, not web's 10.0.0.2", wes)
	}
	if runs.Load() != 1 {
		t.Errorf("the source ran %d times: an instance over a per-item limit must not restart it", runs.Load())
	}
	if st := rep.Status(); st.Stale || st.LastError != "" {
		t.Errorf("status %+v: want not stale, no error", st)
	}
	if n := testutil.ToFloat64(a.metrics.rejected.WithLabelValues("dc1", "limit")); n != 1 {
		t.Errorf("rejected_items_total{reason=limit} = %v, want 1", n)
	}
	const want = `source "dc1": service web.example.com instance 10.0.0.2 has 257 labels, more than limits.labelsPerInstance 256; left out`
	if es := logs.FilterField(zap.String("reason", want)).All(); len(es) != 1 {
		t.Errorf("want one warning naming the instance (%q); log: %v", want, logs.All())
	}
}

func sourceErrors(t *testing.T, reg *prometheus.Registry, source, kind string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "registry_adapter_source_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["source"] == source && labels["kind"] == kind {
				c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
				c.Add(m.GetCounter().GetValue())
				return c
			}
		}
	}
	t.Fatalf("no registry_adapter_source_errors_total{source=%q,kind=%q}", source, kind)
	return nil
}
