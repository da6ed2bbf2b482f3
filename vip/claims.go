package vip

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Registry-given addresses are claims. Whoever can register a service (any
// Consul registrant sets its consul-virtual tagged address; any tag can
// carry output.addresses.key) writes them, and in a sidecar an address is a
// listener: a claim on a Kubernetes Service's ClusterIP, a pod IP, a
// metadata server or another service's address would take that address's
// TCP traffic. So a claim is kept only when
//
//   - the Policy accepts it: it is inside the allowed ranges, outside
//     istiod's own auto-allocation ranges and the allocation ranges (whose
//     addresses this package gives out), and never loopback, link-local,
//     unspecified, multicast or broadcast;
//   - no other current host claims it. A contested address is kept by none
//     of its claimants: an address two registrations name is ambiguous (two
//     Consul datacenters each count up from 240.0.0.1), and any winner would
//     let a registrant take another service's address by choosing its name.
//
// A host that keeps none of its claims is served its allocated addresses,
// which every host has whatever it claims, so that losing or regaining a
// claim never moves another host's allocation. Like the allocation, the
// decision is a function of the current hosts and their claims only.

// Policy decides which registry-given addresses may be served at all.
type Policy struct {
	Allow    []netip.Prefix // a claim must be inside one of these
	Istio    []netip.Prefix // istiod's own auto-allocation ranges
	Allocate []netip.Prefix // this package's allocation ranges
}

// Check returns why a cannot be served as a registry's address, or "".
func (p Policy) Check(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case !a.IsValid() || a.Zone() != "":
		return "not a plain IP address"
	case a.IsUnspecified():
		return "an unspecified address"
	case a.IsLoopback():
		return "a loopback address"
	case a.IsLinkLocalUnicast():
		return "a link-local address"
	case a.IsMulticast():
		return "a multicast address"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "the broadcast address"
	}
	for _, r := range p.Istio {
		if r.Contains(a) {
			return fmt.Sprintf("inside %s, which istiod allocates from itself", r)
		}
	}
	for _, r := range p.Allocate {
		if r.Contains(a) {
			return fmt.Sprintf("inside %s, which the adapter allocates from", r)
		}
	}
	for _, r := range p.Allow {
		if r.Contains(a) {
			return ""
		}
	}
	if len(p.Allow) == 0 {
		return "registry addresses are not allowed (output.addresses.allow: [none])"
	}
	return fmt.Sprintf("outside the allowed ranges %s (output.addresses.allow)", prefixes(p.Allow))
}

func prefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// Refusal is an address a host's registry gives it that it is not served
// with.
type Refusal struct {
	Host    string
	Address netip.Addr
	Reason  string
}

// claims holds every current host's claims and who keeps what.
type claims struct {
	byHost map[string]*hostClaims
	// claimants lists the hosts claiming each accepted address, sorted.
	claimants map[netip.Addr][]string
	// pending are refusals not yet taken.
	pending []Refusal
}

// hostClaims exists only for a host whose registry gives it an address:
// most hosts have none, and at 100k hosts a map entry each would be waste.
type hostClaims struct {
	accepted []netip.Addr // passed the policy, in the registry's order
	policy   []Refusal    // refused by the policy
	won      []netip.Addr // accepted and claimed by no other host
	refused  map[netip.Addr]bool
}

func newClaims() claims {
	return claims{byHost: map[string]*hostClaims{}, claimants: map[netip.Addr][]string{}}
}

// set records host's claims (nil: it has none, or is gone) and marks in
// affected every host whose decision may change.
func (c *claims) set(host string, raw []netip.Addr, p Policy, affected map[string]bool) {
	var accepted []netip.Addr
	var refused []Refusal
	for _, a := range raw {
		a = a.Unmap()
		if slices.Contains(accepted, a) || slices.ContainsFunc(refused, func(r Refusal) bool { return r.Address == a }) {
			continue
		}
		if why := p.Check(a); why != "" {
			refused = append(refused, Refusal{Host: host, Address: a, Reason: fmt.Sprintf("address %s is %s", a, why)})
			continue
		}
		accepted = append(accepted, a)
	}
	hc := c.byHost[host]
	if hc == nil {
		if len(accepted) == 0 && len(refused) == 0 {
			return
		}
		hc = &hostClaims{}
		c.byHost[host] = hc
	}
	if !slices.Equal(hc.accepted, accepted) {
		for _, a := range hc.accepted {
			c.claimants[a] = slices.DeleteFunc(c.claimants[a], func(h string) bool { return h == host })
			c.mark(a, affected)
			if len(c.claimants[a]) == 0 {
				delete(c.claimants, a)
			}
		}
		for _, a := range accepted {
			hs := c.claimants[a]
			i, _ := slices.BinarySearch(hs, host)
			c.claimants[a] = slices.Insert(hs, i, host)
			c.mark(a, affected)
		}
	}
	hc.accepted, hc.policy = accepted, refused
	affected[host] = true
}

func (c *claims) mark(a netip.Addr, affected map[string]bool) {
	for _, h := range c.claimants[a] {
		affected[h] = true
	}
}

// decide settles what each affected host keeps, queues the refusals that
// are new, and returns the hosts whose kept addresses changed.
func (c *claims) decide(affected map[string]bool, present map[string]bool) map[string]bool {
	moved := map[string]bool{}
	hosts := make([]string, 0, len(affected))
	for h := range affected {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts) // refusals come out in a stable order
	for _, h := range hosts {
		hc := c.byHost[h]
		if hc == nil {
			continue
		}
		if !present[h] {
			delete(c.byHost, h)
			continue
		}
		var won []netip.Addr
		now := slices.Clone(hc.policy)
		for _, a := range hc.accepted {
			others := c.claimants[a]
			if len(others) == 1 {
				won = append(won, a)
				continue
			}
			other := others[0]
			if other == h {
				other = others[1]
			}
			now = append(now, Refusal{Host: h, Address: a, Reason: fmt.Sprintf(
				"address %s is claimed by %d hosts (%s too); none of them keeps it", a, len(others), other)})
		}
		if !slices.Equal(won, hc.won) {
			moved[h] = true
			hc.won = won
		}
		refused := make(map[netip.Addr]bool, len(now))
		for _, r := range now {
			refused[r.Address] = true
			if !hc.refused[r.Address] {
				c.pending = append(c.pending, r)
			}
		}
		hc.refused = refused
		if len(hc.accepted) == 0 && len(hc.policy) == 0 {
			delete(c.byHost, h)
		}
	}
	return moved
}

func (c *claims) takeRefusals() []Refusal {
	out := c.pending
	c.pending = nil
	return out
}

// holds reports whether host keeps any claim.
func (c *claims) holds(host string) bool {
	hc := c.byHost[host]
	return hc != nil && len(hc.won) > 0
}

func (c *claims) won(host string) []netip.Addr {
	if hc := c.byHost[host]; hc != nil {
		return hc.won
	}
	return nil
}
