package served

import (
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	mcp "istio.io/api/mcp/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
)

var created = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func TestKindOf(t *testing.T) {
	for typ, want := range map[string]Kind{
		"networking.istio.io/v1/ServiceEntry":        KindServiceEntry,
		"networking.istio.io/v1alpha3/ServiceEntry":  KindServiceEntry,
		"networking.istio.io/v1/WorkloadEntry":       KindWorkloadEntry,
		"networking.istio.io/v1alpha3/WorkloadEntry": KindWorkloadEntry,
		"networking.istio.io/v1/VirtualService":      KindVirtualService,
		"networking.istio.io/v1/DestinationRule":     KindDestinationRule,
		"networking.istio.io/v1/Gateway":             "",
		"networking.istio.io/v1/Sidecar":             "",
		"security.istio.io/v1/ServiceEntry":          "",
		"":                                           "", "ServiceEntry": "",
	} {
		if got := KindOf(typ); got != want {
			t.Errorf("KindOf(%q) = %q, want %q", typ, got, want)
		}
	}
}

// TestEntryIsTheEnvelope: Entry carries the same Any as marshalling the
// envelope the usual way, its record is that Any as a DiscoveryResponse
// element, and EntryOf makes the same record from the Any.
func TestEntryIsTheEnvelope(t *testing.T) {
	for _, body := range []int{0, 100, 200_000} { // varint lengths of 1, 2 and 3 bytes
		r := &Resource{
			Kind: KindWorkloadEntry, Namespace: "ns", Name: "x", Labels: map[string]string{"a": "b"}, Version: "1",
			body: make([]byte, body), createTime: timestamppb.New(created),
		}
		e, err := r.Entry()
		if err != nil {
			t.Fatal(err)
		}
		want, err := anypb.New(r.envelope())
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(e.Resource, want) || e.Name != "ns/x" || e.Version != "1" {
			t.Fatalf("body %d: Entry %s@%s differs from anypb.New's envelope", body, e.Name, e.Version)
		}
		var resp discovery.DiscoveryResponse
		if err := proto.Unmarshal(e.Record(), &resp); err != nil || len(resp.Resources) != 1 || !proto.Equal(resp.Resources[0], want) {
			t.Fatalf("body %d: the record is not one DiscoveryResponse resource (%v)", body, err)
		}
		if got := EntryOf(e.Name, e.Version, want).Record(); string(got) != string(e.Record()) {
			t.Errorf("body %d: EntryOf's record differs (%d vs %d bytes)", body, len(got), len(e.Record()))
		}
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	for _, c := range []struct {
		kind Kind
		spec proto.Message
	}{
		{KindServiceEntry, &networking.ServiceEntry{Hosts: []string{"web.example"}, Ports: []*networking.ServicePort{{Number: 80, Name: "http", Protocol: "HTTP"}}}},
		{KindWorkloadEntry, &networking.WorkloadEntry{Address: "10.0.0.1", Labels: map[string]string{"app": "web"}}},
		{KindDestinationRule, &networking.DestinationRule{Host: "web.example", Subsets: []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}}}},
		{KindVirtualService, &networking.VirtualService{Hosts: []string{"web.example"}, Http: []*networking.HTTPRoute{{
			Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "web.example", Subset: "v1"}}}}}}},
	} {
		r := New(c.kind, "istio-system", "web", map[string]string{"l": "1"}, map[string]string{"a": "2"}, c.spec, created)
		e, err := r.Entry()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(e.Resource)
		if err != nil {
			t.Fatal(err)
		}
		if back.Kind != c.kind || back.Key() != "istio-system/web" || back.Version != r.Version ||
			back.Labels["l"] != "1" || back.Annotations["a"] != "2" || !back.CreateTime().Equal(created) {
			t.Errorf("%s: round trip gave %+v", c.kind, back)
		}
		if !proto.Equal(back.Spec, c.spec) {
			t.Errorf("%s: round trip changed the spec", c.kind)
		}
	}
	if _, err := Decode(&anypb.Any{TypeUrl: MCPResourceTypeURL, Value: []byte{0xff}}); err == nil {
		t.Error("Decode of garbage: no error")
	}
	// A body of a kind the adapter does not serve is an error, not a
	// ServiceEntry.
	gw, err := anypb.New(&networking.Gateway{})
	if err != nil {
		t.Fatal(err)
	}
	env, err := anypb.New(&mcp.Resource{Metadata: &mcp.Metadata{Name: "ns/gw"}, Body: gw})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := Decode(env); err == nil {
		t.Errorf("Decode of a Gateway gave %s, want an error", r.Kind)
	}
}

