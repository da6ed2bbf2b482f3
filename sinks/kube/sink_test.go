package kube

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
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	networking "istio.io/api/networking/v1alpha3"
	coordv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	coordfake "k8s.io/client-go/kubernetes/typed/coordination/v1/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/registry-adapter/registry-adapter/served"
)

// The write loop against client-go's fake dynamic client, with the parts of
// the API server's behaviour the sink relies on emulated (fakeAPI), and
// errors injected per verb. What only a real API server can show (its
// refusal of a UID that changed, server-side apply's field managers, errors
// over HTTP through client-go's own retries, leader election against real
// Leases) is tested against kube-apiserver in integration/e2e
// (kubesink_test.go, kubesink_faults_test.go).

const testNS = "mesh"

var seGVR = resources[served.KindServiceEntry]

// fakeAPI is the fake dynamic client plus what the sink relies on in a real
// API server: a UID for every object created, a create refused when the
// name is taken, an apply refused when its metadata.uid is not the stored
// object's, and a delete refused when its UID precondition fails. Faults
// inject errors (or a concurrent writer's change) per verb and name.
type fakeAPI struct {
	*dynamicfake.FakeDynamicClient
	uids atomic.Int64

	mu     sync.Mutex
	faults []*fault
}

// fault makes requests of one verb (create, apply, delete, get, list) fail.
type fault struct {
	verb string
	name string // the object's name; "" matches any
	err  error  // nil: the request proceeds after before
	// times is how many requests it fails; -1 is until cleared.
	times int
	// before runs when it fires, before the request is handled: another
	// writer's change landing just before the sink's.
	before func()
	hits   int
}

func newFakeAPI(t *testing.T, objs ...*unstructured.Unstructured) *fakeAPI {
	t.Helper()
	scheme := runtime.NewScheme()
	listKinds := map[schema.GroupVersionResource]string{}
	for kind, gvr := range resources {
		listKinds[gvr] = string(kind) + "List"
	}
	f := &fakeAPI{FakeDynamicClient: dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, listKinds)}
	tr := f.Tracker()
	for _, o := range objs {
		if o.GetUID() == "" {
			o.SetUID(f.newUID())
		}
		if err := tr.Create(seGVR, o, o.GetNamespace()); err != nil {
			t.Fatal(err)
		}
	}
	uidOf := func(gvr schema.GroupVersionResource, ns, name string) (types.UID, error) {
		cur, err := tr.Get(gvr, ns, name)
		if err != nil {
			return "", err
		}
		m, err := meta.Accessor(cur)
		if err != nil {
			return "", err
		}
		return m.GetUID(), nil
	}
	f.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		obj := a.(k8stesting.CreateAction).GetObject().(*unstructured.Unstructured).DeepCopy()
		obj.SetUID(f.newUID())
		if err := tr.Create(a.GetResource(), obj, a.GetNamespace()); err != nil {
			return true, nil, err
		}
		return true, obj, nil
	})
	f.PrependReactor("patch", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.PatchAction)
		if p.GetPatchType() != types.ApplyPatchType {
			return true, nil, fmt.Errorf("the sink sent a %s patch", p.GetPatchType())
		}
		var obj unstructured.Unstructured
		if err := obj.UnmarshalJSON(p.GetPatch()); err != nil {
			return true, nil, err
		}
		gr := a.GetResource().GroupResource()
		uid, err := uidOf(a.GetResource(), a.GetNamespace(), p.GetName())
		switch {
		case apierrors.IsNotFound(err) && obj.GetUID() != "":
			return true, nil, apierrors.NewConflict(gr, p.GetName(), errors.New("uid mismatch: the object does not exist"))
		case err != nil && !apierrors.IsNotFound(err):
			return true, nil, err
		case obj.GetUID() != "" && obj.GetUID() != uid:
			return true, nil, apierrors.NewConflict(gr, p.GetName(), fmt.Errorf("precondition failed: UID in precondition: %s, UID in object meta: %s", obj.GetUID(), uid))
		}
		if uid == "" {
			obj.SetUID(f.newUID())
			return true, &obj, tr.Create(a.GetResource(), &obj, a.GetNamespace())
		}
		obj.SetUID(uid)
		return true, &obj, tr.Update(a.GetResource(), &obj, a.GetNamespace())
	})
	f.PrependReactor("delete", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		d := a.(k8stesting.DeleteAction)
		if pre := d.GetDeleteOptions().Preconditions; pre != nil && pre.UID != nil {
			if uid, err := uidOf(a.GetResource(), a.GetNamespace(), d.GetName()); err == nil && uid != *pre.UID {
				return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), d.GetName(),
					fmt.Errorf("precondition failed: UID in precondition: %s, UID in object meta: %s", *pre.UID, uid))
			}
		}
		return false, nil, nil
	})
	// Last prepended, so first: faults come before everything else.
	f.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		verb, name := verbOf(a)
		f.mu.Lock()
		var hit *fault
		for _, ft := range f.faults {
			if ft.verb == verb && (ft.name == "" || ft.name == name) && (ft.times < 0 || ft.hits < ft.times) {
				ft.hits++
				hit = ft
				break
			}
		}
		f.mu.Unlock()
		if hit == nil {
			return false, nil, nil
		}
		if hit.before != nil {
			hit.before()
		}
		if hit.err == nil {
			return false, nil, nil
		}
		return true, nil, hit.err
	})
	return f
}

