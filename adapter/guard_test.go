package adapter

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
)

func TestGuardJudge(t *testing.T) {
	g := GuardConfig{MaxDeletionShare: 0.5, MinInstances: 10, HoldFor: time.Minute}
	t0 := time.Unix(1000, 0)
	held := &staged{heldSince: t0}
	fresh := &staged{}
	// shrink is a change from `before` instances that removes `removed`.
	shrink := func(removed, before int) change {
		return change{removed: removed, inWindow: removed, baseline: before, before: before, after: before - removed}
	}
	reset := func(c change) change { c.reset = true; return c }
	cases := []struct {
		name    string
		g       GuardConfig
		s       *staged
		ch      change
		now     time.Time
		allowed bool
		want    guardVerdict
	}{
		{"small share", g, fresh, shrink(5, 20), t0, false, guardApply},
		{"exactly half", g, fresh, shrink(10, 20), t0, false, guardApply},
		{"most removed", g, fresh, shrink(11, 20), t0, false, guardHold},
		{"small source, most removed", g, fresh, shrink(8, 9), t0, false, guardApply},
		{"small source, one service of two gone", g, fresh, shrink(2, 4), t0, false, guardApply},
		// Issue 15 item 6: emptying a source is held whatever its size.
		{"small source emptied", g, fresh, shrink(4, 4), t0, false, guardHold},
		{"one-instance source emptied", g, fresh, shrink(1, 1), t0, false, guardHold},
		{"small source shrinks after a reset", g, fresh, reset(shrink(2, 4)), t0, false, guardHold},
		{"a reset that removes nothing", g, fresh, reset(shrink(0, 4)), t0, false, guardApply},
		{"guard off, emptied", GuardConfig{MaxDeletionShare: 1, MinInstances: 10}, fresh, reset(shrink(4, 4)), t0, false, guardApply},
		{"minInstances 0 guards every source", GuardConfig{MaxDeletionShare: 0.5}, fresh, shrink(3, 4), t0, false, guardHold},
		{"maxDeletionShare 0 holds any removal", GuardConfig{MinInstances: 10}, fresh, shrink(1, 20), t0, false, guardHold},
		{"still held", g, held, shrink(20, 20), t0.Add(30 * time.Second), false, guardHold},
		{"persisted", g, held, shrink(20, 20), t0.Add(time.Minute), false, guardRelease},
		{"operator", g, held, shrink(20, 20), t0, true, guardRelease},
		// Partly re-populated: below the threshold now, but still held.
		{"held, partial recovery", g, held, shrink(5, 20), t0.Add(time.Second), false, guardHold},
		{"held, full recovery", g, held, shrink(0, 20), t0.Add(time.Second), false, guardApply},
	}
	for _, c := range cases {
		if got := c.g.judge(c.s, c.ch, c.now, c.allowed); got != c.want {
			t.Errorf("%s: verdict %v, want %v", c.name, got, c.want)
		}
	}
	manual := GuardConfig{MaxDeletionShare: 0.5, MinInstances: 10, Manual: true}
	if got := manual.judge(held, shrink(20, 20), t0.Add(time.Hour), false); got != guardHold {
		t.Errorf("manual guard released on its own")
	}
}

// fleet is one service with n instances 10.0.x.y.
func fleet(n int) []model.Group {
	addrs := make([]string, n)
	for i := range n {
		addrs[i] = fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)
	}
	return []model.Group{group(svc("web", addrs...))}
}

