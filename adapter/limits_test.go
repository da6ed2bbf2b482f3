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
	"go.uber.org/zap/zaptest"

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

func TestSourceLimits(t *testing.T) {
	small := SourceLimits{Services: 2, Instances: 3, LabelsPerInstance: 2, LabelValueBytes: 8}
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
	}{
		{"within every cap", small, []batch{{[]model.Group{group(svc("web", "10.0.0.1", "10.0.0.2")), group(svc("db", "10.0.1.1"))}, true}}, -1, ""},
		{"services in one batch", small, []batch{{[]model.Group{group(svc("a", "10.0.0.1")), group(svc("b")), group(svc("c"))}, true}}, 0, `source "s": 3 services, more than limits.services 2`},
		{"services over batches", small, []batch{
			{[]model.Group{group(svc("a", "10.0.0.1")), group(svc("b"))}, true},
			{[]model.Group{group(svc("c"))}, false},
		}, 1, `source "s": 3 services, more than limits.services 2`},
		// A scope that is replaced or removed frees what it held.
		{"a scope replaced", small, []batch{
			{[]model.Group{group(svc("a", "10.0.0.1")), group(svc("b"))}, true},
			{[]model.Group{{Scope: "b"}, group(svc("c", "10.0.0.3", "10.0.0.4"))}, false},
			{[]model.Group{group(svc("c", "10.0.0.3"))}, false},
		}, -1, ""},
		// A full batch replaces everything: what the scopes held before does
		// not count.
		{"a full batch starts over", small, []batch{
			{[]model.Group{group(svc("a", "10.0.0.1")), group(svc("b"))}, true},
			{[]model.Group{group(svc("c", "10.0.0.1", "10.0.0.2", "10.0.0.3"))}, true},
		}, -1, ""},
		{"instances", small, []batch{
			{[]model.Group{group(svc("a", "10.0.0.1", "10.0.0.2"))}, true},
			{[]model.Group{group(svc("b", "10.0.1.1", "10.0.1.2"))}, false},
		}, 1, `source "s": 4 instances, more than limits.instances 3`},
		{"labels per instance", small, []batch{{[]model.Group{group(labelled(svc("a", "10.0.0.1"), manyLabels(3)))}, true}}, 0,
			`source "s": service a.example.com instance 10.0.0.1 has 3 labels, more than limits.labelsPerInstance 2`},
		{"label value", small, []batch{{[]model.Group{group(labelled(svc("a", "10.0.0.1"), map[string]string{"team": "123456789"}))}, true}}, 0,
			`source "s": service a.example.com instance 10.0.0.1 label "team" has a value of 9 bytes, more than limits.labelValueBytes 8`},
		{"label key", small, []batch{{[]model.Group{group(labelled(svc("a", "10.0.0.1"), map[string]string{"abcdefghi": "v"}))}, true}}, 0,
			`a label key of 9 bytes`},
		{"service label value", small, []batch{{[]model.Group{group(func() model.Service {
			s := svc("a")
			s.Labels = model.LabelsFromMap(map[string]string{"team": strings.Repeat("x", 9)})
			return s
		}())}, true}}, 0, `source "s": service a.example.com label "team" has a value of 9 bytes`},
		// The defaults take a 100k-instance source with room to spare.
		{"defaults", SourceLimits{}, []batch{{func() []model.Group {
			var gs []model.Group
			for i := range 20_000 {
				s := svc(fmt.Sprint("svc", i))
				for j := range 5 {
					s.Instances = append(s.Instances, model.Instance{ID: fmt.Sprint(j), Address: "10.0.0.1", Labels: model.LabelsFromMap(manyLabels(32))})
				}
				gs = append(gs, group(s))
			}
			return gs
		}(), true}}, -1, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			tally := newSourceTally("s", c.limits)
			refused := -1
			var err error
			for i, b := range c.batches {
				before := tally.total
				if err = tally.admit(b.groups, b.full); err != nil {
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
		})
	}
}

func TestSourceLimitsValidate(t *testing.T) {
	if err := (SourceLimits{}).Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	err := SourceLimits{Services: -1, LabelValueBytes: -2}.Validate()
	if err == nil || !strings.Contains(err.Error(), "limits.services -1") || !strings.Contains(err.Error(), "limits.labelValueBytes -2") {
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