func (f *fakeAPI) newUID() types.UID { return types.UID(fmt.Sprintf("uid-%d", f.uids.Add(1))) }

func (f *fakeAPI) inject(ft *fault) *fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, ft)
	return ft
}

func (f *fakeAPI) clear(ft *fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = slices.DeleteFunc(f.faults, func(x *fault) bool { return x == ft })
}

func (f *fakeAPI) hits(ft *fault) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return ft.hits
}

// verbOf names an action as the sink's requests are named.
func verbOf(a k8stesting.Action) (verb, name string) {
	switch a := a.(type) {
	case k8stesting.CreateAction:
		if m, err := meta.Accessor(a.GetObject()); err == nil {
			name = m.GetName()
		}
		return "create", name
	case k8stesting.PatchAction:
		if a.GetPatchType() == types.ApplyPatchType {
			return "apply", a.GetName()
		}
		return "patch", a.GetName()
	case k8stesting.DeleteAction:
		return "delete", a.GetName()
	case k8stesting.GetAction:
		return "get", a.GetName()
	}
	return a.GetVerb(), ""
}

// requests lists the requests made of one verb and name ("" for any), in
// order.
func (f *fakeAPI) requests(verb, name string) []k8stesting.Action {
	var out []k8stesting.Action
	for _, a := range f.Actions() {
		if v, n := verbOf(a); v == verb && (name == "" || n == name) {
			out = append(out, a)
		}
	}
	return out
}

// get is the object the fake API holds, or nil.
func (f *fakeAPI) get(t *testing.T, name string) *unstructured.Unstructured {
	t.Helper()
	o, err := f.Tracker().Get(seGVR, testNS, name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return o.(*unstructured.Unstructured)
}

// seEntry is the served entry of a ServiceEntry called name, as the adapter
// hands it to every publisher; team makes different content.
func seEntry(t *testing.T, name, team string) served.Entry {
	t.Helper()
	spec := &networking.ServiceEntry{
		Hosts: []string{name + ".example"}, Location: networking.ServiceEntry_MESH_INTERNAL,
		Resolution: networking.ServiceEntry_STATIC,
		Ports:      []*networking.ServicePort{{Number: 80, Protocol: "HTTP", Name: "http"}},
	}
	labels := map[string]string{served.LabelManagedBy: served.ManagedByValue, "registry-adapter.io/service": name, "team": team}
	return entry(t, served.KindServiceEntry, testNS+"/"+name, labels, nil, spec)
}

// owned is the object the sink with owner "test" writes for e, as if an
// earlier run had written it.
func ownedObject(t *testing.T, e served.Entry, owner string) *unstructured.Unstructured {
	t.Helper()
	obj, _, err := render(served.KindServiceEntry, owner, e.Resource)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// foreignObject is a ServiceEntry someone made by hand.
func foreignObject(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
		"metadata": map[string]any{"name": name, "namespace": testNS, "labels": map[string]any{"team": "hand"}},
		"spec":     map[string]any{"hosts": []any{"hand.example"}, "resolution": "DNS"},
	}}
}

