package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/registry-adapter/registry-adapter/fidelity"
)

func setConfigEntry(t *testing.T, c *consulapi.Client, e consulapi.ConfigEntry) {
	t.Helper()
	ok, _, err := c.ConfigEntries().Set(e, nil)
	if err != nil || !ok {
		t.Fatalf("write %s %s: %v", e.GetKind(), e.GetName(), err)
	}
}

// istiodConfig is one object of istiod's /debug/configz.
type istiodConfig struct {
	Kind     string
	Metadata struct{ Name, Namespace string }
	Spec     json.RawMessage
}

func (p *istiodProc) config(t *testing.T, kind, name string) (*istiodConfig, error) {
	t.Helper()
	_, body, err := httpGet("http://" + p.httpAddr + "/debug/configz")
	if err != nil {
		return nil, err
	}
	var cfgs []istiodConfig
	if err := json.Unmarshal(body, &cfgs); err != nil {
		return nil, fmt.Errorf("configz: %v", err)
	}
	for i := range cfgs {
		if cfgs[i].Kind == kind && cfgs[i].Metadata.Name == name {
			return &cfgs[i], nil
		}
	}
	return nil, fmt.Errorf("istiod holds no %s %s", kind, name)
}

// registryProtocols is host -> "name:port:protocol ..." from istiod's registry.
func (p *istiodProc) registryProtocols(t *testing.T) map[string]string {
	t.Helper()
	_, body, err := httpGet("http://" + p.httpAddr + "/debug/registryz")
	if err != nil {
		t.Fatal(err)
	}
	var services []struct {
		Hostname string `json:"hostname"`
		Ports    []struct {
			Name     string `json:"name"`
			Port     int    `json:"port"`
			Protocol string `json:"protocol"`
		} `json:"ports"`
	}
	if err := json.Unmarshal(body, &services); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range services {
		for _, port := range s.Ports {
			out[s.Hostname] += fmt.Sprintf("%s:%d:%s ", port.Name, port.Port, port.Protocol)
		}
	}
	return out
}

