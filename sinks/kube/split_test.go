package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/util/workqueue"

	"github.com/registry-adapter/registry-adapter/served"
)

// bigLimit is the MaxObjectBytes of these tests: 16 KiB, the least the
// configuration allows, so a few hundred endpoints pass it.
const bigLimit = 16 << 10

// bigEntry is an inline ServiceEntry called name with n endpoints
// (10.<i>...), each labelled; edit may change the endpoints before it is
// served.
func bigEntry(t *testing.T, name string, n int, edit func([]*networking.WorkloadEntry)) served.Entry {
	t.Helper()
	spec := &networking.ServiceEntry{
		Hosts: []string{name + ".example"}, Addresses: []string{"248.0.0.7"},
		Location: networking.ServiceEntry_MESH_INTERNAL, Resolution: networking.ServiceEntry_STATIC,
		Ports: []*networking.ServicePort{{Number: 80, Protocol: "HTTP", Name: "http-80"}, {Number: 5432, Protocol: "TCP", Name: "tcp-5432"}},
	}
	for i := range n {
		spec.Endpoints = append(spec.Endpoints, &networking.WorkloadEntry{
			Address: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Locality: "dc1", Weight: 1,
			Labels: map[string]string{"version": "v1", "rack": fmt.Sprintf("r%d", i%7)},
		})
	}
	if edit != nil {
		edit(spec.Endpoints)
	}
	labels := map[string]string{served.LabelManagedBy: served.ManagedByValue, "registry-adapter.io/service": name + ".example"}
	return entry(t, served.KindServiceEntry, testNS+"/"+name, labels, map[string]string{"registry-adapter.io/source": "dc1"}, spec)
}

// objects lists the ServiceEntries the fake API holds whose
// registry-adapter.io/service label is host's, by name.
func objects(t *testing.T, api *fakeAPI, host string) map[string]*unstructured.Unstructured {
	t.Helper()
	out := map[string]*unstructured.Unstructured{}
	list, err := api.Tracker().List(seGVR, seGVR.GroupVersion().WithKind("ServiceEntry"), testNS)
	if err != nil {
		t.Fatal(err)
	}
	items, err := unstructuredItems(list)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range items {
		if u.GetLabels()["registry-adapter.io/service"] == host {
			out[u.GetName()] = u
		}
	}
	return out
}

func unstructuredItems(list any) ([]*unstructured.Unstructured, error) {
	l, ok := list.(*unstructured.UnstructuredList)
	if !ok {
		return nil, fmt.Errorf("list is a %T", list)
	}
	var out []*unstructured.Unstructured
	for i := range l.Items {
		out = append(out, &l.Items[i])
	}
	return out, nil
}