func testConfig(edit func(*Config)) Config {
	off := false
	cfg := Config{Owner: "test", Workers: 1, Resync: time.Hour, LeaderElection: LeaderElectionConfig{Enabled: &off}}
	if edit != nil {
		edit(&cfg)
	}
	cfg.SetDefaults()
	return cfg
}

func newTestSink(t *testing.T, cfg Config, api *fakeAPI, leases *coordfake.FakeCoordinationV1) *Sink {
	t.Helper()
	if err := cfg.Validate("kubernetesSink"); err != nil {
		t.Fatal(err)
	}
	var lg coordinationv1.LeasesGetter
	if leases != nil {
		lg = leases
	}
	return newSink(cfg, testNS, api, lg, prometheus.NewPedanticRegistry(), zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)))
}

// run runs s until the test ends or stop is called.
func run(t *testing.T, s *Sink) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// eventually waits for cond, polling: the write loop runs in its own
// goroutines, with backoff.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func exists(t *testing.T, api *fakeAPI, name string) func() error {
	return func() error {
		if api.get(t, name) == nil {
			return fmt.Errorf("%s not written", name)
		}
		return nil
	}
}

func gone(t *testing.T, api *fakeAPI, name string) func() error {
	return func() error {
		if api.get(t, name) != nil {
			return fmt.Errorf("%s still there", name)
		}
		return nil
	}
}

func count(c *prometheus.CounterVec, labels ...string) float64 {
	return testutil.ToFloat64(c.WithLabelValues(labels...))
}

const se = served.KindServiceEntry

