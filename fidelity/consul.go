package fidelity

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	consulapi "github.com/hashicorp/consul/api"
)

// Consul reads what a mesh client should reach straight from Consul's
// catalog and health API, without the adapter's sources or conversion, so
// that a check against it tests the conversion too:
//   - every service except consul itself and Connect proxies/gateways
//     (Kind set) is a host <name>.service.consul, Consul's own DNS name;
//   - an instance is healthy when every node and service check passes
//     (Consul's aggregated status), and its address is the service address,
//     else the node's;
//   - a service port is, per Consul port name (multi-port services) or for
//     the single port, the port most instances register, ties to the
//     smallest (the rule README.md documents); each healthy instance is an
//     endpoint at its own port, its target port;
//   - the protocol is meta "protocol" (tcp when absent), enough to tell a
//     port routed by address from one routed by Host;
//   - a "consul-virtual" tagged address (transparent proxy's virtual IP) is
//     the service's address.
//
// Port names in the result are Consul's ("" for the single port), so the
// result is for DiffSidecar (which compares port numbers), not Diff.
func Consul(ctx context.Context, c *consulapi.Client) (View, error) {
	q := (&consulapi.QueryOptions{}).WithContext(ctx)
	names, _, err := c.Catalog().Services(q)
	if err != nil {
		return nil, fmt.Errorf("fidelity: Consul catalog: %w", err)
	}
	v := View{}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		if name == "consul" {
			continue
		}
		entries, _, err := c.Health().Service(name, "", false, q)
		if err != nil {
			return nil, fmt.Errorf("fidelity: Consul health of %s: %w", name, err)
		}
		if svc := consulService(name, entries); svc != nil {
			v[svc.Host] = svc
		}
	}
	return v, nil
}

func consulService(name string, entries []*consulapi.ServiceEntry) *Service {
	svc := &Service{Host: name + ".service.consul", Ports: map[string]Port{}, Endpoints: map[string]Endpoint{}}
	byName := map[string][]int{}
	protocol := map[string]string{}
	type inst struct {
		addr    string
		ports   map[string]int
		healthy bool
	}
	var insts []inst
	for _, e := range entries {
		s := e.Service
		if s == nil || s.Kind != "" {
			continue
		}
		addr := s.Address
		if addr == "" {
			addr = e.Node.Address
		}
		ports := map[string]int{}
		if len(s.Ports) > 0 {
			for _, p := range s.Ports {
				ports[p.Name] = p.Port
			}
		} else if s.Port > 0 {
			ports[""] = s.Port
		}
		for n, p := range ports {
			byName[n] = append(byName[n], p)
			if pr := s.Meta["protocol"]; pr != "" && protocol[n] == "" {
				protocol[n] = strings.ToUpper(pr)
			}
		}
		if va, ok := s.TaggedAddresses["consul-virtual"]; ok && va.Address != "" && !slices.Contains(svc.Addresses, va.Address) {
			svc.Addresses = append(svc.Addresses, va.Address)
		}
		insts = append(insts, inst{addr, ports, e.Checks.AggregatedStatus() == consulapi.HealthPassing})
	}
	if len(byName) == 0 {
		return nil
	}
	for n, ps := range byName {
		pr := protocol[n]
		if pr == "" {
			pr = "TCP"
		}
		svc.Ports[n] = Port{Number: uint32(mostCommonPort(ps)), Protocol: pr}
	}
	for _, in := range insts {
		if !in.healthy {
			continue
		}
		for n, p := range in.ports {
			svc.Endpoints[in.addr+"/"+n] = Endpoint{Address: in.addr, PortName: n, Port: uint32(p)}
		}
	}
	slices.Sort(svc.Addresses)
	return svc
}

func mostCommonPort(ps []int) int {
	counts := map[int]int{}
	for _, p := range ps {
		counts[p]++
	}
	best, n := 0, 0
	for p, c := range counts {
		if c > n || (c == n && p < best) {
			best, n = p, c
		}
	}
	return best
}
