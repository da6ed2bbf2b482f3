// Package vip decides every service host's addresses: the ones its registry
// gives it, when they pass the checks of claims.go, or else a virtual
// address allocated to it, so that each service's name resolves (a sidecar's
// DNS name table) and each TCP port gets a listener of its own. istiod does
// not do this for config-source ServiceEntries: since 1.25 its VIPs come
// from a controller that writes status.addresses through the Kubernetes API,
// and entries from an xds:// source have no status.
//
// The allocation is a function of the set of hosts only, so every replica and
// every restart that sees the same hosts gives the same addresses:
//
//   - A host's primary slot is a hash of its name into the range. A host that
//     is the only one with its primary slot gets it, and keeps it whatever
//     other hosts come and go, unless a newcomer hashes to the same slot.
//   - Hosts that share a primary slot are ordered by name: the first takes
//     the slot, the others probe further hashes of their name, skipping every
//     slot that is some current host's primary and every slot an earlier
//     prober took. So no two hosts ever get one address.
//
// The residual: only a host that shares its primary slot with another
// current host (before or after a change) can see its address move when
// another host comes or goes. With the default range (2^26 addresses) that
// is about n/2^26 of the hosts: 0.15% at 100,000 hosts (measured in
// vip_test.go).
//
// Registry-given addresses (claims) are decided here too, because only a
// view of every host can keep one address from serving two hosts: see
// claims.go.
//
// The package imports nothing of the adapter's; the adapter's pipeline calls
// SyncClaims with the hosts it is about to convert and what their registries
// claim, and passes Addresses to convert as input.
package vip

