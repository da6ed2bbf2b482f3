package fidelity

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// addressRouted says whether istiod routes a port's traffic by destination
// address alone: plain TCP and the protocols it treats as opaque TCP. HTTP
// is routed by Host and TLS by SNI on a shared 0.0.0.0_<port> listener, so
// they need no listener of their own.
func addressRouted(protocol string) bool {
	switch strings.ToUpper(protocol) {
	case "HTTP", "HTTP2", "GRPC", "GRPC-WEB", "HTTPS", "TLS":
		return false
	}
	return true
}

// outboundCluster is the name istiod gives a service port's cluster
// (pilot/pkg/model, BuildSubsetKey with no subset).
func outboundCluster(host string, port uint32) string {
	return fmt.Sprintf("outbound|%d||%s", port, host)
}

// DiffSidecar lists every way a sidecar's configuration fails to reach the
// services of want, one line each naming the host, sorted:
//   - each service port has an outbound cluster whose endpoints are exactly
//     the healthy instances at their target ports;
//   - each host is in the DNS name table, with the service's addresses when
//     want has them (else with addresses no other host has);
//   - each port routed by address (TCP) has a listener of its own on each of
//     those addresses, not only the shared 0.0.0.0_<port>;
//   - no outbound cluster of a host in the same domains as want's is left
//     over.
func DiffSidecar(want View, got SidecarView) []string {
	var out []string
	owner := map[string]string{} // address -> host, to find addresses shared by two hosts
	for _, host := range want.Hosts() {
		w := want[host]
		for _, name := range slices.Sorted(maps.Keys(w.Ports)) {
			p := w.Ports[name]
			cname := outboundCluster(host, p.Number)
			c, ok := got.Clusters[cname]
			if !ok {
				out = append(out, fmt.Sprintf("host %s port %d: no outbound cluster %s in the sidecar", host, p.Number, cname))
				continue
			}
			var eps []string
			for _, e := range w.Endpoints {
				if e.PortName == name {
					eps = append(eps, hostPort(e.Address, e.Port))
				}
			}
			slices.Sort(eps)
			for _, e := range eps {
				if !slices.Contains(c.Endpoints, e) {
					out = append(out, fmt.Sprintf("host %s port %d: healthy endpoint %s missing from cluster %s", host, p.Number, e, cname))
				}
			}
			for _, e := range c.Endpoints {
				if !slices.Contains(eps, e) {
					out = append(out, fmt.Sprintf("host %s port %d: cluster %s sends traffic to %s, which is not a healthy instance", host, p.Number, cname, e))
				}
			}
		}

		ips, inTable := got.Names[host]
		switch {
		case !inTable:
			out = append(out, fmt.Sprintf("host %s: not in the sidecar's DNS name table", host))
		case len(w.Addresses) > 0 || w.AllocatedFrom.IsValid():
			out = append(out, diffAddresses(host, "the name table resolves it to", w, ips)...)
		}
		addrs := sorted(w.Addresses)
		if len(addrs) == 0 {
			addrs = ips
		}
		for _, a := range addrs {
			if other, ok := owner[a]; ok && other != host {
				out = append(out, fmt.Sprintf("host %s: address %s is also %s's", host, a, other))
			}
			owner[a] = host
		}
		for _, name := range slices.Sorted(maps.Keys(w.Ports)) {
			p := w.Ports[name]
			if !addressRouted(p.Protocol) {
				continue
			}
			if len(addrs) == 0 {
				out = append(out, fmt.Sprintf("host %s port %d (%s): no address, so no listener of its own; the sidecar's shared 0.0.0.0_%d sends its traffic wherever istiod picks",
					host, p.Number, p.Protocol, p.Number))
				continue
			}
			for _, a := range addrs {
				lname := a + "_" + strconv.Itoa(int(p.Number))
				if _, ok := got.Listeners[lname]; !ok {
					out = append(out, fmt.Sprintf("host %s port %d (%s): no listener %s of its own in the sidecar", host, p.Number, p.Protocol, lname))
				}
			}
		}
	}
	domains := map[string]bool{}
	for host := range want {
		if _, d, ok := strings.Cut(host, "."); ok {
			domains[d] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(got.Clusters)) {
		parts := strings.Split(name, "|")
		if len(parts) != 4 || parts[0] != "outbound" || parts[2] != "" {
			continue
		}
		host := parts[3]
		_, d, _ := strings.Cut(host, ".")
		if _, ok := want[host]; !ok && domains[d] {
			out = append(out, fmt.Sprintf("host %s: extra outbound cluster %s in the sidecar", host, name))
		}
	}
	slices.Sort(out)
	return out
}

func hostPort(addr string, port uint32) string {
	return addr + ":" + strconv.Itoa(int(port))
}

func sorted(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// Summary is a one-line count of a sidecar's view, for logs.
func (v SidecarView) Summary() string {
	eps := 0
	for _, c := range v.Clusters {
		eps += len(c.Endpoints)
	}
	return fmt.Sprintf("%d clusters, %d endpoints, %d listeners, %d names", len(v.Clusters), eps, len(v.Listeners), len(v.Names))
}

// Subsets names label sets by subset name, as a DestinationRule's subsets do.
type Subsets map[string]map[string]string

// DiffSidecarEndpoints lists, one line each naming the host, sorted, every
// way a sidecar's load assignments lose per-instance data that want holds:
//   - each endpoint's locality (its LocalityLbEndpoints) and weight
//     (load_balancing_weight; istiod sends 1 for an instance without one);
//   - for each subset in subsets (a DestinationRule istiod was given), the
//     subset's cluster of every port holds exactly the endpoints whose
//     labels match, which is how labels reach a sidecar;
//   - each endpoint's service account is among the identities the cluster's
//     Istio mutual TLS verifies.
//
// A sidecar's load assignments carry no network: istiod uses it only to
// route through network gateways, which the caller checks in istiod's
// registry (Diff).
func DiffSidecarEndpoints(want View, got SidecarView, subsets Subsets) []string {
	var out []string
	for _, host := range want.Hosts() {
		w := want[host]
		for _, name := range slices.Sorted(maps.Keys(w.Ports)) {
			p := w.Ports[name]
			cname := outboundCluster(host, p.Number)
			c, ok := got.Clusters[cname]
			if !ok {
				out = append(out, fmt.Sprintf("host %s port %d: no outbound cluster %s in the sidecar", host, p.Number, cname))
				continue
			}
			sans := map[string]bool{}
			for _, s := range c.SubjectAltNames {
				sans[withoutTrustDomain(s)] = true
			}
			for _, key := range slices.Sorted(maps.Keys(w.Endpoints)) {
				e := w.Endpoints[key]
				if e.PortName != name {
					continue
				}
				hp := hostPort(e.Address, e.Port)
				d, ok := c.Details[hp]
				if !ok {
					out = append(out, fmt.Sprintf("host %s port %d: endpoint %s missing from cluster %s", host, p.Number, hp, cname))
					continue
				}
				if d.Locality != e.Locality {
					out = append(out, fmt.Sprintf("host %s port %d: endpoint %s in locality %q, want %q", host, p.Number, hp, d.Locality, e.Locality))
				}
				if wantWeight := max(e.Weight, 1); d.Weight != wantWeight {
					out = append(out, fmt.Sprintf("host %s port %d: endpoint %s load_balancing_weight %d, want %d", host, p.Number, hp, d.Weight, wantWeight))
				}
				if e.ServiceAccount != "" && !sans[e.ServiceAccount] {
					out = append(out, fmt.Sprintf("host %s port %d: endpoint %s identity %s not verified by cluster %s (it verifies %v)", host, p.Number, hp, e.ServiceAccount, cname, c.SubjectAltNames))
				}
			}
			for _, subset := range slices.Sorted(maps.Keys(subsets)) {
				sname := fmt.Sprintf("outbound|%d|%s|%s", p.Number, subset, host)
				sc, ok := got.Clusters[sname]
				if !ok {
					out = append(out, fmt.Sprintf("host %s port %d: no subset cluster %s in the sidecar", host, p.Number, sname))
					continue
				}
				var eps []string
				for _, e := range w.Endpoints {
					if e.PortName == name && matches(subsets[subset], e.Labels) {
						eps = append(eps, hostPort(e.Address, e.Port))
					}
				}
				slices.Sort(eps)
				if !slices.Equal(eps, sc.Endpoints) {
					out = append(out, fmt.Sprintf("host %s port %d: subset %s %v sends traffic to %v, want %v", host, p.Number, subset, subsets[subset], sc.Endpoints, eps))
				}
			}
		}
	}
	slices.Sort(out)
	return out
}