func TestGuardHoldsMassDeletionUntilAllowed(t *testing.T) {
	src := newChanSource()
	a, pub, _ := startAdapterGuarded(t, DebounceConfig{Quiet: time.Millisecond, Max: 5 * time.Millisecond},
		GuardConfig{Manual: true}, src)
	src.batches <- fleet(20)
	pub.waitApply(t)
	pub.waitApply(t)
	waitUntil(t, "ready", a.Ready)
	// The source's held series exists from its first state on, at 0 (read
	// without WithLabelValues, which would make it).
	// (ToFloat64 panics unless there is exactly one series.)
	if n := testutil.CollectAndCount(a.metrics.held); n != 1 {
		t.Errorf("%d held series before any hold, want one at 0", n)
	} else if v := testutil.ToFloat64(a.metrics.held); v != 0 {
		t.Errorf("held series at %v before any hold, want 0", v)
	}

	// 15 of 20 instances vanish in one window: held.
	src.batches <- fleet(5)
	waitUntil(t, "held", func() bool { return len(a.Held()) == 1 })
	if h := a.Held()[0]; h.Removes != 15 || h.Of != 20 || h.Source != "src0" {
		t.Errorf("held %+v", h)
	}
	if got := len(pub.names(served.KindWorkloadEntry)); got != 20 {
		t.Fatalf("%d WorkloadEntries served while the deletion is held, want 20", got)
	}
	if got := testutil.ToFloat64(a.metrics.held.WithLabelValues("src0")); got != 1 {
		t.Errorf("held gauge %v", got)
	}
	// A further change in the same direction stays held with it.
	src.batches <- fleet(4)
	waitUntil(t, "held update", func() bool { return a.Held()[0].Removes == 16 })

	if err := a.AllowDeletions(context.Background(), "nope", a.Held()[0].ID); err == nil {
		t.Error("allowing a source with nothing held succeeded")
	}
	if err := a.AllowDeletions(context.Background(), "src0", a.Held()[0].ID); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "deletion applied", func() bool { return len(pub.names(served.KindWorkloadEntry)) == 4 })
	if len(a.Held()) != 0 || testutil.ToFloat64(a.metrics.held.WithLabelValues("src0")) != 0 {
		t.Errorf("still held after the operator allowed it: %+v", a.Held())
	}
	if got := testutil.ToFloat64(a.metrics.heldTotal.WithLabelValues("src0")); got != 1 {
		t.Errorf("held counter %v, want 1", got)
	}
}

func TestGuardReleasesPersistentDeletion(t *testing.T) {
	src := newChanSource()
	a, pub, _ := startAdapterGuarded(t, DebounceConfig{Quiet: time.Millisecond, Max: 5 * time.Millisecond},
		GuardConfig{HoldFor: 200 * time.Millisecond}, src)
	src.batches <- fleet(12)
	pub.waitApply(t)
	pub.waitApply(t)
	waitUntil(t, "ready", a.Ready)
	start := time.Now()
	// The restarted-registry case: a complete state with nothing in it.
	src.fail <- fmt.Errorf("restart")
	src.batches <- nil
	waitUntil(t, "held", func() bool { return len(a.Held()) == 1 })
	waitUntil(t, "released after persisting", func() bool { return len(pub.names(served.KindServiceEntry)) == 0 })
	if held := time.Since(start); held < 200*time.Millisecond {
		t.Errorf("released after %s, before the hold time", held)
	}
}

func TestGuardIgnoresNormalChurn(t *testing.T) {
	src := newChanSource()
	a, pub, _ := startAdapterGuarded(t, DebounceConfig{Quiet: time.Millisecond, Max: 5 * time.Millisecond},
		GuardConfig{Manual: true}, src)
	src.batches <- fleet(20)
	pub.waitApply(t)
	pub.waitApply(t)
	waitUntil(t, "ready", a.Ready)
	src.batches <- fleet(12) // 8 of 20 removed: normal
	waitUntil(t, "applied", func() bool { return len(pub.names(served.KindWorkloadEntry)) == 12 })
	if len(a.Held()) != 0 {
		t.Errorf("held %+v", a.Held())
	}
}

