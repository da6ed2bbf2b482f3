package vip

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func defaultConfig() Config {
	return Config{
		Allocate: []netip.Prefix{defaultRange},
		Allow:    []netip.Prefix{netip.MustParsePrefix("240.0.0.0/4")},
		Istio:    DefaultIstioRanges,
	}
}

func newWith(t *testing.T, cfg Config) *Allocator {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestPolicy: a registry's address is served only inside the allowed
// ranges, never inside istiod's or the allocator's own ranges, and never a
// loopback, link-local, unspecified, multicast or broadcast address, even
// when the operator allows everything.
func TestPolicy(t *testing.T) {
	def := newWith(t, defaultConfig()).Policy()
	open := defaultConfig()
	open.Allow = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	all := newWith(t, open).Policy()
	none := Policy{Istio: DefaultIstioRanges}
	cases := []struct {
		addr      string
		def, open string // "" accepted, else a word of the reason
	}{
		{"240.0.0.5", "", ""},          // Consul's own virtual addresses
		{"247.255.255.254", "", ""},    // the top of the allowed block below the allocator's
		{"10.96.0.1", "outside", ""},   // a Kubernetes Service's ClusterIP
		{"192.168.7.7", "outside", ""}, // a pod IP
		{"::ffff:10.96.0.1", "outside", ""},
		{"2001:db8::1", "outside", ""},
		{"169.254.169.254", "link-local", "link-local"}, // the metadata server
		{"127.0.0.1", "loopback", "loopback"},
		{"::1", "loopback", "loopback"},
		{"0.0.0.0", "unspecified", "unspecified"},
		{"::", "unspecified", "unspecified"},
		{"fe80::1", "link-local", "link-local"},
		{"224.0.0.251", "multicast", "multicast"},
		{"255.255.255.255", "broadcast", "broadcast"},
		{"240.240.0.9", "istiod", "istiod"}, // istiod's auto-allocation range
		{"2001:2::9", "istiod", "istiod"},
		{"248.1.2.3", "adapter allocates", "adapter allocates"}, // another host's allocated address
	}
	for _, c := range cases {
		a := netip.MustParseAddr(c.addr)
		for _, p := range []struct {
			name   string
			policy Policy
			want   string
		}{{"default", def, c.def}, {"allow everything", all, c.open}} {
			got := p.policy.Check(a)
			if (got == "") != (p.want == "") || !strings.Contains(got, p.want) {
				t.Errorf("%s: %s: %q, want %q", p.name, c.addr, got, p.want)
			}
		}
		if none.Check(a) == "" {
			t.Errorf("allow none: %s accepted", c.addr)
		}
	}
	// A configured istiod range is excluded instead of the default one.
	moved := defaultConfig()
	moved.Istio = []netip.Prefix{netip.MustParsePrefix("241.0.0.0/16")}
	p := newWith(t, moved).Policy()
	if why := p.Check(netip.MustParseAddr("241.0.3.4")); !strings.Contains(why, "istiod") {
		t.Errorf("241.0.3.4 inside the configured istiod range: %q", why)
	}
	if why := p.Check(netip.MustParseAddr("240.240.0.9")); why != "" {
		t.Errorf("240.240.0.9 outside the configured istiod range: %q", why)
	}
	for _, bad := range []Config{
		{Istio: []netip.Prefix{netip.MustParsePrefix("240.240.0.0/16"), netip.MustParsePrefix("241.0.0.0/16")}},
		{Istio: []netip.Prefix{netip.MustParsePrefix("240.240.0.1/16")}},
		{Allow: []netip.Prefix{netip.MustParsePrefix("240.0.0.1/4")}},
		{Allocate: []netip.Prefix{netip.MustParsePrefix("241.0.0.0/12")}, Istio: []netip.Prefix{netip.MustParsePrefix("241.0.0.0/16")}},
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// claimed is a registry state: host -> the addresses its registry gives.
type claimed map[string][]string

func (c claimed) lookup(h string) (bool, []netip.Addr) {
	addrs, ok := c[h]
	if !ok {
		return false, nil
	}
	out := make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		out[i] = netip.MustParseAddr(a)
	}
	return true, out
}

func (c claimed) hosts() []string {
	out := make([]string, 0, len(c))
	for h := range c {
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}

// TestClaims: the attacks of a registrant that sets its own address. A
// claim on a cluster address is refused; a claim on another service's
// address makes the address nobody's (both are served their allocated
// ones), and the victim gets it back when the copy goes; every refusal is
// reported once while it lasts; hosts that claim nothing never move; and
// the outcome is the same whatever order the hosts came in.
func TestClaims(t *testing.T) {
	a := newWith(t, defaultConfig())
	state := claimed{
		"web.service.consul":  {"240.0.0.5"},
		"api.service.consul":  nil,
		"evil.service.consul": {"10.96.0.1"},
	}
	hosts, refused := a.SyncClaims(state.hosts(), state.lookup)
	if len(hosts) != 3 {
		t.Fatalf("hosts to convert %v", hosts)
	}
	if got := a.Addresses("web.service.consul"); !slices.Equal(got, []string{"240.0.0.5"}) {
		t.Errorf("web: %v, want its own 240.0.0.5", got)
	}
	api := a.Addresses("api.service.consul")
	evil := a.Addresses("evil.service.consul")
	if len(evil) != 1 || !defaultRange.Contains(netip.MustParseAddr(evil[0])) {
		t.Errorf("evil: %v, want an allocated address instead of 10.96.0.1", evil)
	}
	if len(refused) != 1 || refused[0].Host != "evil.service.consul" || refused[0].Address.String() != "10.96.0.1" ||
		!strings.Contains(refused[0].Reason, "outside") {
		t.Errorf("refusals %+v, want evil's 10.96.0.1", refused)
	}
	// Changed again (a new instance), the same refusal is not reported twice.
	if _, refused := a.SyncClaims([]string{"evil.service.consul"}, state.lookup); len(refused) != 0 {
		t.Errorf("reported again: %+v", refused)
	}

	// A copy of web's address: neither keeps it, and web, which did not
	// change, is converted again.
	state["copy.service.consul"] = []string{"240.0.0.5"}
	hosts, refused = a.SyncClaims([]string{"copy.service.consul"}, state.lookup)
	if !slices.Equal(hosts, []string{"copy.service.consul", "web.service.consul"}) {
		t.Errorf("hosts to convert %v, want the copy and web", hosts)
	}
	for _, h := range []string{"web.service.consul", "copy.service.consul"} {
		got := a.Addresses(h)
		if len(got) != 1 || !defaultRange.Contains(netip.MustParseAddr(got[0])) {
			t.Errorf("%s: %v, want its allocated address", h, got)
		}
	}
	if len(refused) != 2 || refused[0].Host != "copy.service.consul" || refused[1].Host != "web.service.consul" ||
		!strings.Contains(refused[0].Reason, "web.service.consul too") || !strings.Contains(refused[1].Reason, "copy.service.consul too") {
		t.Errorf("refusals %+v, want one for each claimant naming the other", refused)
	}
	if got := a.Addresses("api.service.consul"); !slices.Equal(got, api) {
		t.Errorf("api, which claims nothing, moved from %v to %v", api, got)
	}
	// A third claimant: the two already refused are not reported again.
	state["copy2.service.consul"] = []string{"240.0.0.5", "240.0.0.6"}
	_, refused = a.SyncClaims([]string{"copy2.service.consul"}, state.lookup)
	if len(refused) != 1 || refused[0].Host != "copy2.service.consul" {
		t.Errorf("refusals %+v, want only the newcomer's", refused)
	}
	if got := a.Addresses("copy2.service.consul"); !slices.Equal(got, []string{"240.0.0.6"}) {
		t.Errorf("copy2: %v, want the address it alone claims", got)
	}
	// Deterministic: a fresh allocator, hosts in another order and batches.
	b := newWith(t, defaultConfig())
	all := state.hosts()
	slices.Reverse(all)
	for _, h := range all {
		b.SyncClaims([]string{h}, state.lookup)
	}
	for _, h := range all {
		if x, y := a.Addresses(h), b.Addresses(h); !slices.Equal(x, y) {
			t.Errorf("%s: %v incrementally, %v from scratch", h, x, y)
		}
	}

	// The copies go: web has its address back, and is converted again.
	delete(state, "copy.service.consul")
	delete(state, "copy2.service.consul")
	hosts, refused = a.SyncClaims([]string{"copy.service.consul", "copy2.service.consul"}, state.lookup)
	if !slices.Contains(hosts, "web.service.consul") || len(refused) != 0 {
		t.Errorf("hosts %v, refusals %+v", hosts, refused)
	}
	if got := a.Addresses("web.service.consul"); !slices.Equal(got, []string{"240.0.0.5"}) {
		t.Errorf("web: %v, want 240.0.0.5 back", got)
	}
	if got := a.Addresses("copy.service.consul"); got != nil {
		t.Errorf("a gone host has %v", got)
	}
	// A copy again: refused again (a refusal is reported for as long as it lasts, once).
	state["copy.service.consul"] = []string{"240.0.0.5"}
	if _, refused = a.SyncClaims([]string{"copy.service.consul"}, state.lookup); len(refused) != 2 {
		t.Errorf("refusals %+v, want both again", refused)
	}
	// No allocation ranges: a refused host has no address, a kept claim stays.
	c := defaultConfig()
	c.Allocate = nil
	n := newWith(t, c)
	n.SyncClaims(state.hosts(), state.lookup)
	if got := n.Addresses("evil.service.consul"); got != nil {
		t.Errorf("evil without allocation: %v", got)
	}
	if got := n.Addresses("copy2.service.consul"); got != nil {
		t.Errorf("gone host: %v", got)
	}
}
