package convert

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/registry-adapter/registry-adapter/convert/validation"
	"github.com/registry-adapter/registry-adapter/model"
)

func TestServiceAddresses(t *testing.T) {
	allocated := []string{"248.1.2.3", "fd00:5ad::7"}
	cases := []struct {
		name     string
		registry []string
		alloc    []string
		dnsEP    bool
		want     []string
		rejected int
	}{
		{name: "allocated when the registry gives none", alloc: allocated, want: allocated},
		{name: "the registry's first", registry: []string{"240.0.0.5"}, alloc: allocated, want: []string{"240.0.0.5"}},
		{name: "invalid registry address dropped alone", registry: []string{"not-an-ip", "10.0.0.0/8", "240.0.0.5", "240.0.0.5"},
			alloc: allocated, want: []string{"240.0.0.5"}, rejected: 2},
		{name: "all registry addresses invalid: allocated", registry: []string{"fe80::1%eth0"}, alloc: allocated, want: allocated, rejected: 1},
		{name: "allocation off", want: nil},
		{name: "with DNS resolution", alloc: allocated, dnsEP: true, want: allocated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svc := web(inst("n1", "10.0.0.1"))
			if tc.dnsEP {
				svc.Instances[0].Address = "vm1.example.com"
			}
			svc.Addresses = tc.registry
			for _, mode := range []Mode{ModeWorkloadEntry, ModeInline} {
				opts := testOpts(func(o *Options) { o.Mode = mode })
				res, rejected := ServiceAt(svc.Host, tc.alloc, []Contribution{{"dc1", svc}}, opts)
				se := res[0].Spec.(*networking.ServiceEntry)
				if !slices.Equal(se.Addresses, tc.want) {
					t.Errorf("%s: addresses %q, want %q", mode, se.Addresses, tc.want)
				}
				n := 0
				for _, r := range rejected {
					if r.Code == CodeAddress {
						n++
					}
				}
				if n != tc.rejected {
					t.Errorf("%s: %d address rejections, want %d: %v", mode, n, tc.rejected, rejected)
				}
				if err := validation.ServiceEntry(metaOf(res[0]), se); err != nil {
					t.Errorf("%s: served ServiceEntry fails validation: %v", mode, err)
				}
			}
		})
	}
}

func TestAddressOptions(t *testing.T) {
	for _, c := range []struct {
		allocate []string
		ok       bool
	}{
		{nil, true}, {[]string{"none"}, true}, {[]string{"248.0.0.0/6", "fd00:5ad::/64"}, true},
		{[]string{"240.240.0.0/16"}, false}, {[]string{"240.0.0.0/4"}, false}, {[]string{"10.0.0.0/8", "11.0.0.0/8"}, false},
		{[]string{"none", "10.0.0.0/8"}, false}, {[]string{"10.0.0.1"}, false},
	} {
		o := testOpts(func(o *Options) { o.Addresses.Allocate = c.allocate })
		if c.allocate == nil {
			o = testOpts()
		}
		if err := o.Validate(); (err == nil) != c.ok {
			t.Errorf("allocate %q: err %v, want ok=%v", c.allocate, err, c.ok)
		}
	}
	if o := testOpts(); !slices.Equal(o.Addresses.Allocate, []string{DefaultAllocateRange}) {
		t.Errorf("default allocate %q", o.Addresses.Allocate)
	}
}

