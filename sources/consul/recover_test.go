package consul

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/sources"
)

// sourceErrors is registry_adapter_source_errors_total{kind} of the harness.
func (h *harness) sourceErrors(kind string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "registry_adapter_source_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// A deliberate panic in the mapping of one answer (a bug that some
// registration reaches): it is recovered, counted and logged with its stack;
// the service keeps what it had, every other service flows, and a panic on
// a service's very first answer does not hold the source's first state.
func TestConsulMappingPanicRecovered(t *testing.T) {
	t.Parallel()
	a := sharedAgent(t)
	c := a.client(t, "")
	cleanPrefix(t, c, "pan-")
	reg := func(node, addr, id, name string) {
		catalogNode(t, c, node, addr, nil, &api.AgentService{ID: id, Service: name, Port: 80}, "")
	}
	reg("pan-n1", "10.0.8.1", "a1", "pan-a")
	reg("pan-n1", "10.0.8.1", "b1", "pan-b")
	reg("pan-n1", "10.0.8.1", "boom", "pan-c") // panics from the first answer on

	h := runSourceWith(t, testConfig(a.addr, "pan-"), func(s *Source) {
		s.mapper.fault = func(name string, entries []*api.ServiceEntry) {
			if slices.ContainsFunc(entries, func(e *api.ServiceEntry) bool { return e.Service != nil && e.Service.ID == "boom" }) {
				var m map[string]int
				m[name]++ // a nil map write: the kind of bug a review found
			}
		}
	})
	h.next("initial state, without the service whose mapping panics")
	if len(h.state) != 2 || ids(h.state.svc("pan-a")) != "pan-n1/a1" || ids(h.state.svc("pan-b")) != "pan-n1/b1" {
		t.Fatalf("initial state %s", h.state)
	}
	st := h.waitStatus("stale with the panic", func(s sources.Status) bool { return s.Stale })
	if !strings.Contains(st.LastError, `panic in mapping Consul service "pan-c"`) {
		t.Errorf("status error %q does not name the panic and the service", st.LastError)
	}
	if n := h.sourceErrors("panic"); n < 1 {
		t.Errorf("errors_total{kind=panic} = %v", n)
	}
	e := h.waitLog("recovered a panic mapping a Consul answer")
	if stack, _ := e.ContextMap()["stack"].(string); !strings.Contains(stack, "mapService") {
		t.Errorf("the log carries no stack through mapService: %v", e.ContextMap())
	}

	// pan-b's answer now panics: it keeps its instance.
	reg("pan-n2", "10.0.8.2", "boom", "pan-b")
	// Every other service flows meanwhile.
	reg("pan-n2", "10.0.8.2", "a2", "pan-a")
	h.waitFor("pan-a's second instance", func(v view) bool { return ids(v.svc("pan-a")) == "pan-n1/a1,pan-n2/a2" })
	if ids(h.state.svc("pan-b")) != "pan-n1/b1" {
		t.Errorf("pan-b lost what it had: %s", h.state)
	}

	// Without the registration the mapping works again.
	for _, svc := range []string{"pan-b", "pan-c"} {
		node := map[string]string{"pan-b": "pan-n2", "pan-c": "pan-n1"}[svc]
		_, err := c.Catalog().Deregister(&api.CatalogDeregistration{Node: node, ServiceID: "boom"}, nil)
		must(t, err)
	}
	reg("pan-n1", "10.0.8.1", "c1", "pan-c")
	h.waitFor("pan-c served", func(v view) bool { return ids(v.svc("pan-c")) == "pan-n1/c1" })
	h.waitStatus("no longer stale", func(s sources.Status) bool { return !s.Stale })
}

// A panic on any goroutine of a run (not only the mapping: the catalog
// watch, the checks feed, the login) ends the run with the panic as its
// error, so that the adapter restarts the source: the process goes on.
func TestConsulGoroutinePanicEndsTheRun(t *testing.T) {
	src, err := New(Config{Address: "127.0.0.1:1"}, sources.Options{Name: "c", Logger: zap.NewNop()})
	must(t, err)
	var wg sync.WaitGroup
	l := &loop{s: src, wg: &wg, crashed: make(chan error, 1), events: make(chan event)}
	l.spawn("the catalog watch", func() {
		var w *watch
		_ = w.scope // a nil dereference
	})
	done := make(chan error, 1)
	go func() { done <- l.run(context.Background()) }()
	select {
	case err := <-done:
		var pe *sources.PanicError
		if !errors.As(err, &pe) || pe.What != "the catalog watch" || len(pe.Stack) == 0 {
			t.Errorf("run returned %v, want the recovered panic", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the run went on after a goroutine panicked")
	}
	wg.Wait()
}