// TestSinkWritesTheDiff: a new name is created, a changed one applied with
// its UID, an unchanged one (even under a new version) not written, and a
// deleted one deleted with its UID as precondition, only once MarkReady.
func TestSinkWritesTheDiff(t *testing.T) {
	api := newFakeAPI(t)
	s := newTestSink(t, testConfig(nil), api, nil)
	if !s.Apply(se, []served.Entry{seEntry(t, "web", "a"), seEntry(t, "api", "a")}, nil) {
		t.Error("the first Apply reports no change")
	}
	if s.Apply(se, []served.Entry{seEntry(t, "web", "a")}, nil) {
		t.Error("an upsert at the version the sink has reports a change")
	}
	if s.Apply(se, nil, []string{testNS + "/nothing"}) {
		t.Error("deleting a name never upserted reports a change")
	}
	if s.Leading() {
		t.Error("leading before Run")
	}
	run(t, s)
	eventually(t, "web and api created", func() error {
		if err := exists(t, api, "web")(); err != nil {
			return err
		}
		return exists(t, api, "api")()
	})
	if !s.Leading() {
		t.Error("not leading with leader election off")
	}
	for _, name := range []string{"web", "api"} {
		creates := api.requests("create", name)
		if len(creates) != 1 || creates[0].(k8stesting.CreateActionImpl).CreateOptions.FieldManager != FieldManager {
			t.Errorf("%s: creates %v, want one with field manager %s", name, creates, FieldManager)
		}
	}
	web := api.get(t, "web")
	if !owned(web.GetLabels(), "test") || web.GetLabels()["team"] != "a" {
		t.Errorf("web's labels %v", web.GetLabels())
	}

	// A change: a server-side apply, forced, carrying the UID.
	s.Apply(se, []served.Entry{seEntry(t, "web", "b")}, nil)
	eventually(t, "web changed", func() error {
		if got := api.get(t, "web").GetLabels()["team"]; got != "b" {
			return fmt.Errorf("team %q", got)
		}
		return nil
	})
	applies := api.requests("apply", "web")
	if len(applies) != 1 {
		t.Fatalf("applies of web: %d, want 1", len(applies))
	}
	p := applies[0].(k8stesting.PatchActionImpl)
	if p.PatchOptions.FieldManager != FieldManager || p.PatchOptions.Force == nil || !*p.PatchOptions.Force ||
		!strings.Contains(string(p.Patch), `"uid":"`+string(web.GetUID())+`"`) {
		t.Errorf("apply options %+v, patch %s: want forced, by %s, with uid %s", p.PatchOptions, p.Patch, FieldManager, web.GetUID())
	}

	// The same content under another version (a saving upstream let it
	// through): rendered, found equal to what the API holds, not written.
	e := seEntry(t, "web", "b")
	s.Apply(se, []served.Entry{served.EntryOf(e.Name, "another-version", e.Resource), seEntry(t, "sentinel-1", "a")}, nil)
	eventually(t, "sentinel-1 written", exists(t, api, "sentinel-1"))
	if n := len(api.requests("apply", "web")); n != 1 {
		t.Errorf("web was written again (%d applies) although its content did not change", n)
	}

	// A delete waits for MarkReady: before every source has synced, an
	// absence may only mean a source that has not spoken yet.
	s.Apply(se, []served.Entry{seEntry(t, "sentinel-2", "a")}, []string{testNS + "/api"})
	eventually(t, "sentinel-2 written", exists(t, api, "sentinel-2"))
	if api.get(t, "api") == nil || len(api.requests("delete", "")) != 0 {
		t.Fatal("api deleted before MarkReady")
	}
	apiUID := api.get(t, "api").GetUID()
	s.MarkReady()
	eventually(t, "api deleted once ready", gone(t, api, "api"))
	dels := api.requests("delete", "api")
	if len(dels) != 1 {
		t.Fatalf("deletes of api: %d", len(dels))
	}
	if pre := dels[0].(k8stesting.DeleteActionImpl).DeleteOptions.Preconditions; pre == nil || pre.UID == nil || *pre.UID != apiUID {
		t.Errorf("delete preconditions %+v, want uid %s", pre, apiUID)
	}
	if got := count(s.m.applies, "ServiceEntry"); got != 5 {
		t.Errorf("applies_total %v, want 5 (web, api, web's change, two sentinels)", got)
	}
	if got := count(s.m.deletes, "ServiceEntry"); got != 1 {
		t.Errorf("deletes_total %v, want 1", got)
	}
	// Measured for changes made while leading (not the two applied before
	// Run), and only when a request was made: web's change, the sentinels,
	// api's delete.
	var h dto.Metric
	if err := s.m.writeDelay.Write(&h); err != nil {
		t.Fatal(err)
	}
	if got := h.GetHistogram().GetSampleCount(); got != 4 {
		t.Errorf("write delay observed %d times, want 4", got)
	}
}

// TestSinkPrunesOnlyItsOwnAfterMarkReady: at start the sink lists what it
// owns; it rewrites nothing that is already right, prunes nothing before
// MarkReady, and then prunes only objects with its own owner label.
func TestSinkPrunesOnlyItsOwnAfterMarkReady(t *testing.T) {
	keep := seEntry(t, "keep", "a")
	stale := ownedObject(t, seEntry(t, "stale", "a"), "test")
	theirs := ownedObject(t, seEntry(t, "theirs", "a"), "another-adapter")
	api := newFakeAPI(t, ownedObject(t, keep, "test"), stale, theirs, foreignObject("hand"))
	s := newTestSink(t, testConfig(nil), api, nil)
	s.Apply(se, []served.Entry{keep, seEntry(t, "sentinel", "a")}, nil)
	run(t, s)
	eventually(t, "sentinel written", exists(t, api, "sentinel"))
	lists := api.requests("list", "")
	if len(lists) != len(resources) {
		t.Errorf("%d lists at start, want one per kind", len(lists))
	}
	for _, l := range lists {
		if sel := l.(k8stesting.ListActionImpl).ListRestrictions.Labels.String(); sel != ownedSelector("test") {
			t.Errorf("list selector %q, want %q", sel, ownedSelector("test"))
		}
	}
	if n := len(api.requests("apply", "keep")) + len(api.requests("create", "keep")); n != 0 {
		t.Errorf("keep, already right in the API, was written %d times", n)
	}
	if n := len(api.requests("delete", "")); n != 0 {
		t.Fatalf("%d deletes before MarkReady", n)
	}
	s.MarkReady()
	eventually(t, "stale pruned", gone(t, api, "stale"))
	for _, name := range []string{"theirs", "hand", "keep"} {
		if api.get(t, name) == nil {
			t.Errorf("%s was deleted", name)
		}
	}
	if n := len(api.requests("delete", "")); n != 1 {
		t.Errorf("%d deletes, want 1", n)
	}
}