// TestConsulConfigEntries: Consul's own traffic configuration, written with
// Consul's API, reaches the real istiod and a sidecar's view. A service
// whose only protocol statement is service-defaults is served with it; a
// resolver and a splitter become a DestinationRule and a VirtualService
// istiod holds, with subset clusters holding the right instances and a
// 90/10 weighted route in the sidecar; a resolver Istio cannot state is
// reported by name while its service is served.
func TestConsulConfigEntries(t *testing.T) {
	t.Parallel()
	c, addr := startConsul(t, 0)
	register(t, c, "web", "vm-1", "10.7.0.1", 8080, nil, map[string]string{"version": "v1"})
	register(t, c, "web", "vm-2", "10.7.0.2", 8080, []string{"canary"}, map[string]string{"version": "v2"})
	register(t, c, "billing", "vm-3", "10.7.0.3", 9000, nil, nil)
	register(t, c, "ledger", "vm-4", "10.7.0.4", 7000, nil, map[string]string{"zone": "a"})
	setConfigEntry(t, c, &consulapi.ServiceConfigEntry{Kind: consulapi.ServiceDefaults, Name: "web", Protocol: "http"})
	setConfigEntry(t, c, &consulapi.ServiceConfigEntry{Kind: consulapi.ServiceDefaults, Name: "billing", Protocol: "grpc"})
	setConfigEntry(t, c, &consulapi.ServiceConfigEntry{Kind: consulapi.ServiceDefaults, Name: "ledger", Protocol: "http"})
	setConfigEntry(t, c, &consulapi.ServiceResolverConfigEntry{Kind: consulapi.ServiceResolver, Name: "web", Subsets: map[string]consulapi.ServiceResolverSubset{
		"v1": {Filter: "Service.Meta.version == v1"}, "v2": {Filter: "Service.Meta.version == v2"},
	}})
	setConfigEntry(t, c, &consulapi.ServiceSplitterConfigEntry{Kind: consulapi.ServiceSplitter, Name: "web", Splits: []consulapi.ServiceSplit{
		{Weight: 90, ServiceSubset: "v1"}, {Weight: 10, ServiceSubset: "v2"},
	}})
	// Istio selects subsets by labels; node meta is not one.
	setConfigEntry(t, c, &consulapi.ServiceResolverConfigEntry{Kind: consulapi.ServiceResolver, Name: "ledger", Subsets: map[string]consulapi.ServiceResolverSubset{
		"zone-a": {Filter: `Node.Meta.zone == "a"`},
	}})

	a := startAdapter(t, fmt.Sprintf(`
server: {listen: "{{XDS}}", debugListen: "{{DEBUG}}"}
debounce: {quiet: 50ms, max: 300ms}
sources:
- name: dc1
  consul: {address: "%s", backoffMin: 100ms, backoffMax: 1s, configEntries: {trafficPolicy: true}}
`, addr), 0)
	p := startIstiod(t, meshFor(a.xdsAddr))
	p.waitReady(t)

	web := consulService("web", "HTTP", 8080, "10.7.0.1", "10.7.0.2")
	labelled(web, "10.7.0.1", map[string]string{"version": "v1"})
	labelled(web, "10.7.0.2", map[string]string{"version": "v2"})
	want := expect(web, consulService("billing", "GRPC", 9000, "10.7.0.3"),
		labelled(consulService("ledger", "HTTP", 7000, "10.7.0.4"), "10.7.0.4", map[string]string{"zone": "a"}))
	eventually(t, 60*time.Second, "istiod holds the services with service-defaults' protocols", func() error {
		return holds(t, a, p, want)
	})
	// Done when: the protocol comes from service-defaults alone, in istiod.
	if got := p.registryProtocols(t)["billing.service.consul"]; got != "grpc-9000:9000:GRPC " {
		t.Errorf("billing in istiod's registry: %q, want grpc-9000:9000:GRPC", got)
	}

	const ns, name = "registry-adapter-entries", "web.service.consul"
	eventually(t, 30*time.Second, "istiod holds the DestinationRule and VirtualService", func() error {
		dr, err := p.config(t, "DestinationRule", name)
		if err != nil {
			return err
		}
		vs, err := p.config(t, "VirtualService", name)
		if err != nil {
			return err
		}
		if dr.Metadata.Namespace != ns || vs.Metadata.Namespace != ns {
			return fmt.Errorf("namespaces %s, %s", dr.Metadata.Namespace, vs.Metadata.Namespace)
		}
		var drSpec struct {
			Host    string
			Subsets []struct {
				Name   string
				Labels map[string]string
			}
		}
		var vsSpec struct {
			Hosts []string
			HTTP  []struct {
				Route []struct {
					Destination struct{ Host, Subset string }
					Weight      int
				}
			} `json:"http"`
		}
		if err := json.Unmarshal(dr.Spec, &drSpec); err != nil {
			return err
		}
		if err := json.Unmarshal(vs.Spec, &vsSpec); err != nil {
			return err
		}
		if drSpec.Host != name || len(drSpec.Subsets) != 2 || drSpec.Subsets[0].Labels["version"] != "v1" || drSpec.Subsets[1].Labels["version"] != "v2" {
			return fmt.Errorf("DestinationRule spec %s", dr.Spec)
		}
		if len(vsSpec.HTTP) != 1 || len(vsSpec.HTTP[0].Route) != 2 || vsSpec.HTTP[0].Route[0].Weight != 90 || vsSpec.HTTP[0].Route[1].Weight != 10 ||
			vsSpec.HTTP[0].Route[0].Destination.Subset != "v1" || vsSpec.HTTP[0].Route[1].Destination.Subset != "v2" {
			return fmt.Errorf("VirtualService spec %s", vs.Spec)
		}
		return nil
	})
	// ledger's resolver is not carried: no DestinationRule, a metric naming
	// the service and the field, and the service itself served (above).
	if _, err := p.config(t, "DestinationRule", "ledger.service.consul"); err == nil {
		t.Error("istiod holds a DestinationRule for ledger, whose resolver Istio cannot state")
	}
	if got := metric(t, "http://"+a.debugAddr+"/metrics", "registry_adapter_consul_config_entry_not_carried",
		"kind=service-resolver", "service=ledger", "field=Subsets.zone-a.Filter", "result=rejected"); got != 1 {
		t.Errorf("not-carried gauge for ledger's filter = %v, want 1", got)
	}

	// A sidecar's view: a cluster per subset with that subset's instance, and
	// the 90/10 route.
	eventually(t, 30*time.Second, "the sidecar's subset clusters and weighted route", splitInSidecar(t, p, name))

	// A protocol change in service-defaults is one ServiceEntry change.
	upserts := func() float64 {
		return metric(t, "http://"+a.debugAddr+"/metrics", "registry_adapter_changes_applied_total", "kind=ServiceEntry", "op=upsert")
	}
	before := upserts()
	start := time.Now()
	setConfigEntry(t, c, &consulapi.ServiceConfigEntry{Kind: consulapi.ServiceDefaults, Name: "billing", Protocol: "http2"})
	eventually(t, 30*time.Second, "istiod serves billing as HTTP2", func() error {
		if got := p.registryProtocols(t)["billing.service.consul"]; got != "http2-9000:9000:HTTP2 " {
			return fmt.Errorf("billing: %q", got)
		}
		return nil
	})
	t.Logf("service-defaults protocol change -> istiod's registry: %s (debounce max 300ms)", time.Since(start).Round(time.Millisecond))
	if got := upserts() - before; got != 1 {
		t.Errorf("%v ServiceEntry upserts for one protocol change, want 1", got)
	}
}

