package vip

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

var defaultRange = netip.MustParsePrefix("248.0.0.0/6")

func hostsN(n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d.service.consul", prefix, i)
	}
	return out
}

type set map[string]bool

func (s set) has(h string) bool { return s[h] }

func newAlloc(t *testing.T, ranges ...netip.Prefix) *Allocator {
	t.Helper()
	a, err := New(Config{Allocate: ranges, Istio: DefaultIstioRanges})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func snapshot(a *Allocator, hosts []string) map[string]string {
	out := make(map[string]string, len(hosts))
	for _, h := range hosts {
		addrs := a.Addresses(h)
		if len(addrs) > 0 {
			out[h] = addrs[0]
		}
	}
	return out
}

// TestAllocation100k shows the three properties at 100,000 hosts:
// deterministic (another allocator, fed the same hosts in another order and
// in other batches, agrees), unique (no two hosts share an address, all in
// the range), and stable (after 1,000 hosts leave and 1,000 come, only hosts
// that share a primary slot with another host moved, and Sync named every
// one that did).
func TestAllocation100k(t *testing.T) {
	const n = 100_000
	hosts := hostsN(n, "svc")
	present := set{}
	for _, h := range hosts {
		present[h] = true
	}
	a := newAlloc(t, defaultRange)
	a.Sync(hosts, present.has)
	first := snapshot(a, hosts)

	// Unique and in range.
	owner := make(map[string]string, n)
	for h, addr := range first {
		ip := netip.MustParseAddr(addr)
		if !defaultRange.Contains(ip) || ip == defaultRange.Addr() {
			t.Fatalf("%s got %s, outside %s", h, addr, defaultRange)
		}
		if o, dup := owner[addr]; dup {
			t.Fatalf("%s and %s share %s", h, o, addr)
		}
		owner[addr] = h
	}
	if len(first) != n {
		t.Fatalf("%d hosts have an address, want %d", len(first), n)
	}

	// Deterministic: a second allocator, another order, batches of 1,000.
	shuffled := slices.Clone(hosts)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	b := newAlloc(t, defaultRange)
	for i := 0; i < n; i += 1000 {
		b.Sync(shuffled[i:i+1000], present.has)
	}
	for h, addr := range snapshot(b, hosts) {
		if first[h] != addr {
			t.Fatalf("%s: %s in one allocator, %s in another", h, first[h], addr)
		}
	}

	contested := func(al *Allocator) set {
		out := set{}
		for _, hs := range al.pools[0].primary {
			if len(hs) > 1 {
				for _, h := range hs {
					out[h] = true
				}
			}
		}
		return out
	}
	before := contested(a)

	// Stable: 1,000 leave, 1,000 come.
	rng := rand.New(rand.NewPCG(3, 4))
	var change []string
	gone := set{}
	for len(gone) < 1000 {
		h := hosts[rng.IntN(n)]
		if !gone[h] {
			gone[h] = true
			delete(present, h)
			change = append(change, h)
		}
	}
	newcomers := hostsN(1000, "new")
	for _, h := range newcomers {
		present[h] = true
	}
	change = append(change, newcomers...)
	synced := a.Sync(change, present.has)
	after := contested(a)
	reported := set{}
	for _, h := range synced {
		reported[h] = true
	}
	moved := 0
	for _, h := range hosts {
		if gone[h] {
			continue
		}
		now := a.Addresses(h)[0]
		if now == first[h] {
			continue
		}
		moved++
		if !before[h] && !after[h] {
			t.Errorf("%s moved from %s to %s without sharing its primary slot", h, first[h], now)
		}
		if !reported[h] {
			t.Errorf("%s moved but Sync did not return it", h)
		}
	}
	// After the churn the allocation is still what a fresh allocator gives.
	final := slices.DeleteFunc(append(slices.Clone(hosts), newcomers...), func(h string) bool { return gone[h] })
	c := newAlloc(t, defaultRange)
	c.Sync(final, present.has)
	want := snapshot(c, final)
	got := snapshot(a, final)
	seen := map[string]string{}
	for _, h := range final {
		if got[h] != want[h] {
			t.Fatalf("%s: %s after churn, %s from scratch", h, got[h], want[h])
		}
		if o, dup := seen[got[h]]; dup {
			t.Fatalf("%s and %s share %s after churn", h, o, got[h])
		}
		seen[got[h]] = h
	}
	t.Logf("100k hosts in %s: %d share a primary slot before the churn (%.3f%%), %d after; %d of the 99,000 staying hosts moved",
		defaultRange, len(before), 100*float64(len(before))/n, len(after), moved)
}

func TestContestedSlots(t *testing.T) {
	// A /24 makes collisions common: 200 hosts in 254 slots.
	r := netip.MustParsePrefix("10.99.0.0/24")
	hosts := hostsN(200, "h")
	present := set{}
	for _, h := range hosts {
		present[h] = true
	}
	a := newAlloc(t, r)
	a.Sync(hosts, present.has)
	seen := map[string]string{}
	for _, h := range hosts {
		addrs := a.Addresses(h)
		if len(addrs) != 1 {
			t.Fatalf("%s: %v", h, addrs)
		}
		if o, dup := seen[addrs[0]]; dup {
			t.Fatalf("%s and %s share %s", h, o, addrs[0])
		}
		seen[addrs[0]] = h
	}
	// Removing every host one by one keeps the allocation equal to a fresh one.
	for i, h := range hosts[:100] {
		delete(present, h)
		a.Sync([]string{h}, present.has)
		if i%25 == 0 {
			b := newAlloc(t, r)
			b.Sync(hosts, present.has)
			for _, k := range hosts[i+1:] {
				if x, y := a.Addresses(k), b.Addresses(k); !slices.Equal(x, y) {
					t.Fatalf("after removing %d hosts, %s: %v incrementally, %v from scratch", i+1, k, x, y)
				}
			}
		}
	}
}

func TestDualStackAndRanges(t *testing.T) {
	a := newAlloc(t, defaultRange, netip.MustParsePrefix("fd00:5ad::/64"))
	present := set{"web.service.consul": true}
	a.Sync([]string{"web.service.consul"}, present.has)
	addrs := a.Addresses("web.service.consul")
	if len(addrs) != 2 || !netip.MustParseAddr(addrs[0]).Is4() || !netip.MustParseAddr(addrs[1]).Is6() {
		t.Errorf("addresses %v", addrs)
	}
	if got := a.Addresses("other"); got != nil {
		t.Errorf("an unknown host got %v", got)
	}
	for _, bad := range []string{"240.240.0.0/12", "240.240.1.0/24", "2001:2::/64", "10.0.0.1/8", "10.0.0.0/30"} {
		if _, err := New(Config{Allocate: []netip.Prefix{netip.MustParsePrefix(bad)}, Istio: DefaultIstioRanges}); err == nil {
			t.Errorf("range %s accepted", bad)
		}
	}
	if _, err := New(Config{Allocate: []netip.Prefix{defaultRange, netip.MustParsePrefix("10.0.0.0/8")}}); err == nil {
		t.Error("two IPv4 ranges accepted")
	}
	var none *Allocator
	if none.Enabled() || none.Addresses("x") != nil {
		t.Error("a nil allocator allocates")
	}
}