// TestSinkLeavesOthersObjects: whenever a name turns out to hold an object
// the sink does not own (there before, put there between the list and the
// write, or replacing one of its own before a delete), it is counted as a
// conflict and never modified or deleted; an object of its own that another
// replica created meanwhile is taken over.
func TestSinkLeavesOthersObjects(t *testing.T) {
	db := seEntry(t, "db", "a")
	gone1 := seEntry(t, "old", "a")
	api := newFakeAPI(t, foreignObject("web"), ownedObject(t, db, "test"), ownedObject(t, gone1, "test"))
	s := newTestSink(t, testConfig(nil), api, nil)
	tr := api.Tracker()
	replace := func(name string) func() {
		return func() {
			if err := tr.Delete(seGVR, testNS, name); err != nil {
				t.Error(err)
			}
			o := foreignObject(name)
			o.SetUID(api.newUID())
			if err := tr.Create(seGVR, o, testNS); err != nil {
				t.Error(err)
			}
		}
	}
	// db is replaced by a hand-made object just before the sink's apply.
	api.inject(&fault{verb: "apply", name: "db", times: 1, before: replace("db")})
	// late is created by another replica just before the sink's create.
	lateOld := ownedObject(t, seEntry(t, "late", "old"), "test")
	api.inject(&fault{verb: "create", name: "late", times: 1, before: func() {
		lateOld.SetUID(api.newUID())
		if err := tr.Create(seGVR, lateOld, testNS); err != nil {
			t.Error(err)
		}
	}})
	s.MarkReady()
	s.Apply(se, []served.Entry{seEntry(t, "web", "a"), seEntry(t, "db", "b"), seEntry(t, "late", "new"), gone1}, nil)
	run(t, s)
	eventually(t, "late taken over", func() error {
		if got := api.get(t, "late"); got == nil || got.GetLabels()["team"] != "new" {
			return fmt.Errorf("late is %v", got)
		}
		return nil
	})
	eventually(t, "two conflicts", func() error {
		if got := count(s.m.conflicts, "ServiceEntry"); got != 2 {
			return fmt.Errorf("conflicts_total %v, want 2 (web, db)", got)
		}
		return nil
	})
	for _, name := range []string{"web", "db"} {
		if got := api.get(t, name); got == nil || got.GetLabels()["team"] != "hand" {
			t.Errorf("%s, which the sink does not own, was changed: %v", name, got)
		}
	}
	if got := testutil.ToFloat64(s.m.foreign); got != 2 {
		t.Errorf("foreign objects %v, want 2", got)
	}
	// old is replaced by hand before the sink deletes it: the delete's UID
	// precondition fails and the hand-made object stays.
	api.inject(&fault{verb: "delete", name: "old", times: 1, before: replace("old")})
	s.Apply(se, []served.Entry{seEntry(t, "sentinel", "a")}, []string{testNS + "/old", testNS + "/web"})
	eventually(t, "sentinel written", exists(t, api, "sentinel"))
	eventually(t, "the refused delete counted", func() error {
		if got := count(s.m.conflicts, "ServiceEntry"); got != 3 {
			return fmt.Errorf("conflicts_total %v, want 3", got)
		}
		return nil
	})
	if got := api.get(t, "old"); got == nil || got.GetLabels()["team"] != "hand" {
		t.Errorf("old, replaced by hand, was deleted: %v", got)
	}
	// web is no longer wanted: it is no longer the sink's concern.
	if got := testutil.ToFloat64(s.m.foreign); got != 1 {
		t.Errorf("foreign objects %v, want 1 (db)", got)
	}
	if n := len(api.requests("delete", "web")); n != 0 {
		t.Errorf("the sink tried to delete web, which it never owned")
	}
	if n := len(api.requests("create", "web")); n != 1 {
		t.Errorf("web: %d creates, want 1 (a conflict is not retried until the next resync)", n)
	}
}