import (
	"encoding/binary"
	"fmt"
	"math/big"
	"net/netip"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// DefaultIstioRanges are the ranges istiod itself allocates from unless
// configured otherwise (PILOT_IP_AUTOALLOCATE_IPV4_PREFIX and
// PILOT_IP_AUTOALLOCATE_IPV6_PREFIX, pilot/pkg/features/pilot.go): no
// address of theirs is allocated here or accepted from a registry.
var DefaultIstioRanges = []netip.Prefix{netip.MustParsePrefix("240.240.0.0/16"), netip.MustParsePrefix("2001:2::/48")}

// Config is what an Allocator allocates from and what it accepts.
type Config struct {
	// Allocate are the ranges addresses are allocated from, at most one
	// IPv4 and one IPv6; none allocates nothing.
	Allocate []netip.Prefix
	// Allow are the ranges a registry-given address must be in to be kept;
	// none refuses every one.
	Allow []netip.Prefix
	// Istio are the ranges istiod allocates from itself (at most one IPv4
	// and one IPv6, like its two settings).
	Istio []netip.Prefix
}

// Allocator gives each host the addresses its registry claims, when they
// pass the policy and no other host claims them, or else one address from
// each of its ranges. It is not safe for concurrent use: the pipeline calls
// SyncClaims, then reads Addresses from its conversion workers, which is
// safe as long as no SyncClaims runs.
type Allocator struct {
	pools  []*pool
	policy Policy
	hosts  map[string]bool
	claims
}

// New returns an allocator for cfg.
func New(cfg Config) (*Allocator, error) {
	if err := onePerFamily("istio", cfg.Istio); err != nil {
		return nil, err
	}
	for _, r := range cfg.Allow {
		if !r.IsValid() || r.Masked() != r {
			return nil, fmt.Errorf("%s: not a network prefix (the address must have no bits past the prefix length)", r)
		}
	}
	a := &Allocator{hosts: map[string]bool{}, claims: newClaims()}
	for _, r := range cfg.Allocate {
		if err := CheckRange(r, cfg.Istio); err != nil {
			return nil, err
		}
		a.pools = append(a.pools, newPool(r))
	}
	if err := onePerFamily("allocation", cfg.Allocate); err != nil {
		return nil, err
	}
	a.policy = cfg.Policy()
	return a, nil
}

// Policy is the check a registry-given address passes under cfg.
func (cfg Config) Policy() Policy {
	return Policy{Allow: cfg.Allow, Istio: cfg.Istio, Allocate: cfg.Allocate}
}

func onePerFamily(what string, rs []netip.Prefix) error {
	seen := map[bool]bool{}
	for _, r := range rs {
		if !r.IsValid() || r.Masked() != r {
			return fmt.Errorf("%s: not a network prefix (the address must have no bits past the prefix length)", r)
		}
		if seen[r.Addr().Is4()] {
			return fmt.Errorf("%s: at most one IPv4 and one IPv6 %s range", r, what)
		}
		seen[r.Addr().Is4()] = true
	}
	return nil
}

// CheckRange reports why r cannot be an allocation range next to istiod's
// own ranges istio.
func CheckRange(r netip.Prefix, istio []netip.Prefix) error {
	if !r.IsValid() || r.Masked() != r {
		return fmt.Errorf("%s: not a network prefix (the address must have no bits past the prefix length)", r)
	}
	if free := r.Addr().BitLen() - r.Bits(); free < 8 {
		return fmt.Errorf("%s: too small; a range needs at least 256 addresses", r)
	}
	for _, ir := range istio {
		if r.Overlaps(ir) {
			return fmt.Errorf("%s overlaps %s, which istiod allocates from", r, ir)
		}
	}
	return nil
}

// Policy returns the policy registry-given addresses are checked by.
func (a *Allocator) Policy() Policy { return a.policy }

// Enabled reports whether the allocator has any range to allocate from.
func (a *Allocator) Enabled() bool { return a != nil && len(a.pools) > 0 }

// Sync is SyncClaims for hosts whose registries claim no address; present
// reports whether a host is still there.
func (a *Allocator) Sync(dirty []string, present func(string) bool) []string {
	out, _ := a.SyncClaims(dirty, func(h string) (bool, []netip.Addr) { return present(h), nil })
	return out
}

// SyncClaims brings the addresses up to date after the hosts in dirty
// changed; lookup reports whether a host is still there and the addresses
// its registry gives it. It returns dirty plus every other host whose
// addresses moved, sorted, so that the caller converts those too, and the
// refusals that are new since the last call (each is reported once, for as
// long as it lasts).
func (a *Allocator) SyncClaims(dirty []string, lookup func(string) (present bool, claims []netip.Addr)) ([]string, []Refusal) {
	if a == nil {
		return dirty, nil
	}
	var added, removed []string
	affected := map[string]bool{}
	for _, h := range dirty {
		p, raw := lookup(h)
		switch had := a.hosts[h]; {
		case p && !had:
			a.hosts[h] = true
			added = append(added, h)
		case !p && had:
			delete(a.hosts, h)
			removed = append(removed, h)
		}
		if !p {
			raw = nil
		}
		a.claims.set(h, raw, a.policy, affected)
	}
	moved := a.claims.decide(affected, a.hosts)
	refusals := a.claims.takeRefusals()
	if len(added) > 0 || len(removed) > 0 {
		for _, p := range a.pools {
			for _, h := range p.update(added, removed) {
				if !a.claims.holds(h) { // its own addresses did not move
					moved[h] = true
				}
			}
		}
	}
	if len(moved) == 0 {
		return dirty, refusals
	}
	out := slices.Clone(dirty)
	for _, h := range dirty {
		delete(moved, h)
	}
	for h := range moved {
		out = append(out, h)
	}
	slices.Sort(out)
	return out, refusals
}

// Addresses returns host's addresses: the ones its registry gives it that
// it keeps, or else one per allocation range; nil for none.
func (a *Allocator) Addresses(host string) []string {
	if a == nil || !a.hosts[host] {
		return nil
	}
	if won := a.claims.won(host); len(won) > 0 {
		out := make([]string, len(won))
		for i, w := range won {
			out[i] = w.String()
		}
		return out
	}
	if !a.Enabled() {
		return nil
	}
	out := make([]string, 0, len(a.pools))
	for _, p := range a.pools {
		if s := p.slotOf(host); s != 0 {
			out = append(out, p.addr(s).String())
		}
	}
	return out
}

// maxProbes bounds the search for a free slot; with a range at most half
// full, the chance that 64 probes all hit taken slots is below 2^-64.
const maxProbes = 64

// pool allocates within one range. Slots are offsets into the range, from 1
// to size-2: the first and last address of a range are left out (network
// and broadcast addresses to some stacks).
type pool struct {
	prefix netip.Prefix
	size   uint64 // usable slots; the range may be larger than 2^64, then 2^64-2
	// primary maps a slot to the current hosts whose first hash lands there,
	// sorted by name; the first one holds it.
	primary map[uint64][]string
	// probed holds the slots of the hosts that lost their primary slot, a
	// function of the losers and the primary map, recomputed on each change.
	probed map[string]uint64
}

func newPool(r netip.Prefix) *pool {
	free := r.Addr().BitLen() - r.Bits()
	size := ^uint64(0) - 1
	if free < 64 {
		size = uint64(1)<<free - 2
	}
	return &pool{prefix: r, size: size, primary: map[uint64][]string{}, probed: map[string]uint64{}}
}

// slot is the i-th hash of host into the pool.
func (p *pool) slot(host string, i uint64) uint64 {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], i)
	d := xxhash.New()
	_, _ = d.Write(b[:])
	_, _ = d.WriteString(host)
	return 1 + d.Sum64()%p.size
}