// weightedRoute finds, in route table table, the last route of host's
// virtual host: the default route a VirtualService ends with.
func weightedRoute(v fidelity.SidecarView, table, host string) (fidelity.SidecarHTTPRoute, error) {
	for _, vh := range v.Routes[table] {
		if slices.Contains(vh.Domains, host) && len(vh.Routes) > 0 {
			return vh.Routes[len(vh.Routes)-1], nil
		}
	}
	var hosts []string
	for _, vh := range v.Routes[table] {
		hosts = append(hosts, vh.Name)
	}
	return fidelity.SidecarHTTPRoute{}, fmt.Errorf("route table %s has no virtual host for %s (it has %s)", table, host, strings.Join(hosts, ", "))
}

// splitInSidecar checks a sidecar's view of host web on 8080: a cluster per
// subset with that subset's instance, and the 90/10 route.
func splitInSidecar(t *testing.T, p *istiodProc, name string) func() error {
	return func() error {
		px, err := p.sidecar(t)
		if err != nil {
			return err
		}
		v := px.View()
		for subset, ep := range map[string]string{"v1": "10.7.0.1:8080", "v2": "10.7.0.2:8080"} {
			cname := "outbound|8080|" + subset + "|" + name
			if got := v.Clusters[cname].Endpoints; !slices.Equal(got, []string{ep}) {
				return fmt.Errorf("cluster %s endpoints %v, want [%s]", cname, got, ep)
			}
		}
		route, err := weightedRoute(v, "8080", name)
		if err != nil {
			return err
		}
		want := map[string]uint32{"outbound|8080|v1|" + name: 90, "outbound|8080|v2|" + name: 10}
		if !maps.Equal(route.Clusters, want) {
			return fmt.Errorf("route to %s: %v, want %v", name, route.Clusters, want)
		}
		return nil
	}
}

// TestConsulConfigEntriesKubeSink: the same traffic policy through the
// Kubernetes sink: the DestinationRule and VirtualService are objects in the
// output namespace (as kubectl lists them), and an istiod that reads only
// the Kubernetes API gives a sidecar the subset clusters and the 90/10 route.
func TestConsulConfigEntriesKubeSink(t *testing.T) {
	installIstioCRDs(t)
	ns := "ce-kube-" + randomSuffix(t)
	kubeNamespace(t, ns)
	c, addr := startConsul(t, 0)
	register(t, c, "web", "vm-1", "10.7.0.1", 8080, nil, map[string]string{"version": "v1"})
	register(t, c, "web", "vm-2", "10.7.0.2", 8080, nil, map[string]string{"version": "v2"})
	setConfigEntry(t, c, &consulapi.ServiceConfigEntry{Kind: consulapi.ServiceDefaults, Name: "web", Protocol: "http"})
	setConfigEntry(t, c, &consulapi.ServiceResolverConfigEntry{Kind: consulapi.ServiceResolver, Name: "web", Subsets: map[string]consulapi.ServiceResolverSubset{
		"v1": {Filter: "Service.Meta.version == v1"}, "v2": {Filter: "Service.Meta.version == v2"},
	}})
	setConfigEntry(t, c, &consulapi.ServiceSplitterConfigEntry{Kind: consulapi.ServiceSplitter, Name: "web", Splits: []consulapi.ServiceSplit{
		{Weight: 90, ServiceSubset: "v1"}, {Weight: 10, ServiceSubset: "v2"},
	}})
	startAdapter(t, fmt.Sprintf(`
server: {listen: "{{XDS}}", debugListen: "{{DEBUG}}"}
debounce: {quiet: 50ms, max: 300ms}
sink: kubernetes
output: {namespace: %s}
kubernetesSink: {kubeconfig: %q, owner: ce-kube, leaderElection: {enabled: false}}
sources:
- name: dc1
  consul: {address: "%s", backoffMin: 100ms, backoffMax: 1s, configEntries: {trafficPolicy: true}}
`, ns, kubeconfig, addr), 0)
	p := startIstiod(t, meshK8sOnly)
	p.waitReady(t)

	const name = "web.service.consul"
	eventually(t, 60*time.Second, "kubectl lists the DestinationRule and VirtualService", func() error {
		for _, r := range []string{"destinationrules", "virtualservices"} {
			gvr := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: r}
			if got := kubeNames(t, gvr, ns); !slices.Contains(got, name) && !slices.Contains(got, "web-service-consul") {
				return fmt.Errorf("%s in %s: %v", r, ns, got)
			}
		}
		return nil
	})
	eventually(t, 60*time.Second, "the sidecar's subset clusters and weighted route (istiod reads k8s:// only)", splitInSidecar(t, p, name))
}
