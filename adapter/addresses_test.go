package adapter

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
)

// servedAddresses is the spec.addresses of host's served ServiceEntry.
func servedAddresses(t *testing.T, pub *recordingPublisher, host string) []string {
	t.Helper()
	for _, e := range pub.Entries(served.KindServiceEntry) {
		if e.Name != convert.DefaultNamespace+"/"+host {
			continue
		}
		r, err := served.Decode(e.Resource)
		if err != nil {
			t.Fatal(err)
		}
		return r.Spec.(*networking.ServiceEntry).Addresses
	}
	return nil
}

// TestRegistryAddressesChecked: the attacks of a registrant that sets its
// service's own address (Consul's consul-virtual, which any registrant may
// set). Measured before the check: a service served with addresses
// [10.96.0.1] (the kubernetes Service's ClusterIP) and another with a
// third service's address. Now a cluster address, a metadata-server
// address and a copy of another service's address are refused, reported
// once each with the host and counted, and the services are served with
// allocated addresses; the victim keeps its address once the copy goes.
func TestRegistryAddressesChecked(t *testing.T) {
	src := newChanSource()
	core, logs := observer.New(zap.WarnLevel)
	a, pub, _ := startAdapterLogged(t, DebounceConfig{Quiet: time.Millisecond, Max: 5 * time.Millisecond}, GuardConfig{}, zap.New(core), src)
	withAddr := func(name string, addrs ...string) model.Group {
		s := svc(name, "10.0.0.1")
		s.Addresses = addrs
		return group(s)
	}
	allocated := func(host string) bool {
		got := servedAddresses(t, pub, host)
		return len(got) == 1 && netip.MustParsePrefix(convert.DefaultAllocateRange).Contains(netip.MustParseAddr(got[0]))
	}
	src.batches <- []model.Group{
		withAddr("web", "240.0.0.5"),  // Consul's own kind of address: kept
		withAddr("kube", "10.96.0.1"), // the kubernetes Service's ClusterIP
		withAddr("meta", "169.254.169.254"),
	}
	waitUntil(t, "three services served", func() bool { return len(pub.names(served.KindServiceEntry)) == 3 })
	if got := servedAddresses(t, pub, "web.example.com"); !slices.Equal(got, []string{"240.0.0.5"}) {
		t.Errorf("web: %v, want its own 240.0.0.5", got)
	}
	for _, h := range []string{"kube.example.com", "meta.example.com"} {
		if !allocated(h) {
			t.Errorf("%s: %v, want an allocated address instead of the registry's", h, servedAddresses(t, pub, h))
		}
	}
	refused := func() float64 {
		return testutil.ToFloat64(a.metrics.rejected.WithLabelValues("src0", convert.CodeRefusedAddress))
	}
	if got := refused(); got != 2 {
		t.Errorf("refused-address counter %v, want 2", got)
	}
	lines := logs.FilterMessage("left out of what istiod receives").FilterField(zap.String("code", convert.CodeRefusedAddress))
	if lines.Len() != 2 {
		t.Fatalf("%d refusal log lines, want 2: %v", lines.Len(), lines.All())
	}
	for _, l := range lines.All() {
		if item := l.ContextMap()["item"]; item != "kube.example.com" && item != "meta.example.com" {
			t.Errorf("refusal names %v, want the host", item)
		}
	}

	// kube changes (a new instance): the refusal is not logged or counted again.
	kube := svc("kube", "10.0.0.1", "10.0.0.2")
	kube.Addresses = []string{"10.96.0.1"}
	src.batches <- []model.Group{group(kube)}
	waitUntil(t, "kube's new instance", func() bool { return len(pub.names(served.KindWorkloadEntry)) == 4 })
	if got := refused(); got != 2 {
		t.Errorf("refused-address counter %v after a change of the same service, want still 2", got)
	}

	// A copy of web's address: neither keeps it, both are reported.
	src.batches <- []model.Group{withAddr("copy", "240.0.0.5")}
	waitUntil(t, "web loses its contested address", func() bool { return allocated("web.example.com") && allocated("copy.example.com") })
	if got := refused(); got != 4 {
		t.Errorf("refused-address counter %v, want 4", got)
	}
	if l := logs.FilterMessage("left out of what istiod receives").FilterFieldKey("reason").All(); !strings.Contains(l[len(l)-1].ContextMap()["reason"].(string), "claimed by 2 hosts") {
		t.Errorf("last refusal %v", l[len(l)-1].ContextMap())
	}
	// The copy goes: web has its address back.
	src.batches <- []model.Group{{Scope: "copy"}}
	waitUntil(t, "web has 240.0.0.5 back", func() bool {
		return slices.Equal(servedAddresses(t, pub, "web.example.com"), []string{"240.0.0.5"})
	})
}
