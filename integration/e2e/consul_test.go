package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/registry-adapter/registry-adapter/fidelity"
)

// startConsul runs a dev agent through the project's script, on port if
// non-zero, and returns a client for it.
func startConsul(t *testing.T, port int) (*consulapi.Client, string) {
	t.Helper()
	state := t.TempDir()
	env := []string{"CONSUL_STATE_DIR=" + state, "CONSUL_BIN=" + consulBin}
	if port != 0 {
		env = append(env, fmt.Sprintf("CONSUL_HTTP_PORT=%d", port))
	}
	var out bytes.Buffer
	if err := command(repoRoot, env, &out, "bash", "integration/consul/consul.sh", "start"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = command(repoRoot, env, nil, "bash", "integration/consul/consul.sh", "stop")
	})
	var addr string
	for _, kv := range parseExports(out.String()) {
		if v, ok := strings.CutPrefix(kv, "CONSUL_HTTP_ADDR="); ok {
			addr = v
		}
	}
	cfg := consulapi.DefaultConfig()
	cfg.Address = addr
	c, err := consulapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, addr
}

func consulConfig(addr string) string {
	return fmt.Sprintf(`
server: {listen: "{{XDS}}", debugListen: "{{DEBUG}}"}
debounce: {quiet: 50ms, max: 300ms}
sources:
- name: dc1
  consul: {address: "%s", backoffMin: 100ms, backoffMax: 1s}
`, addr)
}

