package convert

import (
	"slices"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/registry-adapter/registry-adapter/convert/validation"
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
				opts := defaultOpts(func(o *Options) { o.Mode = mode })
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
		o := defaultOpts(func(o *Options) { o.Addresses.Allocate = c.allocate })
		if c.allocate == nil {
			o = defaultOpts()
		}
		if err := o.Validate(); (err == nil) != c.ok {
			t.Errorf("allocate %q: err %v, want ok=%v", c.allocate, err, c.ok)
		}
	}
	if o := defaultOpts(); !slices.Equal(o.Addresses.Allocate, []string{DefaultAllocateRange}) {
		t.Errorf("default allocate %q", o.Addresses.Allocate)
	}
}
