package kube

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	mcp "istio.io/api/mcp/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/registry-adapter/registry-adapter/served"
)

var created = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// entry is what the adapter hands every publisher for one resource: the
// served entry the xDS cache serves.
func entry(t *testing.T, kind served.Kind, nsName string, labels, ann map[string]string, spec proto.Message) served.Entry {
	t.Helper()
	ns, name, _ := strings.Cut(nsName, "/")
	e, err := served.New(kind, ns, name, labels, ann, spec, created).Entry()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// mcpAny is an MCP resource built by hand, for input served.New would not
// produce.
func mcpAny(t *testing.T, name string, body *anypb.Any) *anypb.Any {
	t.Helper()
	b, err := proto.Marshal(&mcp.Resource{Metadata: &mcp.Metadata{Name: name}, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: served.MCPResourceTypeURL, Value: b}
}

func testServiceEntry() *networking.ServiceEntry {
	return &networking.ServiceEntry{
		Hosts:            []string{"web.service.consul"},
		Location:         networking.ServiceEntry_MESH_INTERNAL,
		Resolution:       networking.ServiceEntry_STATIC,
		Ports:            []*networking.ServicePort{{Number: 8080, Protocol: "HTTP", Name: "http-8080", TargetPort: 9090}},
		WorkloadSelector: &networking.WorkloadSelector{Labels: map[string]string{"registry-adapter.io/service": "web"}},
	}
}

func TestRender(t *testing.T) {
	labels := map[string]string{served.LabelManagedBy: served.ManagedByValue, "registry-adapter.io/service": "web", "team": "a"}
	ann := map[string]string{"registry-adapter.io/source": "consul"}
	e := entry(t, served.KindServiceEntry, "istio-system/web-service-consul", labels, ann, testServiceEntry())
	obj, hash, err := render(served.KindServiceEntry, "prod", e.Resource)
	if err != nil {
		t.Fatal(err)
	}
	if got := obj.GetAPIVersion() + " " + obj.GetKind(); got != "networking.istio.io/v1 ServiceEntry" {
		t.Errorf("type %q", got)
	}
	if obj.GetNamespace() != "istio-system" || obj.GetName() != "web-service-consul" {
		t.Errorf("name %s/%s", obj.GetNamespace(), obj.GetName())
	}
	wantLabels := map[string]string{served.LabelManagedBy: served.ManagedByValue, "registry-adapter.io/service": "web", "team": "a", LabelOwner: "prod"}
	if fmt.Sprint(obj.GetLabels()) != fmt.Sprint(wantLabels) {
		t.Errorf("labels %v, want %v", obj.GetLabels(), wantLabels)
	}
	if fmt.Sprint(obj.GetAnnotations()) != fmt.Sprint(ann) {
		t.Errorf("annotations %v, want %v", obj.GetAnnotations(), ann)
	}
	if !owned(obj.GetLabels(), "prod") || owned(obj.GetLabels(), "other") {
		t.Error("ownership by owner label is wrong")
	}
	// The CRD's field names and enum names, as kubectl shows them.
	spec, _ := json.Marshal(obj.Object["spec"])
	for _, want := range []string{`"hosts":["web.service.consul"]`, `"location":"MESH_INTERNAL"`, `"targetPort":9090`,
		`"workloadSelector":{"labels":{"registry-adapter.io/service":"web"}}`} {
		if !strings.Contains(string(spec), want) {
			t.Errorf("spec %s lacks %s", spec, want)
		}
	}
	// The API server stores and returns JSON: what it returns must hash as
	// what was rendered, or every resync would rewrite every object.
	wire, err := obj.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var back unstructured.Unstructured
	if err := back.UnmarshalJSON(wire); err != nil {
		t.Fatal(err)
	}
	back.SetUID("1234")
	back.SetResourceVersion("7")
	if h, err := observedHash(&back); err != nil || h != hash {
		t.Errorf("hash after a JSON round trip %q (%v), rendered %q", h, err, hash)
	}
	// Any difference in what the sink manages changes the hash.
	for name, edit := range map[string]func(u *unstructured.Unstructured){
		"label":      func(u *unstructured.Unstructured) { l := u.GetLabels(); l["team"] = "b"; u.SetLabels(l) },
		"annotation": func(u *unstructured.Unstructured) { u.SetAnnotations(map[string]string{"x": "y"}) },
		"spec": func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(u.Object, "DNS", "spec", "resolution")
		},
	} {
		c := back.DeepCopy()
		edit(c)
		if h, _ := observedHash(c); h == hash {
			t.Errorf("%s edit: hash unchanged", name)
		}
	}
}

func TestRenderWorkloadEntry(t *testing.T) {
	we := &networking.WorkloadEntry{Address: "10.0.0.1", Ports: map[string]uint32{"http-8080": 9090}, Weight: 3}
	obj, _, err := render(served.KindWorkloadEntry, "o", entry(t, served.KindWorkloadEntry, "ns/web-a", map[string]string{"app": "web"}, nil, we).Resource)
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(obj.Object["spec"])
	if string(spec) != `{"address":"10.0.0.1","ports":{"http-8080":9090},"weight":3}` {
		t.Errorf("spec %s", spec)
	}
	if _, ok := obj.Object["metadata"].(map[string]any)["annotations"]; ok {
		t.Error("empty annotations should be left out, as the API server does")
	}
}

func TestRenderRejectsBadInput(t *testing.T) {
	seBody, err := anypb.New(testServiceEntry())
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		kind served.Kind
		res  *anypb.Any
	}{
		"not protobuf": {served.KindServiceEntry, &anypb.Any{TypeUrl: served.MCPResourceTypeURL, Value: []byte("\xff\xff\xff")}},
		"not MCP":      {served.KindServiceEntry, seBody},
		"no namespace": {served.KindServiceEntry, mcpAny(t, "web", seBody)},
		"no name":      {served.KindServiceEntry, mcpAny(t, "ns/", seBody)},
		"unknown body": {served.KindServiceEntry, mcpAny(t, "a/b", &anypb.Any{TypeUrl: "type.googleapis.com/nope.Nope"})},
		"another kind": {served.KindWorkloadEntry, mcpAny(t, "a/b", seBody)},
	} {
		if _, _, err := render(c.kind, "o", c.res); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestUIDRefused(t *testing.T) {
	gr := schema.GroupResource{Group: served.Group, Resource: "serviceentries"}
	uidInvalid := apierrors.NewInvalid(schema.GroupKind{Group: served.Group, Kind: "ServiceEntry"}, "web",
		field.ErrorList{field.Invalid(field.NewPath("metadata", "uid"), "x", "field is immutable")})
	specInvalid := apierrors.NewInvalid(schema.GroupKind{Group: served.Group, Kind: "ServiceEntry"}, "web",
		field.ErrorList{field.Invalid(field.NewPath("spec", "hosts"), "x", "bad")})
	for _, c := range []struct {
		err     error
		refused bool
		reason  string
	}{
		{uidInvalid, true, "422"},
		{apierrors.NewConflict(gr, "web", errors.New("precondition failed")), true, "409"},
		{specInvalid, false, "422"},
		{apierrors.NewTooManyRequests("slow down", 1), false, "429"},
		{apierrors.NewInternalError(errors.New("etcd")), false, "500"},
		{fmt.Errorf("dial: %w", errors.New("connection refused")), false, "network"},
	} {
		if got := uidRefused(c.err); got != c.refused {
			t.Errorf("uidRefused(%v) = %v", c.err, got)
		}
		if got := reason(c.err); got != c.reason {
			t.Errorf("reason(%v) = %q, want %q", c.err, got, c.reason)
		}
	}
	_ = metav1.StatusReasonConflict
}

func TestConfigValidate(t *testing.T) {
	off := false
	for _, c := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"defaults", func(*Config) {}, ""},
		{"owner", func(c *Config) { c.Owner = "a b" }, "kubernetesSink.owner"},
		{"burst", func(c *Config) { c.Burst = -1 }, "kubernetesSink.burst"},
		{"workers", func(c *Config) { c.Workers = 1000 }, "kubernetesSink.workers"},
		{"lease order", func(c *Config) { c.LeaderElection.LeaseDuration = 5 * time.Second }, "leaseDuration 5s must be greater"},
		{"lease order ignored when off", func(c *Config) {
			c.LeaderElection.Enabled = &off
			c.LeaderElection.LeaseDuration = 5 * time.Second
		}, ""},
	} {
		cfg := Config{}
		cfg.SetDefaults()
		c.edit(&cfg)
		err := cfg.Validate("kubernetesSink")
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
