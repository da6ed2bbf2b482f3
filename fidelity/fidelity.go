// Package fidelity compares what the registries hold with what istiod
// received, host by host: ports, endpoint addresses, target ports and labels.
// istiod never reports a resource it dropped, so reading its own debug API is
// the only way to know that what the adapter meant is what the mesh uses.
package fidelity

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/registry-adapter/registry-adapter/served"
)

// Service is one host as seen by either side.
type Service struct {
	Host      string
	Namespace string
	// Location is MESH_INTERNAL or MESH_EXTERNAL ("" is MESH_INTERNAL).
	Location string
	// ExportTo is the namespaces the service is visible to, sorted; nil
	// when unset (every namespace).
	ExportTo []string
	// Addresses are the service's own addresses (VIPs), sorted, when the
	// side that describes it knows them; the registry-side check compares
	// them with the sidecar's name table.
	Addresses []string
	// AllocatedFrom, in an expectation without Addresses, says the service
	// has one address the adapter allocated from this range: its value is
	// a hash of the host, which an expectation written by hand cannot know.
	AllocatedFrom netip.Prefix
	Ports         map[string]Port     // by port name
	Endpoints     map[string]Endpoint // by "address/portName"
}

// Istio's names of a ServiceEntry's location.
const (
	MeshInternal = "MESH_INTERNAL"
	MeshExternal = "MESH_EXTERNAL"
)

// Port is a service port.
type Port struct {
	Number   uint32
	Protocol string
}

// Endpoint is one address serving one port of a service.
type Endpoint struct {
	Address  string
	PortName string
	Port     uint32 // the port the workload listens on
	Labels   map[string]string
	Locality string
	Weight   uint32
	Network  string
	// ServiceAccount is the workload identity istiod derived, without its
	// trust domain: "ns/<namespace>/sa/<name>" (istiod holds
	// spiffe://<trust domain>/ns/<namespace>/sa/<name>).
	ServiceAccount string
}

// View is a set of services by host.
type View map[string]*Service

