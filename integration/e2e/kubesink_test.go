package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	networking "istio.io/api/networking/v1alpha3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/registry-adapter/registry-adapter/served"
	"github.com/registry-adapter/registry-adapter/sinks/kube"
)

// These tests drive the Kubernetes sink in-process against the harness's real
// kube-apiserver with Istio's CRDs; kubesink_e2e_test.go runs the whole
// adapter with istiod.

// seUpsert is the served entry of one ServiceEntry, as the adapter hands it
// to every publisher.
func seUpsert(t *testing.T, ns, name, host string, port uint32, team string) served.Entry {
	t.Helper()
	spec := &networking.ServiceEntry{
		Hosts: []string{host}, Location: networking.ServiceEntry_MESH_INTERNAL, Resolution: networking.ServiceEntry_STATIC,
		Ports:            []*networking.ServicePort{{Number: port, Protocol: "HTTP", Name: fmt.Sprintf("http-%d", port)}},
		WorkloadSelector: &networking.WorkloadSelector{Labels: map[string]string{"registry-adapter.io/service": name}},
	}
	e, err := served.New(served.KindServiceEntry, ns, name,
		map[string]string{served.LabelManagedBy: served.ManagedByValue, "registry-adapter.io/service": name, "team": team},
		map[string]string{"registry-adapter.io/source": "test"}, spec, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)).Entry()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type runningSink struct {
	*kube.Sink
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *runningSink) stop() {
	s.cancel()
	<-s.done
}

func startSink(t *testing.T, ns string, cfg kube.Config) *runningSink {
	t.Helper()
	return startSinkVia(t, ns, cfg, kubeREST(t))
}