// checkParts checks a split service in the API: n objects (0: any number
// over one), named after the served name, each under the limit, with the
// served spec but for a share of the endpoints, the served labels and
// annotations plus "i/n", and between them every endpoint of want once.
func checkParts(t *testing.T, api *fakeAPI, name string, n int, want served.Entry) error {
	t.Helper()
	res, err := served.Decode(want.Resource)
	if err != nil {
		t.Fatal(err)
	}
	spec := res.Spec.(*networking.ServiceEntry)
	objs := objects(t, api, name+".example")
	if n == 0 && len(objs) < 2 || n > 0 && len(objs) != n {
		return fmt.Errorf("%d objects of %s (%v), want %d", len(objs), name, slices.Sorted(maps.Keys(objs)), n)
	}
	if _, ok := objs[name]; !ok {
		return fmt.Errorf("no part keeps the served name %s: %v", name, slices.Sorted(maps.Keys(objs)))
	}
	seen := map[string]int{}
	for objName, u := range objs {
		b, err := json.Marshal(u.Object)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > bigLimit {
			return fmt.Errorf("%s: %d bytes, over the limit %d", objName, len(b), bigLimit)
		}
		if objName != name && !strings.HasPrefix(objName, name+"-part-") {
			return fmt.Errorf("part %s is not named after %s", objName, name)
		}
		if u.GetLabels()["registry-adapter.io/service"] != res.Labels["registry-adapter.io/service"] || !owned(u.GetLabels(), "test") {
			return fmt.Errorf("%s: labels %v", objName, u.GetLabels())
		}
		ann := u.GetAnnotations()
		if ann["registry-adapter.io/source"] != "dc1" || !strings.HasSuffix(ann[AnnotationPart], fmt.Sprintf("/%d", len(objs))) {
			return fmt.Errorf("%s: annotations %v, want the served ones and part i/%d", objName, ann, len(objs))
		}
		// Every field but the endpoints is the served one.
		got := map[string]any{}
		for k, v := range u.Object["spec"].(map[string]any) {
			got[k] = v
		}
		eps, _ := got["endpoints"].([]any)
		delete(got, "endpoints")
		shell := proto.CloneOf(spec)
		shell.Endpoints = nil
		wantObj, _, err := render(served.KindServiceEntry, "test", entry(t, served.KindServiceEntry, testNS+"/x", nil, nil, shell).Resource)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := mustJSON(t, got), mustJSON(t, wantObj.Object["spec"]); g != w {
			return fmt.Errorf("%s: service fields %s, want %s", objName, g, w)
		}
		for _, ep := range eps {
			seen[mustJSON(t, ep)]++
		}
	}
	for _, ep := range spec.Endpoints {
		o, _, err := render(served.KindServiceEntry, "test", entry(t, served.KindServiceEntry, testNS+"/x", nil, nil,
			&networking.ServiceEntry{Endpoints: []*networking.WorkloadEntry{ep}}).Resource)
		if err != nil {
			t.Fatal(err)
		}
		k := mustJSON(t, o.Object["spec"].(map[string]any)["endpoints"].([]any)[0])
		if seen[k] != 1 {
			return fmt.Errorf("endpoint %s is in %d parts, want 1", k, seen[k])
		}
		delete(seen, k)
	}
	if len(seen) > 0 {
		return fmt.Errorf("parts hold endpoints that are not served: %v", seen)
	}
	return nil
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSinkSplitsALargeService: a ServiceEntry over maxObjectBytes is written
// as parts that keep the served name, each under the limit with every other
// field and every endpoint once; a change to one endpoint, or its removal,
// rewrites one part;
// growing within the room left keeps the parts; the service shrinking back
// under the limit leaves one object, and its removal removes every part. A
// service that fits is written whole, beside it, untouched by all this.
func TestSinkSplitsALargeService(t *testing.T) {
	api := newFakeAPI(t)
	s := newTestSink(t, testConfig(func(c *Config) { c.MaxObjectBytes = bigLimit }), api, nil)
	big := bigEntry(t, "big", 600, nil)
	small := seEntry(t, "small", "a")
	s.Apply(se, []served.Entry{big, small}, nil)
	s.MarkReady()
	run(t, s)
	eventually(t, "big written in parts", func() error { return checkParts(t, api, "big", 0, big) })
	eventually(t, "small written", exists(t, api, "small"))
	if a := api.get(t, "small").GetAnnotations(); a[AnnotationPart] != "" {
		t.Errorf("a service that fits is annotated %v", a)
	}
	parts := len(objects(t, api, "big.example"))
	if got := gauge(t, s); got != 1 {
		t.Errorf("split services gauge %v, want 1", got)
	}
	t.Logf("600 endpoints, %d bytes of protobuf: %d parts under %d bytes", len(big.Resource.Value), parts, bigLimit)

	// One endpoint's labels change: one part is rewritten.
	applies := count(s.m.applies, "ServiceEntry")
	changed := bigEntry(t, "big", 600, func(eps []*networking.WorkloadEntry) { eps[123].Labels["version"] = "v2" })
	s.Apply(se, []served.Entry{changed}, nil)
	eventually(t, "the change written", func() error { return checkParts(t, api, "big", parts, changed) })
	eventually(t, "one apply", func() error {
		if got := count(s.m.applies, "ServiceEntry") - applies; got != 1 {
			return fmt.Errorf("%v objects written for one endpoint's change, want 1", got)
		}
		return nil
	})

	// An instance in the middle goes: the one part it was in is rewritten,
	// nothing moves between the others.
	applies = count(s.m.applies, "ServiceEntry")
	removed := bigEntry(t, "big", 600, func(eps []*networking.WorkloadEntry) { eps[123].Labels["version"] = "v2" })
	{
		r, err := served.Decode(removed.Resource)
		if err != nil {
			t.Fatal(err)
		}
		spec := r.Spec.(*networking.ServiceEntry)
		spec.Endpoints = slices.Delete(spec.Endpoints, 5, 6)
		removed = entry(t, served.KindServiceEntry, removed.Name, r.Labels, r.Annotations, spec)
	}
	s.Apply(se, []served.Entry{removed}, nil)
	eventually(t, "the removal written", func() error { return checkParts(t, api, "big", parts, removed) })
	eventually(t, "one apply", func() error {
		if got := count(s.m.applies, "ServiceEntry") - applies; got != 1 {
			return fmt.Errorf("%v objects written for one endpoint's removal, want 1", got)
		}
		return nil
	})

	// A few more endpoints: the same parts, within their room.
	grown := bigEntry(t, "big", 620, nil)
	s.Apply(se, []served.Entry{grown}, nil)
	eventually(t, "grown", func() error { return checkParts(t, api, "big", parts, grown) })

	// Back under the limit: one object, the parts deleted.
	shrunk := bigEntry(t, "big", 20, nil)
	s.Apply(se, []served.Entry{shrunk}, nil)
	eventually(t, "one object again", func() error {
		objs := objects(t, api, "big.example")
		if len(objs) != 1 || objs["big"] == nil {
			return fmt.Errorf("objects %v", slices.Sorted(maps.Keys(objs)))
		}
		if a := objs["big"].GetAnnotations(); a[AnnotationPart] != "" {
			return fmt.Errorf("annotations %v", a)
		}
		return nil
	})
	if got := gauge(t, s); got != 0 {
		t.Errorf("split services gauge %v, want 0", got)
	}

	// Large again, then removed: every part goes.
	s.Apply(se, []served.Entry{big}, nil)
	eventually(t, "split again", func() error { return checkParts(t, api, "big", parts, big) })
	s.Apply(se, nil, []string{testNS + "/big"})
	eventually(t, "every part deleted", func() error {
		if objs := objects(t, api, "big.example"); len(objs) != 0 {
			return fmt.Errorf("left: %v", slices.Sorted(maps.Keys(objs)))
		}
		return nil
	})
	if api.get(t, "small") == nil || count(s.m.errors, "ServiceEntry", "too_large") != 0 {
		t.Error("the small service was lost, or an object was refused")
	}
}

func gauge(t *testing.T, s *Sink) float64 {
	t.Helper()
	return testutil.ToFloat64(s.m.split)
}

// TestSinkSplitSkipsServedNames: a registry name that is a part's name
// ("<name>-part-2") keeps its own object; the split service's parts go
// around it, whichever arrives first.
func TestSinkSplitSkipsServedNames(t *testing.T) {
	for _, order := range []string{"served first", "split first"} {
		t.Run(order, func(t *testing.T) {
			api := newFakeAPI(t)
			s := newTestSink(t, testConfig(func(c *Config) { c.MaxObjectBytes = bigLimit }), api, nil)
			big := bigEntry(t, "big", 600, nil)
			squatter := seEntry(t, "big-part-2", "squat")
			if order == "served first" {
				s.Apply(se, []served.Entry{squatter}, nil)
				s.Apply(se, []served.Entry{big}, nil)
			} else {
				s.Apply(se, []served.Entry{big}, nil)
				s.Apply(se, []served.Entry{squatter}, nil)
			}
			s.MarkReady()
			run(t, s)
			eventually(t, "both written", func() error {
				if err := checkParts(t, api, "big", 0, big); err != nil {
					return err
				}
				u := api.get(t, "big-part-2")
				if u == nil || u.GetLabels()["team"] != "squat" {
					return fmt.Errorf("big-part-2 is not the served entry: %v", u)
				}
				return nil
			})
		})
	}
}

// TestSinkRefusesWhatCannotBeSplit: a service whose single endpoint and
// service fields pass the limit is not written (an error naming it, the
// too_large reason); the others are.
func TestSinkRefusesWhatCannotBeSplit(t *testing.T) {
	api := newFakeAPI(t)
	s := newTestSink(t, testConfig(func(c *Config) { c.MaxObjectBytes = bigLimit }), api, nil)
	huge := bigEntry(t, "huge", 2, func(eps []*networking.WorkloadEntry) {
		for i := range 400 {
			eps[0].Labels[fmt.Sprintf("label-%03d", i)] = strings.Repeat("x", 40)
		}
	})
	s.Apply(se, []served.Entry{huge, seEntry(t, "small", "a")}, nil)
	run(t, s)
	eventually(t, "small written", exists(t, api, "small"))
	eventually(t, "huge refused", func() error {
		if got := count(s.m.errors, "ServiceEntry", "too_large"); got < 1 {
			return fmt.Errorf("too_large errors %v", got)
		}
		return nil
	})
	if api.get(t, "huge") != nil || len(api.requests("create", "huge")) != 0 {
		t.Error("a service over the limit was sent to the API")
	}
}

// TestPartNamesAreKubernetesNames: a served name near the longest allowed
// gives parts whose names are valid and distinct.
func TestPartNamesAreKubernetesNames(t *testing.T) {
	s := newTestSink(t, testConfig(nil), newFakeAPI(t), nil)
	for _, name := range []string{"web", strings.Repeat("a", 120) + "." + strings.Repeat("b", 120) + ".c", strings.Repeat("x.", 126) + "y"} {
		names := s.partNames(testNS+"/"+name, 12)
		if len(names) != 12 || names[0] != testNS+"/"+name {
			t.Fatalf("%s: names %v", name, names)
		}
		seen := map[string]bool{}
		for _, n := range names {
			_, short := splitName(n)
			if len(validation.IsDNS1123Subdomain(short)) > 0 || seen[short] {
				t.Errorf("part name %q (of %d characters) is not a distinct DNS-1123 subdomain", short, len(short))
			}
			seen[short] = true
		}
	}
}

// TestSinkAPIRefusesForSize: a cluster whose etcd stores less than
// maxObjectBytes refuses an object as etcd does ("etcdserver: request is too
// large", passed on by kube-apiserver as a storage error) or with the API
// server's own 413: the write counts too_large and is done with (sync
// returns no error, so the queue does not retry it in a loop; the next resync
// tries it again); the other services are written.
func TestSinkAPIRefusesForSize(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"etcd", apierrors.NewInternalError(errors.New("etcdserver: request is too large"))},
		{"413", apierrors.NewRequestEntityTooLargeError("limit is 3145728")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeAPI(t)
			api.inject(&fault{verb: "create", name: "big", err: tc.err, times: -1})
			s := newTestSink(t, testConfig(nil), api, nil)
			s.Apply(se, []served.Entry{seEntry(t, "big", "a"), seEntry(t, "small", "a")}, nil)
			if err := s.sync(context.Background(), key{se, testNS + "/big"}); err != nil {
				t.Errorf("sync of a refused object: %v, want done with (nil)", err)
			}
			if got := count(s.m.errors, "ServiceEntry", "too_large"); got != 1 {
				t.Errorf("too_large errors %v, want 1", got)
			}
			if err := s.sync(context.Background(), key{se, testNS + "/small"}); err != nil || api.get(t, "small") == nil {
				t.Errorf("small not written: %v", err)
			}
			if n := len(api.requests("create", "big")); n != 1 {
				t.Errorf("big sent %d times, want once", n)
			}
		})
	}
}

