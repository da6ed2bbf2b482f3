package e2e

// The control of the fault tests' watcher against the real istiod: losses
// the adapter serves for a short window reach a sidecar, and the watcher
// reports them. fidelity.TestWatchDetectsBriefLoss proves the replay logic
// on a fake istiod; this proves that istiod forwards the loss at all.

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/fidelity"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
	"github.com/registry-adapter/registry-adapter/server"
)

// servedSet is the adapter's own xDS server and cache, in the test's
// process, so that the test decides exactly what is served and when.
type servedSet struct {
	cache *server.Cache
	addr  string
	opts  convert.Options
	names map[served.Kind][]string // what the last publish served
}

func startServedSet(t *testing.T) *servedSet {
	t.Helper()
	cfg := server.Config{Listen: "127.0.0.1:0"}
	cfg.SetDefaults()
	cache := server.NewCache(nil)
	srv, err := server.New(cfg, cache, nil, nopLogger())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	s := &servedSet{cache: cache, addr: lis.Addr().String(), names: map[served.Kind][]string{}}
	s.opts.SetDefaults() // the default mode, the one the fault tests run in
	return s
}

// publish serves exactly services, converted as the adapter converts them,
// in one change per kind.
func (s *servedSet) publish(t *testing.T, services ...model.Service) {
	t.Helper()
	upserts := map[served.Kind][]served.Entry{}
	names := map[served.Kind][]string{}
	for _, svc := range services {
		res, rejected := convert.Service(svc.Host, []convert.Contribution{{Source: "dc1", Service: svc}}, s.opts)
		if len(rejected) > 0 {
			t.Fatalf("%s: %v", svc.Host, rejected)
		}
		for _, r := range res {
			e, err := r.Entry()
			if err != nil {
				t.Fatal(err)
			}
			upserts[r.Kind] = append(upserts[r.Kind], e)
			names[r.Kind] = append(names[r.Kind], e.Name)
		}
	}
	for _, k := range served.Kinds {
		var deletes []string
		for _, n := range s.names[k] {
			if !slices.Contains(names[k], n) {
				deletes = append(deletes, n)
			}
		}
		s.cache.Apply(k, upserts[k], deletes)
	}
	s.names = names
	s.cache.MarkReady()
}