// startSinkVia starts a sink talking to the API server through rc.
func startSinkVia(t *testing.T, ns string, cfg kube.Config, rc *rest.Config) *runningSink {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := kube.New(cfg, ns, rc, reg, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runningSink{Sink: s, reg: reg, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(rs.done)
		if err := s.Run(ctx); err != nil {
			t.Errorf("sink: %v", err)
		}
	}()
	t.Cleanup(rs.stop)
	return rs
}

func noLeaderElection() kube.Config {
	off := false
	return kube.Config{Owner: "e2e", Workers: 1, LeaderElection: kube.LeaderElectionConfig{Enabled: &off}}
}

func getSE(t *testing.T, ns, name string) (*unstructured.Unstructured, error) {
	t.Helper()
	return kubeDynamic(t).Resource(seGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
}

// TestKubeSinkOwnership: a hand-made ServiceEntry with the name the adapter
// wants is reported as a conflict and never modified or deleted; the sink's
// own objects are written with server-side apply under its field manager;
// after a restart one list suffices and nothing unchanged is rewritten;
// nothing is pruned until MarkReady.
func TestKubeSinkOwnership(t *testing.T) {
	installIstioCRDs(t)
	const ns = "kube-sink-own"
	kubeNamespace(t, ns)
	c := kubeDynamic(t)
	ctx := context.Background()

	// The hand-made object, as `kubectl create` would write it.
	hand := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
		"metadata": map[string]any{"name": "web", "namespace": ns, "labels": map[string]any{"team": "hand"}},
		"spec":     map[string]any{"hosts": []any{"web.example.com"}, "ports": []any{map[string]any{"number": int64(80), "name": "http", "protocol": "HTTP"}}, "resolution": "DNS"},
	}}
	hand, err := c.Resource(seGVR).Namespace(ns).Create(ctx, hand, metav1.CreateOptions{FieldManager: "kubectl-create"})
	if err != nil {
		t.Fatal(err)
	}
	handRV := hand.GetResourceVersion()

	s := startSink(t, ns, noLeaderElection())
	s.Apply(served.KindServiceEntry, []served.Entry{
		seUpsert(t, ns, "web", "web.service.consul", 8080, "a"),
		seUpsert(t, ns, "api", "api.service.consul", 9090, "a"),
	}, nil)
	s.MarkReady()
	eventually(t, 30*time.Second, "api written, web refused", func() error {
		if gathered(t, s.reg, "registry_adapter_kube_conflicts_total") < 1 {
			return fmt.Errorf("no conflict counted yet")
		}
		_, err := getSE(t, ns, "api")
		return err
	})
	api, _ := getSE(t, ns, "api")
	if got := api.GetLabels()[kube.LabelOwner]; got != "e2e" {
		t.Errorf("owner label %q", got)
	}
	// Created (a create is refused if anything holds the name), then every
	// change is a server-side apply. Fields the apply sets to the values the
	// create wrote stay co-owned by the create's entry: both entries are the
	// adapter's field manager, and nothing else manages the object.
	if got := managers(api); !slices.Equal(got, []string{"registry-adapter/Update"}) {
		t.Errorf("managers of api after its creation: %v, want registry-adapter/Update", got)
	}
	s.Apply(served.KindServiceEntry, []served.Entry{seUpsert(t, ns, "api", "api.service.consul", 9090, "b")}, nil)
	eventually(t, 30*time.Second, "api changed by an apply", func() error {
		api, err := getSE(t, ns, "api")
		if err != nil {
			return err
		}
		if got := managers(api); api.GetLabels()["team"] != "b" || !slices.Equal(got, []string{"registry-adapter/Apply", "registry-adapter/Update"}) {
			return fmt.Errorf("labels %v, managers %v, want team b and registry-adapter's Apply and Update", api.GetLabels(), got)
		}
		return nil
	})
	web, err := getSE(t, ns, "web")
	if err != nil {
		t.Fatal(err)
	}
	if web.GetResourceVersion() != handRV || web.GetLabels()[served.LabelManagedBy] != "" {
		t.Fatalf("the hand-made ServiceEntry was modified: rv %s -> %s, labels %v, managers %v",
			handRV, web.GetResourceVersion(), web.GetLabels(), managers(web))
	}
	if gathered(t, s.reg, "registry_adapter_kube_foreign_objects") != 1 {
		t.Errorf("foreign objects gauge %v, want 1", gathered(t, s.reg, "registry_adapter_kube_foreign_objects"))
	}
	// The adapter stops wanting web: the hand-made object stays.
	s.Apply(served.KindServiceEntry, []served.Entry{seUpsert(t, ns, "sentinel-1", "s1.service.consul", 1, "a")}, []string{ns + "/web"})
	eventually(t, 30*time.Second, "sentinel-1 written", func() error { _, err := getSE(t, ns, "sentinel-1"); return err })
	if web, err := getSE(t, ns, "web"); err != nil || web.GetResourceVersion() != handRV {
		t.Fatalf("the hand-made ServiceEntry was touched after the adapter dropped the name: %v", err)
	}
	applies := gathered(t, s.reg, "registry_adapter_kube_applies_total")
	s.stop()

	// A restart: one list, nothing unchanged rewritten, and nothing pruned
	// before every source synced (here: before MarkReady), although api is
	// not (yet) desired.
	s2 := startSink(t, ns, noLeaderElection())
	s2.Apply(served.KindServiceEntry, []served.Entry{
		seUpsert(t, ns, "sentinel-1", "s1.service.consul", 1, "a"),
		seUpsert(t, ns, "sentinel-2", "s2.service.consul", 2, "a"),
	}, nil)
	eventually(t, 30*time.Second, "sentinel-2 written", func() error { _, err := getSE(t, ns, "sentinel-2"); return err })
	if got := gathered(t, s2.reg, "registry_adapter_kube_applies_total"); got != 1 {
		t.Errorf("after a restart the sink applied %v objects, want 1 (sentinel-2 only; sentinel-1 is unchanged)", got)
	}
	if _, err := getSE(t, ns, "api"); err != nil {
		t.Fatalf("api was pruned before MarkReady: %v", err)
	}
	s2.MarkReady()
	eventually(t, 30*time.Second, "api pruned once ready", func() error {
		if _, err := getSE(t, ns, "api"); !apierrors.IsNotFound(err) {
			return fmt.Errorf("api still there (%v)", err)
		}
		return nil
	})
	if web, err := getSE(t, ns, "web"); err != nil || web.GetResourceVersion() != handRV {
		t.Fatalf("the hand-made ServiceEntry was touched by the prune: %v", err)
	}
	if got := gathered(t, s2.reg, "registry_adapter_kube_deletes_total"); got != 1 {
		t.Errorf("deletes %v, want 1", got)
	}
	t.Logf("first run applied %v objects; the restart listed once and applied 1, pruned 1", applies)
}