// TestVersionFollowsContent: the version changes with everything istiod
// stores, and only with that.
func TestVersionFollowsContent(t *testing.T) {
	spec := &networking.WorkloadEntry{Address: "10.0.0.1"}
	base := New(KindWorkloadEntry, "ns", "x", nil, nil, spec, created).Version
	for name, c := range map[string]struct {
		labels, ann map[string]string
		spec        proto.Message
		at          time.Time
		same        bool
	}{
		"identical":            {nil, nil, spec, created, true},
		"empty maps":           {map[string]string{}, map[string]string{}, spec, created, true},
		"a label":              {map[string]string{"a": "b"}, nil, spec, created, false},
		"the same annotation":  {nil, map[string]string{"a": "b"}, spec, created, false},
		"another address":      {nil, nil, &networking.WorkloadEntry{Address: "10.0.0.2"}, created, false},
		"another created time": {nil, nil, spec, created.Add(time.Second), false},
	} {
		v := New(KindWorkloadEntry, "ns", "x", c.labels, c.ann, c.spec, c.at).Version
		if (v == base) != c.same {
			t.Errorf("%s: version %s vs %s, want same=%v", name, v, base, c.same)
		}
	}
	label := New(KindWorkloadEntry, "ns", "x", map[string]string{"a": "b"}, nil, spec, created).Version
	ann := New(KindWorkloadEntry, "ns", "x", nil, map[string]string{"a": "b"}, spec, created).Version
	if label == ann {
		t.Error("a label and the same annotation hash alike")
	}
}

// TestEnvelopeMatchesProto: the hand-written envelope is byte for byte what
// proto.Marshal writes deterministically, for every shape of metadata.
func TestEnvelopeMatchesProto(t *testing.T) {
	long := string(make([]byte, 300))
	for _, r := range []*Resource{
		{Kind: KindServiceEntry, Namespace: "ns", Name: "a", Version: "1", createTime: timestamppb.New(created)},
		{Kind: KindWorkloadEntry, Namespace: "ns", Name: "b", createTime: timestamppb.New(time.Unix(0, 0))},
		{Kind: KindWorkloadEntry, Namespace: "ns", Name: "c", Version: "ff", body: []byte{1, 2, 3}},
		{Kind: KindServiceEntry, Namespace: "istio-system", Name: "web", Version: "abc", body: make([]byte, 70_000),
			Labels:      map[string]string{"z": "1", "a": "", "": "x", "m": long},
			Annotations: map[string]string{"registry-adapter.io/source": "dc1", "k": "v"},
			createTime:  timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC))},
		{Kind: KindServiceEntry, Namespace: "ns", Name: "d", createTime: timestamppb.New(time.Date(1960, 1, 1, 0, 0, 0, 5, time.UTC))},
	} {
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.envelope())
		if err != nil {
			t.Fatal(err)
		}
		w := newEnvelopeWriter(r)
		got := w.append(nil, r.body)
		if string(got) != string(want) || w.size() != len(want) {
			t.Errorf("%s: hand-written envelope (%d bytes, sized %d) differs from proto's (%d bytes)\n got %x\nwant %x",
				r.Key(), len(got), w.size(), len(want), got, want)
		}
	}
}