// Expected derives what istiod should hold from the adapter's resources.
func Expected(resources []*served.Resource) View {
	v := View{}
	type selected struct {
		ns     string
		labels map[string]string
		svc    *Service
		ports  []*networking.ServicePort
	}
	var selectors []selected
	for _, r := range resources {
		se, ok := r.Spec.(*networking.ServiceEntry)
		if !ok {
			continue
		}
		for _, host := range se.Hosts {
			svc := &Service{Host: host, Namespace: r.Namespace, Location: se.Location.String(), ExportTo: sorted(se.ExportTo),
				Addresses: sorted(se.Addresses), Ports: map[string]Port{}, Endpoints: map[string]Endpoint{}}
			for _, p := range se.Ports {
				svc.Ports[p.Name] = Port{Number: p.Number, Protocol: p.Protocol}
			}
			for _, ep := range se.Endpoints {
				addEndpoints(svc, se.Ports, ep, ep.Labels)
			}
			if se.WorkloadSelector != nil {
				selectors = append(selectors, selected{r.Namespace, se.WorkloadSelector.Labels, svc, se.Ports})
			}
			v[host] = svc
		}
	}
	for _, r := range resources {
		we, ok := r.Spec.(*networking.WorkloadEntry)
		if !ok {
			continue
		}
		// istiod merges metadata labels over the spec's.
		labels := maps.Clone(we.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		maps.Copy(labels, r.Labels)
		for _, s := range selectors {
			if s.ns == r.Namespace && matches(s.labels, labels) {
				addEndpoints(s.svc, s.ports, we, labels)
			}
		}
	}
	return v
}

// identity is the service account as Endpoint holds it.
func identity(namespace, serviceAccount string) string {
	if serviceAccount == "" {
		return ""
	}
	return "ns/" + namespace + "/sa/" + serviceAccount
}

// withoutTrustDomain turns istiod's spiffe://<trust domain>/ns/x/sa/y into
// ns/x/sa/y.
func withoutTrustDomain(spiffe string) string {
	rest, ok := strings.CutPrefix(spiffe, "spiffe://")
	if !ok {
		return spiffe
	}
	if _, path, ok := strings.Cut(rest, "/"); ok {
		return path
	}
	return spiffe
}

func matches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func addEndpoints(svc *Service, ports []*networking.ServicePort, we *networking.WorkloadEntry, labels map[string]string) {
	for _, p := range ports {
		target := p.Number
		if t, ok := we.Ports[p.Name]; ok {
			target = t
		}
		svc.Endpoints[we.Address+"/"+p.Name] = Endpoint{
			Address: we.Address, PortName: p.Name, Port: target, Labels: labels,
			Locality: we.Locality, Weight: we.Weight, Network: we.Network, ServiceAccount: identity(svc.Namespace, we.ServiceAccount),
		}
	}
}

// Istiod reads istiod's view of the hosts managed by the adapter from its
// debug API (the --httpAddr listener).
func Istiod(ctx context.Context, client *http.Client, baseURL string) (View, error) {
	var services []struct {
		Hostname       string `json:"hostname"`
		DefaultAddress string `json:"defaultAddress"`
		MeshExternal   bool
		Attributes     struct {
			Namespace string
			Labels    map[string]string
			ExportTo  map[string]struct{} // a set
		}
		Ports []struct {
			Name     string `json:"name"`
			Port     uint32 `json:"port"`
			Protocol string `json:"protocol"`
		} `json:"ports"`
	}
	if err := getJSON(ctx, client, baseURL+"/debug/registryz", &services); err != nil {
		return nil, err
	}
	var shards map[string]map[string]struct {
		Shards map[string][]struct {
			Labels          map[string]string
			Addresses       []string
			ServicePortName string
			EndpointPort    uint32
			LbWeight        uint32
			Locality        struct{ Label string }
			Network         string
			ServiceAccount  string
		}
	}
	if err := getJSON(ctx, client, baseURL+"/debug/endpointShardz", &shards); err != nil {
		return nil, err
	}
	v := View{}
	for _, s := range services {
		if s.Attributes.Labels[served.LabelManagedBy] != served.ManagedByValue {
			continue
		}
		// istiod holds one service per host and address of a ServiceEntry
		// (0.0.0.0 when it has none): one host here, with every address.
		if svc, ok := v[s.Hostname]; ok && svc.Namespace == s.Attributes.Namespace {
			if s.DefaultAddress != "" && s.DefaultAddress != unspecifiedIP {
				svc.Addresses = sorted(append(svc.Addresses, s.DefaultAddress))
			}
			continue
		}
		svc := &Service{Host: s.Hostname, Namespace: s.Attributes.Namespace, Location: MeshInternal,
			ExportTo: sorted(slices.Collect(maps.Keys(s.Attributes.ExportTo))), Ports: map[string]Port{}, Endpoints: map[string]Endpoint{}}
		if s.MeshExternal {
			svc.Location = MeshExternal
		}
		if s.DefaultAddress != "" && s.DefaultAddress != unspecifiedIP {
			svc.Addresses = []string{s.DefaultAddress}
		}
		for _, p := range s.Ports {
			svc.Ports[p.Name] = Port{Number: p.Port, Protocol: p.Protocol}
		}
		for _, shard := range shards[s.Hostname][s.Attributes.Namespace].Shards {
			for _, ep := range shard {
				if len(ep.Addresses) == 0 {
					continue
				}
				svc.Endpoints[ep.Addresses[0]+"/"+ep.ServicePortName] = Endpoint{
					Address: ep.Addresses[0], PortName: ep.ServicePortName, Port: ep.EndpointPort,
					Labels: ep.Labels, Locality: ep.Locality.Label, Weight: ep.LbWeight,
					Network: ep.Network, ServiceAccount: withoutTrustDomain(ep.ServiceAccount),
				}
			}
		}
		v[s.Hostname] = svc
	}
	return v, nil
}

func getJSON(ctx context.Context, client *http.Client, url string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("fidelity: GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fidelity: GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		return fmt.Errorf("fidelity: decode %s: %w", url, err)
	}
	return nil
}

// unspecifiedIP is istiod's address of a service without one.
const unspecifiedIP = "0.0.0.0"

// Diff lists every difference between what istiod should hold and what it
// holds, one line each, sorted. Empty means istiod is faithful. Labels istiod
// adds itself (topology.*) are not differences; missing or changed labels are.
func Diff(want, got View) []string {
	var out []string
	for host, w := range want {
		g, ok := got[host]
		if !ok {
			out = append(out, fmt.Sprintf("host %s: missing in istiod", host))
			continue
		}
		if g.Namespace != w.Namespace {
			out = append(out, fmt.Sprintf("host %s: in namespace %q, want %q", host, g.Namespace, w.Namespace))
		}
		if location(g.Location) != location(w.Location) {
			out = append(out, fmt.Sprintf("host %s: location %s, want %s", host, location(g.Location), location(w.Location)))
		}
		if !slices.Equal(sorted(g.ExportTo), sorted(w.ExportTo)) {
			out = append(out, fmt.Sprintf("host %s: exportTo %v, want %v", host, g.ExportTo, w.ExportTo))
		}
		out = append(out, diffAddresses(host, "istiod holds", w, g.Addresses)...)
		for name, wp := range w.Ports {
			gp, ok := g.Ports[name]
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("host %s: port %s missing", host, name))
			case gp != wp:
				out = append(out, fmt.Sprintf("host %s: port %s is %d/%s, want %d/%s", host, name, gp.Number, gp.Protocol, wp.Number, wp.Protocol))
			}
		}
		for name := range g.Ports {
			if _, ok := w.Ports[name]; !ok {
				out = append(out, fmt.Sprintf("host %s: extra port %s", host, name))
			}
		}
		for key, we := range w.Endpoints {
			ge, ok := g.Endpoints[key]
			if !ok {
				out = append(out, fmt.Sprintf("host %s: endpoint %s missing", host, key))
				continue
			}
			if ge.Port != we.Port {
				out = append(out, fmt.Sprintf("host %s: endpoint %s targets port %d, want %d", host, key, ge.Port, we.Port))
			}
			if ge.Locality != we.Locality {
				out = append(out, fmt.Sprintf("host %s: endpoint %s locality %q, want %q", host, key, ge.Locality, we.Locality))
			}
			if ge.Weight != we.Weight {
				out = append(out, fmt.Sprintf("host %s: endpoint %s weight %d, want %d", host, key, ge.Weight, we.Weight))
			}
			if ge.Network != we.Network {
				out = append(out, fmt.Sprintf("host %s: endpoint %s network %q, want %q", host, key, ge.Network, we.Network))
			}
			if ge.ServiceAccount != we.ServiceAccount {
				out = append(out, fmt.Sprintf("host %s: endpoint %s service account %q, want %q", host, key, ge.ServiceAccount, we.ServiceAccount))
			}
			for k, v := range we.Labels {
				if gv, ok := ge.Labels[k]; !ok || gv != v {
					out = append(out, fmt.Sprintf("host %s: endpoint %s label %s=%q, want %q", host, key, k, gv, v))
				}
			}
		}
		for key := range g.Endpoints {
			if _, ok := w.Endpoints[key]; !ok {
				out = append(out, fmt.Sprintf("host %s: extra endpoint %s", host, key))
			}
		}
	}
	for host := range got {
		if _, ok := want[host]; !ok {
			out = append(out, fmt.Sprintf("host %s: extra in istiod", host))
		}
	}
	slices.Sort(out)
	return out
}