// TestKubeSinkDrift: an owned object deleted or edited by hand is put back
// at the next resync.
func TestKubeSinkDrift(t *testing.T) {
	installIstioCRDs(t)
	const ns = "kube-sink-drift"
	kubeNamespace(t, ns)
	cfg := noLeaderElection()
	cfg.Resync = time.Second
	s := startSink(t, ns, cfg)
	s.Apply(served.KindServiceEntry, []served.Entry{seUpsert(t, ns, "db", "db.service.consul", 5432, "a")}, nil)
	s.MarkReady()
	eventually(t, 30*time.Second, "db written", func() error { _, err := getSE(t, ns, "db"); return err })
	c := kubeDynamic(t).Resource(seGVR).Namespace(ns)
	db, _ := getSE(t, ns, "db")
	_ = unstructured.SetNestedField(db.Object, "DNS", "spec", "resolution")
	if _, err := c.Update(context.Background(), db, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "db repaired", func() error {
		db, err := getSE(t, ns, "db")
		if err != nil {
			return err
		}
		if r, _, _ := unstructured.NestedString(db.Object, "spec", "resolution"); r != "STATIC" {
			return fmt.Errorf("resolution %s", r)
		}
		return nil
	})
	if err := c.Delete(context.Background(), "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "db recreated", func() error { _, err := getSE(t, ns, "db"); return err })
}

// TestKubeSinkLeaderElection: two replicas with one Lease; exactly one
// writes; when it stops, the other takes over and writes what changed.
func TestKubeSinkLeaderElection(t *testing.T) {
	installIstioCRDs(t)
	const ns = "kube-sink-le"
	kubeNamespace(t, ns)
	cfg := kube.Config{Owner: "e2e-le", LeaderElection: kube.LeaderElectionConfig{
		LeaseName: "e2e-le", LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond}}
	a := startSink(t, ns, cfg)
	b := startSink(t, ns, cfg)
	// Both replicas get the same diff, as two adapters watching one registry.
	both := func(kind served.Kind, ups []served.Entry, dels []string) {
		a.Apply(kind, ups, dels)
		b.Apply(kind, ups, dels)
	}
	var bothLed atomic.Bool
	stopWatch := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if a.Leading() && b.Leading() {
				bothLed.Store(true)
			}
		}
	}()
	defer func() {
		close(stopWatch)
		wg.Wait()
	}()
	both(served.KindServiceEntry, []served.Entry{seUpsert(t, ns, "one", "one.service.consul", 80, "a")}, nil)
	a.MarkReady()
	b.MarkReady()
	eventually(t, 30*time.Second, "one written", func() error { _, err := getSE(t, ns, "one"); return err })
	leader, follower := a, b
	if b.Leading() {
		leader, follower = b, a
	}
	if got := gathered(t, follower.reg, "registry_adapter_kube_applies_total"); got != 0 {
		t.Fatalf("the follower applied %v objects", got)
	}
	if gathered(t, leader.reg, "registry_adapter_kube_leader") != 1 || gathered(t, follower.reg, "registry_adapter_kube_leader") != 0 {
		t.Fatal("leader gauges disagree with Leading()")
	}
	// The leader shuts down: it releases the lease after its last write, and
	// the follower takes over and writes the change both received since.
	leader.stop()
	both(served.KindServiceEntry, []served.Entry{seUpsert(t, ns, "two", "two.service.consul", 81, "a")}, []string{ns + "/one"})
	eventually(t, 30*time.Second, "the follower took over and wrote two, deleted one", func() error {
		if _, err := getSE(t, ns, "two"); err != nil {
			return err
		}
		if _, err := getSE(t, ns, "one"); !apierrors.IsNotFound(err) {
			return fmt.Errorf("one still there (%v)", err)
		}
		return nil
	})
	if !follower.Leading() {
		t.Error("the follower wrote but does not say it leads")
	}
	if bothLed.Load() {
		t.Error("both replicas led at the same time")
	}
}
