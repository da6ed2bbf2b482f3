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

// TestServiceAddresses: the registry's own addresses are the host's
// claims (invalid ones rejected alone); ServiceAt serves the addresses it is
// given (package vip decides them from every host's claims); Service, which
// sees one host alone, serves the claims the policy accepts.
func TestServiceAddresses(t *testing.T) {
	allocated := []string{"248.1.2.3", "fd00:5ad::7"}
	cases := []struct {
		name     string
		registry []string
		claims   []string
		rejected int
		service  []string // what Service serves
		refused  int      // of which Service refuses
	}{
		{name: "none"},
		{name: "the registry's", registry: []string{"240.0.0.5"}, claims: []string{"240.0.0.5"}, service: []string{"240.0.0.5"}},
		{name: "invalid registry address dropped alone", registry: []string{"not-an-ip", "10.0.0.0/8", "240.0.0.5", "240.0.0.5"},
			claims: []string{"240.0.0.5"}, rejected: 2, service: []string{"240.0.0.5"}},
		{name: "IPv4-mapped", registry: []string{"::ffff:240.0.0.5"}, claims: []string{"240.0.0.5"}, service: []string{"240.0.0.5"}},
		{name: "all registry addresses invalid", registry: []string{"fe80::1%eth0"}, rejected: 1},
		{name: "a cluster address", registry: []string{"10.96.0.1", "240.0.0.5"}, claims: []string{"10.96.0.1", "240.0.0.5"},
			service: []string{"240.0.0.5"}, refused: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svc := web(inst("n1", "10.0.0.1"))
			svc.Addresses = tc.registry
			opts := testOpts()
			claims, rejected := Claims(svc.Host, []Contribution{{"dc1", svc}}, opts)
			var got []string
			for _, c := range claims {
				got = append(got, c.String())
			}
			if !slices.Equal(got, tc.claims) {
				t.Errorf("claims %q, want %q", got, tc.claims)
			}
			if n := countCode(rejected, CodeAddress); n != tc.rejected {
				t.Errorf("%d address rejections, want %d: %v", n, tc.rejected, rejected)
			}
			res, rejected := Service(svc.Host, []Contribution{{"dc1", svc}}, opts)
			if se := res[0].Spec.(*networking.ServiceEntry); !slices.Equal(se.Addresses, tc.service) {
				t.Errorf("Service: addresses %q, want %q", se.Addresses, tc.service)
			}
			if n := countCode(rejected, CodeRefusedAddress); n != tc.refused {
				t.Errorf("Service: %d refused, want %d: %v", n, tc.refused, rejected)
			}
		})
	}
	for _, mode := range []Mode{ModeWorkloadEntry, ModeInline} {
		for _, dnsEP := range []bool{false, true} {
			svc := web(inst("n1", "10.0.0.1"))
			if dnsEP {
				svc.Instances[0].Address = "vm1.example.com"
			}
			opts := testOpts(func(o *Options) { o.Mode = mode })
			res, _ := ServiceAt(svc.Host, allocated, []Contribution{{"dc1", svc}}, opts)
			se := res[0].Spec.(*networking.ServiceEntry)
			if !slices.Equal(se.Addresses, allocated) {
				t.Errorf("%s (DNS endpoint %v): addresses %q, want %q", mode, dnsEP, se.Addresses, allocated)
			}
			if err := validation.ServiceEntry(metaOf(res[0]), se); err != nil {
				t.Errorf("%s: served ServiceEntry fails validation: %v", mode, err)
			}
		}
	}
}

func countCode(rs []Rejection, code string) int {
	n := 0
	for _, r := range rs {
		if r.Code == code {
			n++
		}
	}
	return n
}

func TestAddressOptions(t *testing.T) {
	for _, c := range []struct {
		allocate, allow, istio []string
		ok                     bool
	}{
		{nil, nil, nil, true}, {[]string{"none"}, nil, nil, true}, {[]string{"248.0.0.0/6", "fd00:5ad::/64"}, nil, nil, true},
		{[]string{"240.240.0.0/16"}, nil, nil, false}, {[]string{"240.0.0.0/4"}, nil, nil, false},
		{[]string{"10.0.0.0/8", "11.0.0.0/8"}, nil, nil, false},
		{[]string{"none", "10.0.0.0/8"}, nil, nil, false}, {[]string{"10.0.0.1"}, nil, nil, false},
		{nil, []string{"none"}, nil, true}, {nil, []string{"240.0.0.0/4", "fd00::/8"}, nil, true},
		{nil, []string{"240.0.0.1"}, nil, false}, {nil, []string{"240.0.0.1/4"}, nil, false}, {nil, []string{"none", "240.0.0.0/4"}, nil, false},
		// istiod's range moved (PILOT_IP_AUTOALLOCATE_IPV4_PREFIX) onto the allocation range.
		{nil, nil, []string{"248.0.0.0/16"}, false}, {nil, nil, []string{"241.0.0.0/16", "fd00:1::/48"}, true},
		{nil, nil, []string{"none"}, false}, {nil, nil, []string{"241.0.0.0/16", "242.0.0.0/16"}, false},
	} {
		o := testOpts(func(o *Options) {
			o.Addresses.Allocate, o.Addresses.Allow, o.Addresses.IstioRanges = c.allocate, c.allow, c.istio
		})
		if err := o.Validate(); (err == nil) != c.ok {
			t.Errorf("allocate %q allow %q istioRanges %q: err %v, want ok=%v", c.allocate, c.allow, c.istio, err, c.ok)
		}
	}
	o := testOpts()
	if !slices.Equal(o.Addresses.Allocate, []string{DefaultAllocateRange}) || !slices.Equal(o.Addresses.Allow, []string{DefaultAllowRange}) ||
		!slices.Equal(o.Addresses.IstioRanges, []string{"240.240.0.0/16", "2001:2::/48"}) {
		t.Errorf("defaults %+v", o.Addresses)
	}
}

// TestAddressKey: output.addresses.key gives a service its address from a
// label (any source's tag, meta or label), after the registry's own address
// and before allocation, and the label is never copied onto the resources.
func TestAddressKey(t *testing.T) {
	allocated := []string(nil) // no claim: vip allocates
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
				claims, rejected := Claims(svc.Host, []Contribution{{"dc1", svc}}, opts)
				var got []string
				for _, c := range claims {
					got = append(got, c.String())
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("%s: claims %q, want %q", mode, got, tc.want)
				}
				res, more := ServiceAt(svc.Host, got, []Contribution{{"dc1", svc}}, opts)
				rejected = append(rejected, more...)
				se := res[0].Spec.(*networking.ServiceEntry)
				if !slices.Equal(se.Addresses, got) {
					t.Errorf("%s: served %q, want the addresses given, %q", mode, se.Addresses, got)
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