// TestGuardPartialRecoveryStaysHeld: a held mass deletion followed by a
// partial re-population (as Consul delivers it, one service at a time) is
// not released by the smaller share; full recovery clears it.
func TestGuardPartialRecoveryStaysHeld(t *testing.T) {
	src := newChanSource()
	a, pub, _ := startAdapterGuarded(t, DebounceConfig{Quiet: time.Millisecond, Max: 5 * time.Millisecond},
		GuardConfig{Manual: true}, src)
	two := func(webN, apiN int) []model.Group {
		web, api := fleet(webN), fleet(apiN)
		api[0].Scope = "api"
		api[0].Services[0].Name, api[0].Services[0].Host = "api", "api.example.com"
		return []model.Group{web[0], api[0]}
	}
	src.batches <- two(10, 10)
	pub.waitApply(t)
	pub.waitApply(t)
	waitUntil(t, "ready", a.Ready)
	src.batches <- []model.Group{{Scope: "web"}, {Scope: "api"}} // the catalog empties
	waitUntil(t, "held", func() bool { return len(a.Held()) == 1 })
	src.batches <- []model.Group{two(10, 10)[0]} // web comes back first
	waitUntil(t, "still held with 10 removals", func() bool { return len(a.Held()) == 1 && a.Held()[0].Removes == 10 })
	if got := len(pub.names(served.KindWorkloadEntry)); got != 20 {
		t.Fatalf("%d WorkloadEntries after a partial recovery, want all 20 kept", got)
	}
	src.batches <- []model.Group{two(10, 10)[1]} // then api
	waitUntil(t, "cleared", func() bool { return len(a.Held()) == 0 })
	if got := len(pub.names(served.KindWorkloadEntry)); got != 20 {
		t.Errorf("%d WorkloadEntries after full recovery, want 20", got)
	}
}

// TestGuardAddsUpPiecemealDeletions: removals that are each under the share
// but together over it within the guard window are held.
func TestGuardAddsUpPiecemealDeletions(t *testing.T) {
	src := newChanSource()
	a, pub, _ := startAdapterGuarded(t, DebounceConfig{Quiet: time.Millisecond, Max: 5 * time.Millisecond},
		GuardConfig{Manual: true, Window: time.Hour}, src)
	src.batches <- fleet(20)
	pub.waitApply(t)
	pub.waitApply(t)
	waitUntil(t, "ready", a.Ready)
	src.batches <- fleet(14) // 6 of 20: applied
	waitUntil(t, "first slice applied", func() bool { return len(pub.names(served.KindWorkloadEntry)) == 14 })
	src.batches <- fleet(8) // 6 more: 12 of 20 in the window, held
	waitUntil(t, "second slice held", func() bool { return len(a.Held()) == 1 })
	if h := a.Held()[0]; h.Removes != 6 || h.Of != 20 {
		t.Errorf("held %+v, want 6 removals of a 20-instance baseline", h)
	}
	if got := len(pub.names(served.KindWorkloadEntry)); got != 14 {
		t.Errorf("%d WorkloadEntries while held, want 14", got)
	}
}