// TestWatcherSeesBriefLossThroughIstiod: the adapter serves a set without
// one instance for a short window, and a sidecar's stream on a real istiod
// (EDS debounce off, as in the fault tests) reports the loss. The window is
// asserted where the test controls it: it lasts until istiod's registry has
// dropped the instance, and at least a second. Shorter windows are tried
// down to none at all (removed and restored at once), and what the watcher
// saw of each is logged: the smallest loss the suite can see. A whole
// cluster leaving the sidecar's CDS (the service gone for a window) must
// count as a loss too.
func TestWatcherSeesBriefLossThroughIstiod(t *testing.T) {
	t.Parallel()
	set := startServedSet(t)
	inst := func(i int) model.Instance {
		return model.Instance{ID: fmt.Sprintf("web-%d", i), Address: fmt.Sprintf("10.71.0.%d", i), Health: model.HealthPassing}
	}
	web := func(instances ...model.Instance) model.Service {
		return model.Service{Name: "web", Host: "web.watch.example.com", Ports: []model.Port{{Number: 8080, Protocol: model.ProtocolHTTP}},
			Instances: instances}
	}
	other := model.Service{Name: "db", Host: "db.watch.example.com", Ports: []model.Port{{Number: 5432, Protocol: model.ProtocolTCP}},
		Instances: []model.Instance{{ID: "db-1", Address: "10.71.1.1"}}}
	full := web(inst(1), inst(2), inst(3))
	set.publish(t, full, other)

	p := startFaultIstiod(t, meshFor(set.addr))
	p.waitReady(t)
	const cluster, lost = "outbound|8080||web.watch.example.com", "10.71.0.2:8080"
	kept := map[string][]string{cluster: {lost}}
	px, err := fidelity.DialProxy(fidelity.ProxyConfig{Address: p.grpcAddr, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	holdsAll := func() error {
		if err := px.Err(); err != nil {
			t.Fatalf("the sidecar stream broke: %v", err)
		}
		if got := px.View().Clusters[cluster].Endpoints; !slices.Equal(got, []string{"10.71.0.1:8080", lost, "10.71.0.3:8080"}) {
			return fmt.Errorf("%s: %v", cluster, got)
		}
		return nil
	}
	eventually(t, 60*time.Second, "the sidecar holds every instance", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := px.Wait(ctx); err != nil {
			return err
		}
		return holdsAll()
	})
	inRegistry := func(want bool) func() error {
		return func() error {
			got, err := istiodEndpoints(p.httpAddr)
			if err != nil {
				return err
			}
			if has := got["web.watch.example.com 10.71.0.2/http-8080"]; has != want {
				return fmt.Errorf("istiod's registry has 10.71.0.2: %v", has)
			}
			return nil
		}
	}

	// window serves without for d (the fault's duration; with control, also
	// until istiod's registry shows the loss), restores the full set, waits
	// until the sidecar holds every instance again and reports what the
	// watcher saw.
	window := func(what string, d time.Duration, control bool, without ...model.Service) fidelity.WatchReport {
		t.Helper()
		w := px.Watch()
		start := time.Now()
		set.publish(t, without...)
		if control {
			eventually(t, 30*time.Second, what+": istiod's registry lost the instance", inRegistry(false))
		}
		if rest := d - time.Since(start); rest > 0 {
			time.Sleep(rest) // the fault's duration, not a wait for anything
		}
		served := time.Since(start)
		set.publish(t, full, other)
		eventually(t, 30*time.Second, what+": istiod's registry has the instance again", inRegistry(true))
		eventually(t, 30*time.Second, what+": the sidecar holds every instance again", holdsAll)
		r := w.Report(kept)
		seen := "not seen"
		if len(r.Losses) > 0 {
			seen = "seen: " + r.Losses[0].String()
		}
		t.Logf("%s: served without it for %s; %d assignments; %s", what, served.Round(time.Millisecond), r.Assignments, seen)
		return r
	}

	r := window("control, one instance", time.Second, true, web(inst(1), inst(3)), other)
	if len(r.Losses) != 1 || r.Losses[0].For <= 0 || r.Losses[0].ClusterRemoved {
		t.Errorf("the watcher reports %v for one instance served away for a window, want the one loss, ended", r.Losses)
	}
	// The whole service away: istiod empties the cluster's assignment and
	// drops the cluster from CDS. The watcher must report the loss, and the
	// sidecar's stream must have recorded the removal (what a watcher that
	// read only assignments would miss: fidelity.TestWatchCountsClusterRemoval
	// proves the removal alone counts).
	_, before := px.Events(0)
	r = window("control, the whole cluster", time.Second, true, other)
	if len(r.Losses) != 1 || r.Losses[0].For <= 0 {
		t.Errorf("the watcher reports %v for the cluster gone for a window, want the one loss, ended", r.Losses)
	}
	if evs, _ := px.Events(before); !slices.ContainsFunc(evs, func(e fidelity.EDSEvent) bool { return e.Cluster == cluster && e.Removed }) {
		t.Errorf("the sidecar's stream recorded no removal of %s from CDS while the service was away: %+v", cluster, evs)
	}
	// The smallest loss the suite can see: measured, not asserted (it is
	// istiod's processing time, which a loaded machine stretches).
	for _, d := range []time.Duration{300 * time.Millisecond, 100 * time.Millisecond, 30 * time.Millisecond, 10 * time.Millisecond, 0} {
		window(fmt.Sprintf("window %s", d), d, false, web(inst(1), inst(3)), other)
	}
}