func location(l string) string {
	if l == "" {
		return MeshInternal
	}
	return l
}

// diffAddresses compares a host's addresses (what istiod holds, or what
// the sidecar's name table resolves the host to: where) with want's: the
// same set, or, for an allocated address, exactly one, from
// want.AllocatedFrom.
func diffAddresses(host, where string, w *Service, got []string) []string {
	got = sorted(got)
	if len(w.Addresses) == 0 && w.AllocatedFrom.IsValid() {
		if len(got) != 1 {
			return []string{fmt.Sprintf("host %s: %s addresses %v, want one allocated from %s", host, where, got, w.AllocatedFrom)}
		}
		if a, err := netip.ParseAddr(got[0]); err != nil || !w.AllocatedFrom.Contains(a) {
			return []string{fmt.Sprintf("host %s: %s address %s, want one allocated from %s", host, where, got[0], w.AllocatedFrom)}
		}
		return nil
	}
	if !slices.Equal(got, sorted(w.Addresses)) {
		return []string{fmt.Sprintf("host %s: %s addresses %v, want %v", host, where, got, sorted(w.Addresses))}
	}
	return nil
}

// Summary is a one-line count of a view, for logs.
func (v View) Summary() string {
	hosts, eps := len(v), 0
	for _, s := range v {
		eps += len(s.Endpoints)
	}
	return fmt.Sprintf("%d hosts, %d endpoint-ports", hosts, eps)
}

// Hosts returns the hosts of a view, sorted.
func (v View) Hosts() []string {
	return slices.Sorted(maps.Keys(v))
}