func (p *pool) slotOf(host string) uint64 {
	if s, ok := p.probed[host]; ok {
		return s
	}
	return p.slot(host, 0)
}

func (p *pool) addr(slot uint64) netip.Addr {
	base := new(big.Int).SetBytes(p.prefix.Addr().AsSlice())
	base.Add(base, new(big.Int).SetUint64(slot))
	b := base.FillBytes(make([]byte, p.prefix.Addr().BitLen()/8))
	a, _ := netip.AddrFromSlice(b)
	return a
}

// update applies the added and removed hosts and returns the hosts, other
// than those, whose slot changed.
func (p *pool) update(added, removed []string) []string {
	for _, h := range removed {
		s := p.slot(h, 0)
		rest := slices.DeleteFunc(p.primary[s], func(x string) bool { return x == h })
		if len(rest) == 0 {
			delete(p.primary, s)
		} else {
			p.primary[s] = rest
		}
	}
	for _, h := range added {
		s := p.slot(h, 0)
		hs := append(p.primary[s], h)
		slices.Sort(hs)
		p.primary[s] = hs
	}
	// Only hosts in a contested slot can move, and contested slots are rare:
	// the losers are found from the slots of this change and of the last
	// round of probing, not from every host.
	before := make(map[string]uint64, len(p.probed))
	for h, s := range p.probed {
		before[h] = s
	}
	var losers []string
	seen := map[string]bool{}
	consider := func(s uint64) {
		hs := p.primary[s]
		for _, h := range hs[min(1, len(hs)):] {
			if !seen[h] {
				seen[h] = true
				losers = append(losers, h)
			}
		}
	}
	for h := range before {
		consider(p.slot(h, 0))
	}
	for _, h := range added {
		consider(p.slot(h, 0))
	}
	slices.Sort(losers)
	p.probed = make(map[string]uint64, len(losers))
	taken := map[uint64]bool{}
	for _, h := range losers {
		// A full range leaves the host without an address (slot 0) rather
		// than give it one that is taken.
		p.probed[h] = 0
		for i := uint64(1); i <= maxProbes; i++ {
			s := p.slot(h, i)
			if _, isPrimary := p.primary[s]; isPrimary || taken[s] {
				continue
			}
			taken[s] = true
			p.probed[h] = s
			break
		}
	}
	var moved []string
	changed := func(h string) {
		if slices.Contains(added, h) || slices.Contains(removed, h) {
			return
		}
		moved = append(moved, h)
	}
	for h, s := range before {
		if now, ok := p.probed[h]; ok {
			if now != s {
				changed(h)
			}
		} else if p.holds(h) && p.slot(h, 0) != s {
			changed(h)
		}
	}
	for h := range p.probed {
		if _, was := before[h]; !was && p.holds(h) {
			changed(h) // it held its primary slot until a newcomer took it
		}
	}
	return moved
}

// holds reports whether h is a current host of the pool.
func (p *pool) holds(h string) bool {
	return slices.Contains(p.primary[p.slot(h, 0)], h)
}