// TestGuardCommit drives the guard type alone, on a store, with a fake
// clock: what it stages, holds, lists, releases on time or on request, and
// what it lets through.
func TestGuardCommit(t *testing.T) {
	t0 := time.Unix(1000, 0)
	now := t0
	cfg := GuardConfig{HoldFor: time.Minute}
	cfg.SetDefaults()
	g := NewGuard(cfg, nil, zaptest.NewLogger(t))
	g.now = func() time.Time { return now }
	st := NewStore([]string{"src"})
	instances := func() int { return st.instances["src"] }

	g.Stage("src", fleet(20), true, false)
	g.Commit(st)
	if instances() != 20 || len(g.Held()) != 0 {
		t.Fatalf("first state: %d instances, held %+v", instances(), g.Held())
	}
	if err := g.Allow("src", ""); err == nil {
		t.Error("Allow with nothing held succeeded")
	}

	// 15 of 20 gone: held, listed, due a minute later.
	g.Stage("src", fleet(5), false, false)
	g.Commit(st)
	held := g.Held()
	if instances() != 20 || len(held) != 1 || held[0].Removes != 15 || held[0].Of != 20 || !held[0].ReleaseAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("after a mass deletion: %d instances, held %+v", instances(), held)
	}
	if due, ok := g.NextRelease(); !ok || !due.Equal(t0.Add(time.Minute)) {
		t.Errorf("next release %v %v", due, ok)
	}
	// Not yet persisted long enough.
	now = t0.Add(30 * time.Second)
	g.Commit(st)
	if instances() != 20 {
		t.Fatalf("released after 30s of a 1m hold: %d instances", instances())
	}
	// Persisted: applied, and the list is empty.
	now = t0.Add(time.Minute)
	g.Commit(st)
	if instances() != 5 || len(g.Held()) != 0 {
		t.Fatalf("after the hold time: %d instances, held %+v", instances(), g.Held())
	}
	if _, ok := g.NextRelease(); ok {
		t.Error("a release is due with nothing held")
	}

	// Held again, then released by an operator before its time.
	g.Stage("src", fleet(20), false, false)
	g.Commit(st)
	g.Stage("src", fleet(2), false, false)
	g.Commit(st)
	if len(g.Held()) != 1 {
		t.Fatalf("18 of 20 removed: held %+v", g.Held())
	}
	seen := g.Held()[0].ID
	// More joins the held change before the operator's release arrives: the
	// release names what the operator saw, so it no longer applies.
	g.Stage("src", fleet(1), false, false)
	g.Commit(st)
	if err := g.Allow("src", seen); err == nil {
		t.Fatal("a release named a change that has grown since; it was accepted")
	}
	if g.Held()[0].ID == seen || g.Held()[0].Removes != 19 {
		t.Fatalf("held %+v after it grew", g.Held())
	}
	// Judging again without anything new keeps the name.
	now = now.Add(time.Second)
	id := g.Held()[0].ID
	g.Commit(st)
	if g.Held()[0].ID != id {
		t.Fatal("the held change's id changed with nothing new")
	}
	if err := g.Allow("src", id); err != nil {
		t.Fatal(err)
	}
	g.Commit(st)
	if instances() != 1 || len(g.Held()) != 0 {
		t.Fatalf("after the operator's release: %d instances, held %+v", instances(), g.Held())
	}
}

// TestGuardSmallSource: issue 15 item 6, measured on main: a source of 4
// instances whose Consul was replaced by an empty agent was emptied at once,
// because sources under minInstances were not guarded. Emptying is held
// whatever the size, and so is shrinking after a registry reset; a normal
// small change (one service of two deregistered) is not.
func TestGuardSmallSource(t *testing.T) {
	two := func(web, api int) []model.Group {
		w, a := fleet(web), fleet(api)
		a[0].Scope = "api"
		a[0].Services[0].Name, a[0].Services[0].Host = "api", "api.example.com"
		for i := range a[0].Services[0].Instances {
			a[0].Services[0].Instances[i].ID = fmt.Sprintf("api-%d", i)
		}
		return []model.Group{w[0], a[0]}
	}
	start := func(t *testing.T) (*Adapter, *recordingPublisher, *chanSource) {
		src := newChanSource()
		a, pub, _ := startAdapterGuarded(t, DebounceConfig{Quiet: time.Millisecond, Max: 5 * time.Millisecond},
			GuardConfig{Manual: true}, src)
		src.batches <- two(2, 2)
		pub.waitApply(t)
		pub.waitApply(t)
		waitUntil(t, "ready", a.Ready)
		return a, pub, src
	}
	t.Run("one service deregistered is free", func(t *testing.T) {
		a, pub, src := start(t)
		src.batches <- []model.Group{{Scope: "api"}}
		waitUntil(t, "applied", func() bool { return len(pub.names(served.KindServiceEntry)) == 1 })
		if len(a.Held()) != 0 {
			t.Errorf("held %+v", a.Held())
		}
	})
	t.Run("emptied is held", func(t *testing.T) {
		a, pub, src := start(t)
		// The replaced agent's catalog: a complete state with nothing in it.
		src.fail <- fmt.Errorf("restart")
		src.batches <- nil
		waitUntil(t, "held", func() bool { return len(a.Held()) == 1 })
		if h := a.Held()[0]; h.Removes != 4 || h.Of != 4 {
			t.Errorf("held %+v", h)
		}
		if got := len(pub.names(served.KindWorkloadEntry)); got != 4 {
			t.Errorf("%d WorkloadEntries served while held, want 4", got)
		}
		if err := a.AllowDeletions(context.Background(), "src0", a.Held()[0].ID); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "released", func() bool { return len(pub.names(served.KindServiceEntry)) == 0 })
	})
	t.Run("shrinking after a registry reset is held", func(t *testing.T) {
		a, pub, src := start(t)
		a.sources[0].Reporter.RegistryReset()
		src.batches <- []model.Group{{Scope: "api"}}
		waitUntil(t, "held", func() bool { return len(a.Held()) == 1 })
		if got := len(pub.names(served.KindServiceEntry)); got != 2 {
			t.Errorf("%d ServiceEntries served while held, want 2", got)
		}
		// Re-populated as before the reset: nothing is removed any more.
		src.batches <- two(2, 2)[1:]
		waitUntil(t, "cleared", func() bool { return len(a.Held()) == 0 })
		if got := len(pub.names(served.KindWorkloadEntry)); got != 4 {
			t.Errorf("%d WorkloadEntries after recovery, want 4", got)
		}
	})
}