// TestSinkRetriesAPIErrors: every failed request is counted by reason and
// retried with backoff until it succeeds; a 409 that is not about ownership
// is resolved by reading the object.
func TestSinkRetriesAPIErrors(t *testing.T) {
	gr := seGVR.GroupResource()
	for _, c := range []struct {
		name   string
		verb   string
		err    error
		times  int
		reason string // the errors_total reason; "" for none counted
	}{
		{"403 on create", "create", apierrors.NewForbidden(gr, "web", errors.New("RBAC: no create")), 2, "403"},
		{"429 on create", "create", apierrors.NewTooManyRequests("slow down", 0), 2, "429"},
		{"500 on apply", "apply", apierrors.NewInternalError(errors.New("etcd")), 2, "500"},
		{"503 on apply", "apply", apierrors.NewServiceUnavailable("restarting"), 2, "503"},
		{"409 on apply", "apply", apierrors.NewConflict(gr, "web", errors.New("the object has been modified")), 2, ""},
		{"timeout on delete", "delete", fmt.Errorf("delete: %w", context.DeadlineExceeded), 2, "timeout"},
		{"network on delete", "delete", errors.New("dial tcp: connection refused"), 2, "network"},
		{"504 on the first list", "list", apierrors.NewTimeoutError("list took too long", 0), 1, "504"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// web exists, owned, with old content; new does not exist.
			api := newFakeAPI(t, ownedObject(t, seEntry(t, "web", "old"), "test"))
			s := newTestSink(t, testConfig(nil), api, nil)
			target := "web"
			var done func() error
			switch c.verb {
			case "create", "list":
				target = "new"
				s.Apply(se, []served.Entry{seEntry(t, "new", "a"), seEntry(t, "web", "old")}, nil)
				done = exists(t, api, "new")
			case "apply":
				s.Apply(se, []served.Entry{seEntry(t, "web", "a")}, nil)
				done = func() error {
					if got := api.get(t, "web").GetLabels()["team"]; got != "a" {
						return fmt.Errorf("team %q", got)
					}
					return nil
				}
			case "delete":
				s.MarkReady()
				done = gone(t, api, "web")
			}
			name := target
			if c.verb == "list" {
				name = ""
			}
			ft := api.inject(&fault{verb: c.verb, name: name, err: c.err, times: c.times})
			run(t, s)
			eventually(t, c.verb+" "+target+" done", done)
			if got := api.hits(ft); got != c.times {
				t.Errorf("the fault fired %d times, want %d", got, c.times)
			}
			want := float64(c.times)
			if c.reason == "" {
				want = 0
			}
			if got := count(s.m.errors, "ServiceEntry", c.reason); got != want {
				t.Errorf("errors_total{reason=%q} %v, want %v", c.reason, got, want)
			}
			if got := count(s.m.conflicts, "ServiceEntry"); got != 0 {
				t.Errorf("conflicts_total %v: a failed request is not a conflict", got)
			}
		})
	}
}

// TestSinkForbiddenUntilFixed: the chart's Role without create (every new
// name refused with 403) fails only the creates, which are retried with
// backoff and counted, while changes to existing objects still go out; once
// the permission is granted the creates land.
func TestSinkForbiddenUntilFixed(t *testing.T) {
	api := newFakeAPI(t, ownedObject(t, seEntry(t, "web", "old"), "test"))
	s := newTestSink(t, testConfig(nil), api, nil)
	forbidden := api.inject(&fault{verb: "create", err: apierrors.NewForbidden(seGVR.GroupResource(), "",
		errors.New(`User "system:serviceaccount:mesh:registry-adapter" cannot create resource "serviceentries"`)), times: -1})
	s.Apply(se, []served.Entry{seEntry(t, "new", "a"), seEntry(t, "web", "a")}, nil)
	run(t, s)
	eventually(t, "web changed and new refused three times", func() error {
		if got := api.get(t, "web").GetLabels()["team"]; got != "a" {
			return fmt.Errorf("web's team %q", got)
		}
		if got := count(s.m.errors, "ServiceEntry", "403"); got < 3 {
			return fmt.Errorf("errors_total{reason=403} %v", got)
		}
		return nil
	})
	if api.get(t, "new") != nil {
		t.Fatal("new written through a 403")
	}
	api.clear(forbidden)
	eventually(t, "new created once allowed", exists(t, api, "new"))
}