// register puts one instance of service on its own node through the catalog
// API, as external-service monitors and consul-esm do.
func register(t *testing.T, c *consulapi.Client, service, node, addr string, port int, tags []string, meta map[string]string) {
	t.Helper()
	_, err := c.Catalog().Register(&consulapi.CatalogRegistration{
		Node: node, Address: addr,
		Service: &consulapi.AgentService{ID: service, Service: service, Port: port, Tags: tags, Meta: meta},
		Check:   &consulapi.AgentCheck{Node: node, CheckID: "health-" + service, Name: "health", Status: consulapi.HealthPassing, ServiceID: service},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
}

func deregister(t *testing.T, c *consulapi.Client, node, serviceID string) {
	t.Helper()
	if _, err := c.Catalog().Deregister(&consulapi.CatalogDeregistration{Node: node, ServiceID: serviceID}, nil); err != nil {
		t.Fatal(err)
	}
}

func (p *istiodProc) endpoints(t *testing.T, host string) []string {
	t.Helper()
	_, body, err := httpGet("http://" + p.httpAddr + "/debug/endpointShardz")
	if err != nil {
		t.Fatal(err)
	}
	var shards map[string]map[string]struct {
		Shards map[string][]struct {
			Addresses       []string
			ServicePortName string
		}
	}
	if err := json.Unmarshal(body, &shards); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ns := range shards[host] {
		for _, eps := range ns.Shards {
			for _, ep := range eps {
				out = append(out, ep.Addresses[0]+"/"+ep.ServicePortName)
			}
		}
	}
	return sortStrings(out)
}

// TestReadyOnlyAfterAdapterAnswered: istiod connects while Consul is not yet
// up; the adapter answers nothing (a partial answer would wipe istiod), so
// istiod stays unready until Consul appears and the adapter's first full
// answer arrives.
func TestReadyOnlyAfterAdapterAnswered(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	a := startAdapter(t, consulConfig(fmt.Sprintf("127.0.0.1:%d", port)), 0)
	p := startIstiod(t, meshFor(a.xdsAddr))
	eventually(t, 30*time.Second, "istiod subscribed to every type", func() error {
		_, body, err := httpGet("http://" + a.debugAddr + "/debug/clients")
		if err != nil {
			return err
		}
		var clients []struct {
			Types map[string]struct{ SentVersion string }
		}
		if err := json.Unmarshal(body, &clients); err != nil || len(clients) != 1 || len(clients[0].Types) != 16 {
			return fmt.Errorf("clients %s", body)
		}
		for typ, st := range clients[0].Types {
			if st.SentVersion != "" {
				t.Fatalf("the adapter answered %s before its source synced", typ)
			}
		}
		return nil
	})
	if p.ready() {
		t.Fatal("istiod ready before the adapter answered")
	}
	code, _, _ := httpGet("http://" + a.debugAddr + "/readyz")
	if code != 503 {
		t.Errorf("adapter /readyz %d before its source synced", code)
	}

	c, _ := startConsul(t, port)
	register(t, c, "web", "vm-1", "10.1.0.1", 8080, nil, map[string]string{"protocol": "http"})
	p.waitReady(t)
	eventually(t, 30*time.Second, "istiod holds the registration", func() error {
		return holds(t, a, p, expect(consulService("web", "HTTP", 8080, "10.1.0.1")))
	})
}

// TestConsulEndpointLifecycle: registering, changing and deregistering
// instances shows up in istiod's endpoints; endpoint-only changes take
// istiod's EDS path, not a full push; a refresh that changes nothing sends
// nothing at all.
func TestConsulEndpointLifecycle(t *testing.T) {
	t.Parallel()
	c, addr := startConsul(t, 0)
	register(t, c, "api", "vm-1", "10.2.0.1", 9000, []string{"version=v1"}, map[string]string{"protocol": "grpc"})
	register(t, c, "db", "vm-9", "10.2.9.1", 5432, nil, nil)
	a := startAdapter(t, consulConfig(addr), 0)
	p := startIstiod(t, meshFor(a.xdsAddr))
	p.waitReady(t)
	const host = "api.service.consul"
	// By hand: tags key=value become labels; db has no protocol, so TCP.
	db := consulService("db", "TCP", 5432, "10.2.9.1")
	api := func(versions map[string]string) *fidelity.Service {
		var addrs []string
		for a := range versions {
			addrs = append(addrs, a)
		}
		s := consulService("api", "GRPC", 9000, addrs...)
		for a, v := range versions {
			labelled(s, a, map[string]string{"version": v})
		}
		return s
	}
	eventually(t, 30*time.Second, "first instance", func() error {
		if got := p.endpoints(t, host); strings.Join(got, ",") != "10.2.0.1/grpc-9000" {
			return fmt.Errorf("endpoints %v", got)
		}
		return holds(t, a, p, expect(db, api(map[string]string{"10.2.0.1": "v1"})))
	})

	type counters struct{ eds, pushes float64 }
	read := func() counters {
		return counters{
			eds:    p.metric(t, "pilot_inbound_updates", "type=eds"),
			pushes: metric(t, "http://"+a.debugAddr+"/metrics", "registry_adapter_server_pushes_total"),
		}
	}
	pushLines := func() (full, eds int) {
		for _, line := range strings.Split(p.log(), "\n") {
			if strings.Contains(line, "Push debounce stable") {
				// 1.31 names an EDS-only push's config Endpoints/...; 1.30
				// names the ServiceEntry and says full=false.
				if strings.Contains(line, "for config Endpoints/") || strings.HasSuffix(line, "full=false") {
					eds++
				} else {
					full++
				}
			}
		}
		return
	}

	// A second instance: an endpoint-only change.
	before := read()
	fullBefore, edsBefore := pushLines()
	register(t, c, "api", "vm-2", "10.2.0.2", 9000, []string{"version=v2"}, map[string]string{"protocol": "grpc"})
	eventually(t, 30*time.Second, "second instance", func() error {
		if got := p.endpoints(t, host); strings.Join(got, ",") != "10.2.0.1/grpc-9000,10.2.0.2/grpc-9000" {
			return fmt.Errorf("endpoints %v", got)
		}
		return holds(t, a, p, expect(db, api(map[string]string{"10.2.0.1": "v1", "10.2.0.2": "v2"})))
	})
	eventually(t, 30*time.Second, "istiod pushed", func() error {
		if _, eds := pushLines(); eds == edsBefore {
			return fmt.Errorf("no EDS push logged yet")
		}
		return nil
	})
	after := read()
	if full, _ := pushLines(); full != fullBefore {
		t.Errorf("an endpoint-only change caused %d full pushes", full-fullBefore)
	}
	// istiod counts every push request as a "config" inbound update, EDS-only
	// ones included (ConfigUpdate with Full=false), so the log above is what
	// tells the two apart; the EDS counter must move.
	if after.eds <= before.eds {
		t.Errorf("no EDS update counted in istiod (%v -> %v)", before.eds, after.eds)
	}

	// A label change on an instance is also endpoint-only.
	register(t, c, "api", "vm-2", "10.2.0.2", 9000, []string{"version=v3"}, map[string]string{"protocol": "grpc"})
	eventually(t, 30*time.Second, "label change", func() error {
		return holds(t, a, p, expect(db, api(map[string]string{"10.2.0.1": "v1", "10.2.0.2": "v3"})))
	})

	// A refresh that changes nothing: re-registering identical data moves
	// Consul's index; the adapter's debounce window closes with nothing to
	// send, and istiod hears nothing.
	before = read()
	windows := metric(t, "http://"+a.debugAddr+"/metrics", "registry_adapter_debounce_windows_total")
	register(t, c, "api", "vm-2", "10.2.0.2", 9000, []string{"version=v3"}, map[string]string{"protocol": "grpc"})
	register(t, c, "db", "vm-9", "10.2.9.1", 5432, nil, nil)
	// Consul's own change detection may drop an identical write before any
	// watcher wakes; a real change after it bounds the wait either way.
	register(t, c, "db", "vm-10", "10.2.9.2", 5432, nil, nil)
	eventually(t, 30*time.Second, "adapter processed the refreshes", func() error {
		if metric(t, "http://"+a.debugAddr+"/metrics", "registry_adapter_debounce_windows_total") <= windows {
			return fmt.Errorf("no debounce window closed yet")
		}
		return holds(t, a, p, expect(consulService("db", "TCP", 5432, "10.2.9.1", "10.2.9.2"),
			api(map[string]string{"10.2.0.1": "v1", "10.2.0.2": "v3"})))
	})
	after = read()
	// Only the db change may have been pushed: one WorkloadEntry reply per
	// connected istiod.
	if got := after.pushes - before.pushes; got != 1 {
		t.Errorf("%v pushes for one real change and two identical refreshes, want 1", got)
	}
	// Every family the running adapter exposes, with istiod connected and
	// every kind pushed and ACKed, passes the client library's promlint.
	lintMetrics(t, "http://"+a.debugAddr+"/metrics")

	// Deregistering an instance removes the endpoint; deregistering the
	// last one leaves the service with no endpoints.
	deregister(t, c, "vm-1", "api")
	eventually(t, 30*time.Second, "instance gone", func() error {
		if got := p.endpoints(t, host); strings.Join(got, ",") != "10.2.0.2/grpc-9000" {
			return fmt.Errorf("endpoints %v", got)
		}
		return holds(t, a, p, expect(consulService("db", "TCP", 5432, "10.2.9.1", "10.2.9.2"),
			api(map[string]string{"10.2.0.2": "v3"})))
	})
	deregister(t, c, "vm-2", "api")
	eventually(t, 30*time.Second, "service gone", func() error {
		return holds(t, a, p, expect(consulService("db", "TCP", 5432, "10.2.9.1", "10.2.9.2")))
	})
	for _, cfg := range p.configs(t) {
		if strings.Contains(cfg, "api.service.consul") {
			t.Errorf("istiod still holds %s after the service was deregistered", cfg)
		}
	}
}

// TestConsulPortsAndProtocols: a service's ports and protocols reach istiod as
// configured in Consul (meta, tags, default), multi-port services (Consul's
// Ports) included: each port with its own protocol from meta or tags, named
// "<protocol>-<number>" like every served port (Consul's port names do not
// reach istiod).
func TestConsulPortsAndProtocols(t *testing.T) {
	t.Parallel()
	c, addr := startConsul(t, 0)
	register(t, c, "h2", "vm-1", "10.3.0.1", 8443, nil, map[string]string{"protocol": "http2"})
	register(t, c, "legacy", "vm-2", "10.3.0.2", 8080, []string{"protocol|http"}, nil)
	register(t, c, "plain", "vm-3", "10.3.0.3", 6000, nil, nil)
	multi := func(service, node, addr string, ports consulapi.ServicePorts, tags []string, meta map[string]string) {
		t.Helper()
		if _, err := c.Catalog().Register(&consulapi.CatalogRegistration{
			Node: node, Address: addr,
			Service: &consulapi.AgentService{ID: service, Service: service, Ports: ports, Tags: tags, Meta: meta},
			Check:   &consulapi.AgentCheck{Node: node, CheckID: "health-" + service, Name: "health", Status: consulapi.HealthPassing, ServiceID: service},
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Meta: one protocol for the service, another for one port.
	multi("mp", "vm-4", "10.3.0.4", consulapi.ServicePorts{{Name: "http", Port: 8080, Default: true}, {Name: "admin", Port: 9090}, {Name: "metrics", Port: 9100}},
		nil, map[string]string{"protocol": "http", "protocol-admin": "grpc"})
	// Tags: the same, with the port-specific one first in Consul's rule.
	multi("mt", "vm-5", "10.3.0.5", consulapi.ServicePorts{{Name: "api", Port: 7000, Default: true}, {Name: "debug", Port: 7001}},
		[]string{"protocol-debug=http2", "protocol=grpc"}, nil)
	a := startAdapter(t, consulConfig(addr), 0)
	p := startIstiod(t, meshFor(a.xdsAddr))
	p.waitReady(t)
	// By hand: each instance at each port.
	multiPort := func(name, addr string, ports map[string]fidelity.Port) *fidelity.Service {
		s := placed(&fidelity.Service{Host: name + ".service.consul", Ports: ports, Endpoints: map[string]fidelity.Endpoint{}})
		for pn, port := range ports {
			s.Endpoints[addr+"/"+pn] = fidelity.Endpoint{Address: addr, PortName: pn, Port: port.Number, Weight: 1, Locality: "dc1"}
		}
		return s
	}
	eventually(t, 30*time.Second, "istiod holds each protocol", func() error {
		return holds(t, a, p, expect(
			consulService("h2", "HTTP2", 8443, "10.3.0.1"),
			consulService("legacy", "HTTP", 8080, "10.3.0.2"),
			consulService("plain", "TCP", 6000, "10.3.0.3"),
			multiPort("mp", "10.3.0.4", map[string]fidelity.Port{
				"http-8080": {Number: 8080, Protocol: "HTTP"}, "grpc-9090": {Number: 9090, Protocol: "GRPC"}, "http-9100": {Number: 9100, Protocol: "HTTP"}}),
			multiPort("mt", "10.3.0.5", map[string]fidelity.Port{
				"grpc-7000": {Number: 7000, Protocol: "GRPC"}, "http2-7001": {Number: 7001, Protocol: "HTTP2"}})))
	})
	got := p.registryProtocols(t)
	for host, want := range map[string]string{
		"h2.service.consul":     "http2-8443:8443:HTTP2 ",
		"legacy.service.consul": "http-8080:8080:HTTP ",
		"plain.service.consul":  "tcp-6000:6000:TCP ",
		"mp.service.consul":     "http-8080:8080:HTTP grpc-9090:9090:GRPC http-9100:9100:HTTP ",
		"mt.service.consul":     "grpc-7000:7000:GRPC http2-7001:7001:HTTP2 ",
	} {
		if got[host] != want {
			t.Errorf("%s ports %q, want %q", host, got[host], want)
		}
	}
}