// TestGuardHoldsOnlyRemovals: while a mass deletion is held, what the same
// source adds or changes still reaches istiod (docs/operations.md: "Additions
// and changes still flow"): a new service, a new instance of the held
// service, an instance's new weight; the removed instances stay served until
// the release. Before, the whole staged change waited, so a held source
// froze.
func TestGuardHoldsOnlyRemovals(t *testing.T) {
	src := newChanSource()
	a, pub, _ := startAdapterGuarded(t, DebounceConfig{Quiet: time.Millisecond, Max: 5 * time.Millisecond},
		GuardConfig{Manual: true}, src)
	version := func(name string) string {
		for _, e := range pub.Entries(served.KindWorkloadEntry) {
			if strings.HasSuffix(e.Name, name) {
				return e.Version
			}
		}
		return ""
	}
	src.batches <- fleet(20)
	pub.waitApply(t)
	pub.waitApply(t)
	waitUntil(t, "ready", a.Ready)
	kept := version("10.0.0.1")
	if kept == "" {
		t.Fatalf("no WorkloadEntry for 10.0.0.1 in %v", pub.names(served.KindWorkloadEntry))
	}

	// 15 of 20 instances vanish; in the same window web-1 changes and a new
	// service registers.
	next := fleet(5)
	next[0].Services[0].Instances[0].Weight = 7
	next = append(next, group(svc("billing", "10.1.0.1")))
	src.batches <- next
	waitUntil(t, "held", func() bool { return len(a.Held()) == 1 })
	waitUntil(t, "the new service served while the removals are held", func() bool {
		return slices.Contains(pub.names(served.KindServiceEntry), convert.DefaultNamespace+"/billing.example.com")
	})
	waitUntil(t, "the changed instance served", func() bool { return version("10.0.0.1") != kept })
	if got := len(pub.names(served.KindWorkloadEntry)); got != 21 {
		t.Fatalf("%d WorkloadEntries while held, want the 20 of web (removals held) and billing's", got)
	}
	if h := a.Held()[0]; h.Removes != 15 {
		t.Errorf("held %+v, want 15 removals", h)
	}

	// Still held, an instance is added to web: it flows too, and the held
	// removals stay as they were.
	next = fleet(5)
	next[0].Services[0].Instances[0].Weight = 7
	next[0].Services[0].Instances = append(next[0].Services[0].Instances, model.Instance{ID: "10.9.9.9", Address: "10.9.9.9"})
	src.batches <- next
	waitUntil(t, "the added instance served", func() bool { return len(pub.names(served.KindWorkloadEntry)) == 22 })
	if h := a.Held(); len(h) != 1 || h[0].Removes != 15 {
		t.Fatalf("held %+v, want the same 15 removals", h)
	}

	if err := a.AllowDeletions(context.Background(), "src0", a.Held()[0].ID); err != nil {
		t.Fatal(err)
	}
	// billing was in the earlier batch of the same held change: it stays.
	waitUntil(t, "removals applied", func() bool { return len(pub.names(served.KindWorkloadEntry)) == 7 })
	if !slices.Contains(pub.names(served.KindServiceEntry), convert.DefaultNamespace+"/billing.example.com") {
		t.Errorf("billing lost at the release: %v", pub.names(served.KindServiceEntry))
	}
}