// TestSinkSplitRestartRewritesNothing: a sink started again over the parts an
// earlier one wrote (an adapter restart, a new leader) finds every part as it
// would write it: the split is a function of the served entry and the names
// the API holds, so nothing is sent but the list.
func TestSinkSplitRestartRewritesNothing(t *testing.T) {
	api := newFakeAPI(t)
	cfg := testConfig(func(c *Config) { c.MaxObjectBytes = bigLimit })
	first := newTestSink(t, cfg, api, nil)
	big := bigEntry(t, "big", 600, nil)
	first.Apply(se, []served.Entry{big, seEntry(t, "small", "a")}, nil)
	first.MarkReady()
	stop := run(t, first)
	eventually(t, "written in parts", func() error { return checkParts(t, api, "big", 0, big) })
	eventually(t, "small written", exists(t, api, "small"))
	stop()
	writes := len(api.requests("create", "")) + len(api.requests("apply", ""))

	again := newTestSink(t, cfg, api, nil)
	again.Apply(se, []served.Entry{big, seEntry(t, "small", "a")}, nil)
	again.MarkReady()
	ctx := context.Background()
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[key]())
	defer q.ShutDown()
	if err := again.resync(ctx, q); err != nil {
		t.Fatal(err)
	}
	// What the write loop would do, one key at a time, to the end.
	synced := 0
	for q.Len() > 0 {
		k, _ := q.Get()
		if err := again.sync(ctx, k); err != nil {
			t.Fatalf("sync %s: %v", k, err)
		}
		q.Done(k)
		synced++
	}
	if synced < 3 {
		t.Fatalf("%d keys synced after the restart, want every part and small", synced)
	}
	if got := len(api.requests("create", "")) + len(api.requests("apply", "")) - writes; got != 0 {
		t.Errorf("the restarted sink wrote %d objects, want 0", got)
	}
	if err := checkParts(t, api, "big", 0, big); err != nil {
		t.Error(err)
	}
}