// TestAddressKey: output.addresses.key gives a service its address from a
// label (any source's tag, meta or label), after the registry's own address
// and before allocation, and the label is never copied onto the resources.
func TestAddressKey(t *testing.T) {
	allocated := []string{"248.1.2.3"}
	cases := []struct {
		name      string
		registry  []string
		svcLabel  string   // the key's value on the service; "" for none
		instLabel []string // the key's value per instance; "" for none
		want      []string
		rejected  int
	}{
		{name: "the instances' value", instLabel: []string{"10.99.0.1", "10.99.0.1"}, want: []string{"10.99.0.1"}},
		{name: "instances without the key do not count", instLabel: []string{"", "10.99.0.1"}, want: []string{"10.99.0.1"}},
		{name: "the service's own label first", svcLabel: "10.99.0.9", instLabel: []string{"10.99.0.1"}, want: []string{"10.99.0.9"}},
		{name: "the registry's address first", registry: []string{"240.0.0.5"}, instLabel: []string{"10.99.0.1"}, want: []string{"240.0.0.5"}},
		{name: "IPv4 with dashes (GCE label values cannot hold dots)", instLabel: []string{"10-99-0-1"}, want: []string{"10.99.0.1"}},
		{name: "dashes are for IPv4 only", instLabel: []string{"10-99-0-1-2"}, want: allocated, rejected: 1},
		{name: "IPv6 written canonically", instLabel: []string{"fd00:0::1"}, want: []string{"fd00::1"}},
		{name: "instances disagree: allocated", instLabel: []string{"10.99.0.1", "10.99.0.2"}, want: allocated, rejected: 1},
		{name: "not an IP: allocated", instLabel: []string{"vip-of-web"}, want: allocated, rejected: 1},
		{name: "no key anywhere: allocated", instLabel: []string{"", ""}, want: allocated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var insts []model.Instance
			for i, v := range tc.instLabel {
				in := inst(fmt.Sprintf("n%d", i), fmt.Sprintf("10.0.0.%d", i+1))
				in.Labels = model.LabelsFromMap(map[string]string{"team": "a"})
				if v != "" {
					in.Labels = in.Labels.With("mesh-vip", v)
				}
				insts = append(insts, in)
			}
			svc := web(insts...)
			svc.Addresses = tc.registry
			if tc.svcLabel != "" {
				svc.Labels = model.LabelsFromMap(map[string]string{"mesh-vip": tc.svcLabel})
			}
			for _, mode := range []Mode{ModeWorkloadEntry, ModeInline} {
				opts := testOpts(func(o *Options) { o.Mode = mode; o.Addresses.Key = "mesh-vip" })
				res, rejected := ServiceAt(svc.Host, allocated, []Contribution{{"dc1", svc}}, opts)
				se := res[0].Spec.(*networking.ServiceEntry)
				if !slices.Equal(se.Addresses, tc.want) {
					t.Errorf("%s: addresses %q, want %q", mode, se.Addresses, tc.want)
				}
				n := 0
				for _, r := range rejected {
					if r.Code == CodeAddress {
						n++
						if r.Name != svc.Host || !strings.Contains(r.Reason, "mesh-vip") {
							t.Errorf("%s: rejection %+v does not name the host and the key", mode, r)
						}
					}
				}
				if n != tc.rejected {
					t.Errorf("%s: %d address rejections, want %d: %v", mode, n, tc.rejected, rejected)
				}
				for _, r := range res {
					if _, ok := r.Labels["mesh-vip"]; ok {
						t.Errorf("%s: %s %s carries the address key as a label", mode, r.Kind, r.Name)
					}
				}
				for _, ep := range se.Endpoints {
					if _, ok := ep.Labels["mesh-vip"]; ok || ep.Labels["team"] != "a" {
						t.Errorf("%s: inline endpoint labels %v", mode, ep.Labels)
					}
				}
				for _, r := range res[1:] {
					if we, ok := r.Spec.(*networking.WorkloadEntry); ok {
						if _, has := we.Labels["mesh-vip"]; has || r.Labels["team"] != "a" {
							t.Errorf("%s: WorkloadEntry labels %v, spec labels %v", mode, r.Labels, we.Labels)
						}
					}
				}
			}
		})
	}
	bad := testOpts(func(o *Options) { o.Addresses.Key = "not a key" })
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "output.addresses.key") {
		t.Errorf("invalid key accepted: %v", err)
	}
}
