package consul

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// The adapter restarts a source by cancelling its Run and calling Run again
// on the same Source: after a batch beyond the source's caps (too many
// services), and after a recovered panic. TestConsulRunsAgain plays that
// supervisor against a real agent: a first run, a second run whose first
// batch breaches a cap of 2 services (so the supervisor stops it at once),
// and a third run after the offending registration is gone, which must sync
// and then follow a change. Throughout, the goroutines and the heap stay
// near what one run needs. (A run used to close the epochs every later run
// shared: each request of a restarted source was cancelled as it started and
// re-issued at once, growing to 46k goroutines and 491 MB in 3 s, and the
// source never synced again.)
//
// Not parallel: it counts the process's goroutines.
func TestConsulRunsAgain(t *testing.T) {
	a := sharedAgent(t)
	c := a.client(t, "")
	cleanPrefix(t, c, "rst-")
	for _, name := range []string{"rst-a", "rst-b"} {
		catalogNode(t, c, "rst-n1", "10.0.9.1", nil, &api.AgentService{ID: name + "-1", Service: name, Port: 80}, "")
	}
	src, err := New(testConfig(a.addr, "rst-"), sources.Options{Name: "rst", Logger: zaptest.NewLogger(t)})
	must(t, err)

	runtime.GC()
	baseGoroutines := runtime.NumGoroutine()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseHeap := ms.HeapAlloc
	// One run of this source is a catalog watch, two or three health
	// watches and their connections: a few dozen goroutines, well under a
	// megabyte. The bounds leave a wide margin and still catch the loop in
	// its first second.
	const maxExtraGoroutines = 300
	const maxExtraHeap = 64 << 20

	// wait returns the next batch on out, checking the bounds meanwhile.
	wait := func(what string, out <-chan []model.Group) []model.Group {
		t.Helper()
		deadline := time.After(eventTimeout)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case b := <-out:
				return b
			case <-tick.C:
				checkBounds(t, what, baseGoroutines+maxExtraGoroutines, baseHeap+maxExtraHeap)
			case <-deadline:
				checkBounds(t, what, baseGoroutines+maxExtraGoroutines, baseHeap+maxExtraHeap)
				t.Fatalf("%s: no batch within %s", what, eventTimeout)
			}
		}
	}
	// run starts a run and returns its first batch; stop cancels the run and
	// waits for Run to return.
	run := func(what string) (first []model.Group, out <-chan []model.Group, stop func()) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		ch := make(chan []model.Group)
		done := make(chan error, 1)
		go func() { done <- src.Run(ctx, ch) }()
		var once sync.Once
		stop = func() {
			once.Do(func() {
				cancel()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("%s: Run: %v", what, err)
					}
				case <-time.After(10 * time.Second):
					t.Errorf("%s: Run did not return after cancel", what)
				}
			})
		}
		t.Cleanup(stop)
		return wait(what, ch), ch, stop
	}
	services := func(batch []model.Group) int {
		n := 0
		for _, g := range batch {
			n += len(g.Services)
		}
		return n
	}

	first, _, stop := run("first run")
	if services(first) != 2 {
		t.Fatalf("first run: %d services, want 2", services(first))
	}
	stop()

	// A third service breaches a cap of 2: the supervisor stops the run as
	// soon as it sees the batch.
	catalogNode(t, c, "rst-n1", "10.0.9.1", nil, &api.AgentService{ID: "rst-c-1", Service: "rst-c", Port: 80}, "")
	first, _, stop = run("run over the cap")
	if services(first) != 3 {
		t.Fatalf("run over the cap: %d services, want 3", services(first))
	}
	stop()

	_, err = c.Catalog().Deregister(&api.CatalogDeregistration{Node: "rst-n1", ServiceID: "rst-c-1"}, nil)
	must(t, err)
	first, out, stop := run("run after the breach")
	if services(first) != 2 {
		t.Fatalf("run after the breach: %d services, want 2", services(first))
	}
	// The restarted run follows changes too, not only its first read.
	catalogNode(t, c, "rst-n2", "10.0.9.2", nil, &api.AgentService{ID: "rst-a-2", Service: "rst-a", Port: 80}, "")
	v := view{}
	v.apply(first)
	for ids(v.svc("rst-a")) != "rst-n1/rst-a-1,rst-n2/rst-a-2" {
		v.apply(wait("the change after the breach", out))
	}
	stop()
	if got := testutil.ToFloat64(src.metrics.watches); got != 0 {
		t.Errorf("watched services after the runs = %v, want 0 (each run counts its own watches)", got)
	}
	if got := src.watched.Load(); got != 0 {
		t.Errorf("watch count after the runs = %d, want 0", got)
	}
}

// checkBounds fails the test at once when the process holds more goroutines
// or heap than allowed: a source in a tight loop grows both by the second.
func checkBounds(t *testing.T, what string, maxGoroutines int, maxHeap uint64) {
	t.Helper()
	if n := runtime.NumGoroutine(); n > maxGoroutines {
		t.Fatalf("%s: %d goroutines, more than %d", what, n, maxGoroutines)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.HeapAlloc > maxHeap {
		t.Fatalf("%s: heap %d MB, more than %d MB", what, ms.HeapAlloc>>20, maxHeap>>20)
	}
}