// TestSinkSplitsManyEndpoints: a service under maxObjectBytes with more
// endpoints than Istio's CRD allows in one ServiceEntry (4096) is written in
// parts of at most 4096 endpoints, every endpoint in one; 4096 fit in one.
func TestSinkSplitsManyEndpoints(t *testing.T) {
	api := newFakeAPI(t)
	s := newTestSink(t, testConfig(nil), api, nil)
	slim := func(name string, n int) served.Entry {
		e := bigEntry(t, name, n, func(eps []*networking.WorkloadEntry) {
			for _, ep := range eps {
				ep.Labels, ep.Locality, ep.Weight = nil, "", 0
			}
		})
		return e
	}
	many, edge := slim("many", 10000), slim("edge", maxEndpoints)
	s.Apply(se, []served.Entry{many, edge}, nil)
	s.MarkReady()
	run(t, s)
	eventually(t, "many written in parts, edge whole", func() error {
		if objs := objects(t, api, "edge.example"); len(objs) != 1 {
			return fmt.Errorf("edge: %d objects", len(objs))
		}
		objs := objects(t, api, "many.example")
		seen := map[string]int{}
		for name, u := range objs {
			eps, _, _ := unstructured.NestedSlice(u.Object, "spec", "endpoints")
			if len(eps) > maxEndpoints {
				return fmt.Errorf("%s: %d endpoints", name, len(eps))
			}
			for _, ep := range eps {
				seen[ep.(map[string]any)["address"].(string)]++
			}
		}
		if len(objs) < 3 || len(seen) != 10000 {
			return fmt.Errorf("%d parts, %d distinct endpoints", len(objs), len(seen))
		}
		for a, c := range seen {
			if c != 1 {
				return fmt.Errorf("%s in %d parts", a, c)
			}
		}
		return nil
	})
	if got := gauge(t, s); got != 1 {
		t.Errorf("split services gauge %v, want 1", got)
	}
}

// TestSinkInvalidNotRetried: an object the CRD's schema refuses (422, not a
// UID mismatch) is counted and done with, as a refusal for size is.
func TestSinkInvalidNotRetried(t *testing.T) {
	api := newFakeAPI(t)
	invalid := apierrors.NewInvalid(seGVR.GroupVersion().WithKind("ServiceEntry").GroupKind(), "bad",
		field.ErrorList{field.TooMany(field.NewPath("spec", "hosts"), 300, 256)})
	api.inject(&fault{verb: "create", name: "bad", err: invalid, times: -1})
	s := newTestSink(t, testConfig(nil), api, nil)
	s.Apply(se, []served.Entry{seEntry(t, "bad", "a")}, nil)
	if err := s.sync(context.Background(), key{se, testNS + "/bad"}); err != nil {
		t.Errorf("sync of an invalid object: %v, want done with (nil)", err)
	}
	if got := count(s.m.errors, "ServiceEntry", "422"); got != 1 {
		t.Errorf("422 errors %v, want 1", got)
	}
}
