package convert

import (
	"slices"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
)

// A registrant gives an instance the address of the client's own host
// (127.0.0.1: the sidecar's admin port; 169.254.169.254: the node's cloud
// metadata service; 0.0.0.0, localhost): every sidecar would send the
// service's traffic there. Such an instance is left out by id, in both
// modes and from any source; the others are served.
func TestLocalInstanceAddressesRefused(t *testing.T) {
	local := []string{"127.0.0.1", "::1", "::ffff:127.0.0.2", "localhost", "169.254.169.254", "fe80::1", "0.0.0.0", "::", "224.0.0.1"}
	var instances []model.Instance
	for i, a := range local {
		instances = append(instances, inst("bad-"+string(rune('a'+i)), a))
	}
	instances = append(instances, inst("good", "10.0.0.1"))
	for _, tc := range []struct {
		name   string
		opts   Options
		served []string // addresses served
	}{
		{"workloadentry", testOpts(), []string{"10.0.0.1"}},
		{"inline", testOpts(func(o *Options) { o.Mode = ModeInline }), []string{"10.0.0.1"}},
		// The opt-in for a single host serves loopback and link-local, never
		// the unspecified or a multicast address.
		{"allowLocalInstanceAddresses", testOpts(func(o *Options) { o.AllowLocalInstanceAddresses = true }),
			[]string{"10.0.0.1", "127.0.0.1", "::ffff:127.0.0.2", "169.254.169.254", "::1", "fe80::1", "localhost"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, rejected := Service("web.service.consul", []Contribution{{Source: "dc1", Service: web(instances...)}}, tc.opts)
			var got []string
			for _, r := range res {
				switch spec := r.Spec.(type) {
				case *networking.WorkloadEntry:
					got = append(got, spec.Address)
				case *networking.ServiceEntry:
					for _, ep := range spec.Endpoints {
						got = append(got, ep.Address)
					}
				}
			}
			slices.Sort(got)
			want := slices.Clone(tc.served)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("served %v, want %v", got, want)
			}
			refused := 0
			for _, r := range rejected {
				if r.Code != CodeAddress {
					t.Errorf("unexpected rejection %v", r)
					continue
				}
				refused++
				if r.Kind != served.KindWorkloadEntry || r.Source != "dc1" || !strings.HasPrefix(r.Name, "bad-") ||
					!strings.Contains(r.Reason, "their own host") {
					t.Errorf("rejection does not name the instance and why: %+v", r)
				}
			}
			if want := len(instances) - len(tc.served); refused != want {
				t.Errorf("%d instances refused, want %d", refused, want)
			}
		})
	}
}