// TestSinkLeadership: with leader election, only the replica holding the
// Lease writes; a follower keeps the desired state without queueing it, and
// takes over, writing what changed meanwhile, when the leader stops.
func TestSinkLeadership(t *testing.T) {
	api := newFakeAPI(t)
	leases := fakeLeases()
	cfg := testConfig(func(c *Config) {
		c.LeaderElection = LeaderElectionConfig{LeaseName: "test", LeaseDuration: 2 * time.Second,
			RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond}
	})
	a, b := newTestSink(t, cfg, api, leases), newTestSink(t, cfg, api, leases)
	stopA, stopB := run(t, a), run(t, b)
	both := func(ups []served.Entry, dels []string) {
		a.Apply(se, ups, dels)
		b.Apply(se, ups, dels)
	}
	both([]served.Entry{seEntry(t, "one", "a")}, nil)
	a.MarkReady()
	b.MarkReady()
	eventually(t, "one written", exists(t, api, "one"))
	eventually(t, "one leader", func() error {
		if a.Leading() == b.Leading() {
			return fmt.Errorf("leading: a %v, b %v", a.Leading(), b.Leading())
		}
		return nil
	})
	leader, follower, stopLeader := a, b, stopA
	if b.Leading() {
		leader, follower, stopLeader = b, a, stopB
	}
	if got := testutil.ToFloat64(leader.m.leader); got != 1 {
		t.Errorf("leader gauge of the leader %v", got)
	}
	if got := testutil.ToFloat64(follower.m.leader); got != 0 {
		t.Errorf("leader gauge of the follower %v", got)
	}
	if got := count(follower.m.applies, "ServiceEntry"); got != 0 {
		t.Errorf("the follower wrote %v objects", got)
	}
	follower.mu.Lock()
	pending := len(follower.since)
	follower.mu.Unlock()
	if pending != 0 {
		t.Errorf("the follower keeps %d write-delay entries; only the leader measures", pending)
	}
	stopLeader()
	both([]served.Entry{seEntry(t, "two", "a")}, []string{testNS + "/one"})
	eventually(t, "the follower took over: two written, one deleted", func() error {
		if err := exists(t, api, "two")(); err != nil {
			return err
		}
		return gone(t, api, "one")()
	})
	if !follower.Leading() {
		t.Error("the new leader does not say it leads")
	}
	// The stopped leader released the lease on its way out, rather than
	// letting it expire.
	l, err := leases.Leases(testNS).Get(context.Background(), "test", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.LeaseTransitions == nil || *l.Spec.LeaseTransitions < 1 {
		t.Errorf("lease transitions %v, want at least 1", l.Spec.LeaseTransitions)
	}
}

// fakeLeases is the coordination client's fake over an object tracker.
func fakeLeases() *coordfake.FakeCoordinationV1 {
	scheme := runtime.NewScheme()
	if err := coordv1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	tr := k8stesting.NewObjectTracker(scheme, serializer.NewCodecFactory(scheme).UniversalDecoder())
	f := &k8stesting.Fake{}
	f.AddReactor("*", "*", k8stesting.ObjectReaction(tr))
	return &coordfake.FakeCoordinationV1{Fake: f}
}

// TestReason pins the errors_total reasons.
func TestReason(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{apierrors.NewForbidden(seGVR.GroupResource(), "x", errors.New("no")), "403"},
		{apierrors.NewTooManyRequests("slow", 1), "429"},
		{apierrors.NewServiceUnavailable("x"), "503"},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), "timeout"},
		{netTimeout{}, "timeout"},
		{errors.New("connection reset"), "network"},
	} {
		if got := reason(c.err); got != c.want {
			t.Errorf("reason(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// netTimeout is a net.Error that timed out, as net/http's client timeout is.
type netTimeout struct{}

func (netTimeout) Error() string {
	return "net/http: request canceled (Client.Timeout exceeded while awaiting headers)"
}
func (netTimeout) Timeout() bool   { return true }
func (netTimeout) Temporary() bool { return true }

// TestSinkWritesTrafficPolicy: DestinationRules and VirtualServices (a
// Consul source's traffic policy) are written and deleted like
// ServiceEntries, with the owner label; a Role that does not grant listing
// them (one written before the sink wrote them) fails neither the resync nor
// the ServiceEntries, and nothing of theirs is pruned on a guess.
func TestSinkWritesTrafficPolicy(t *testing.T) {
	api := newFakeAPI(t)
	drGVR, vsGVR := resources[served.KindDestinationRule], resources[served.KindVirtualService]
	var listRefused atomic.Int32
	api.PrependReactor("list", "destinationrules", func(k8stesting.Action) (bool, runtime.Object, error) {
		listRefused.Add(1)
		return true, nil, apierrors.NewForbidden(drGVR.GroupResource(), "", errors.New("RBAC: not granted"))
	})
	labels := map[string]string{served.LabelManagedBy: served.ManagedByValue, "registry-adapter.io/service": "web"}
	dr := entry(t, served.KindDestinationRule, testNS+"/web", labels, nil, &networking.DestinationRule{
		Host: "web.example", Subsets: []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}}})
	vs := entry(t, served.KindVirtualService, testNS+"/web", labels, nil, &networking.VirtualService{
		Hosts: []string{"web.example"}, Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{
			{Destination: &networking.Destination{Host: "web.example", Subset: "v1"}, Weight: 100}}}}})

	s := newTestSink(t, testConfig(nil), api, nil)
	s.Apply(served.KindServiceEntry, []served.Entry{seEntry(t, "web", "a")}, nil)
	if !s.Apply(served.KindDestinationRule, []served.Entry{dr}, nil) || !s.Apply(served.KindVirtualService, []served.Entry{vs}, nil) {
		t.Fatal("a DestinationRule or VirtualService is not a change for the sink")
	}
	run(t, s)
	held := func(gvr schema.GroupVersionResource) (*unstructured.Unstructured, error) {
		o, err := api.Tracker().Get(gvr, testNS, "web")
		if err != nil {
			return nil, err
		}
		return o.(*unstructured.Unstructured), nil
	}
	eventually(t, "the ServiceEntry, DestinationRule and VirtualService written", func() error {
		if err := exists(t, api, "web")(); err != nil {
			return err
		}
		for _, gvr := range []schema.GroupVersionResource{drGVR, vsGVR} {
			if _, err := held(gvr); err != nil {
				return err
			}
		}
		return nil
	})
	if listRefused.Load() == 0 {
		t.Fatal("the sink never listed DestinationRules")
	}
	// Not an error of the sink's (the chart grants the kind only with a
	// traffic policy): the errors alert must not fire on every resync.
	if got := testutil.ToFloat64(s.m.errors.WithLabelValues("DestinationRule", reason(apierrors.NewForbidden(drGVR.GroupResource(), "", errors.New("x"))))); got != 0 {
		t.Errorf("a refused list of an optional kind counted as %v errors", got)
	}
	for gvr, kind := range map[schema.GroupVersionResource]string{drGVR: "DestinationRule", vsGVR: "VirtualService"} {
		o, _ := held(gvr)
		if o.GetKind() != kind || !owned(o.GetLabels(), "test") {
			t.Errorf("%s: kind %q labels %v", gvr.Resource, o.GetKind(), o.GetLabels())
		}
	}
	if sub, _, _ := unstructured.NestedSlice(func() map[string]any { o, _ := held(drGVR); return o.Object }(), "spec", "subsets"); len(sub) != 1 {
		t.Errorf("DestinationRule subsets %v", sub)
	}

	// Deleted like any owned object once ready.
	s.MarkReady()
	s.Apply(served.KindVirtualService, nil, []string{testNS + "/web"})
	eventually(t, "the VirtualService deleted", func() error {
		if _, err := held(vsGVR); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	})
	if _, err := held(drGVR); err != nil {
		t.Errorf("the DestinationRule went with the VirtualService: %v", err)
	}
}
