package consul

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// bulkRegistry registers, under prefix, services that exercise every input
// of the mapping: multi-port (agent and catalog registrations, the latter
// with Ports only), service and node tagged addresses, meta, node meta and
// locality, service locality, weights, several services on one node, node
// and service checks in every state, maintenance, a Connect sidecar and a
// service synced from Kubernetes.
func bulkRegistry(t *testing.T, c *api.Client, prefix string) {
	t.Helper()
	must(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: prefix + "web-1", Name: prefix + "web", Address: "127.0.0.11",
		Tags:  []string{"v1", "version|v1", "canary"},
		Meta:  map[string]string{"protocol": "http", "protocol-admin": "grpc", "team": "pay"},
		Ports: api.ServicePorts{{Name: "http", Port: 8080, Default: true}, {Name: "admin", Port: 9090}},
		TaggedAddresses: map[string]api.ServiceAddress{
			"wan_ipv4": {Address: "198.51.100.11", Port: 18080},
		},
		Check: passingTTL(prefix + "web-1-ttl"),
	}))
	must(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: prefix + "api-1", Name: prefix + "api", Address: "127.0.0.12", Port: 9000, Meta: map[string]string{"protocol": "grpc"},
		Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{}},
	}))
	reg := func(node, addr string, loc *api.Locality, nodeChecks []*api.HealthCheck, svcs ...*api.AgentService) {
		t.Helper()
		for i, svc := range svcs {
			r := &api.CatalogRegistration{
				Node: node, Address: addr, Locality: loc,
				NodeMeta:        map[string]string{"zone": node + "-z", "net": "net-" + node},
				TaggedAddresses: map[string]string{"wan": "203.0.113." + addr[len(addr)-2:]},
				Service:         svc,
			}
			if i == 0 {
				r.Checks = append(r.Checks, nodeChecks...)
			}
			_, err := c.Catalog().Register(r, nil)
			must(t, err)
		}
	}
	check := func(node, id, svcID, status string) *api.HealthCheck {
		return &api.HealthCheck{Node: node, CheckID: id, Name: id, Status: status, ServiceID: svcID}
	}
	pay := func(id string, port int, tags ...string) *api.AgentService {
		return &api.AgentService{ID: id, Service: prefix + "pay", Port: port, Tags: append([]string{"v2", "env=prod"}, tags...),
			Meta: map[string]string{"protocol": "http2", "mesh-vip": "240.0.9.9"}, Weights: api.AgentWeights{Passing: 3, Warning: 1},
			TaggedAddresses: map[string]api.ServiceAddress{"lan_ipv4": {Address: "10.9.0." + fmt.Sprint(port%100), Port: port + 1}}}
	}
	n1, n2, n3, n4 := prefix+"n1", prefix+"n2", prefix+"n3", prefix+"n4"
	// n1: passing, two services on the node, locality on node and service.
	p1 := pay("pay-1", 7000, "canary")
	p1.Locality = &api.Locality{Region: "svc-r", Zone: "svc-z"}
	reg(n1, "127.0.2.11", &api.Locality{Region: "r1", Zone: "z1"}, []*api.HealthCheck{check(n1, "serf", "", api.HealthPassing)},
		p1, &api.AgentService{ID: "db-1", Service: prefix + "db", Port: 5432},
		&api.AgentService{ID: "multi-1", Service: prefix + "multi", Address: "10.1.0.1",
			Ports: api.ServicePorts{{Name: "http", Port: 8081, Default: true}, {Name: "metrics", Port: 9102}}})
	// n2: a critical node check takes every service of the node out.
	reg(n2, "127.0.2.12", nil, []*api.HealthCheck{check(n2, "serf", "", api.HealthCritical)},
		pay("pay-2", 7000), &api.AgentService{ID: "db-2", Service: prefix + "db", Port: 5432})
	// n3: warning, another port, and a service in maintenance.
	reg(n3, "127.0.2.13", &api.Locality{Region: "r2"}, nil, pay("pay-3", 7001), &api.AgentService{ID: "db-3", Service: prefix + "db", Port: 5433},
		&api.AgentService{ID: "multi-2", Service: prefix + "multi", Address: "10.1.0.2",
			Ports: api.ServicePorts{{Name: "http", Port: 8081, Default: true}, {Name: "metrics", Port: 9102}}})
	_, err := c.Catalog().Register(&api.CatalogRegistration{Node: n3, Address: "127.0.2.13", SkipNodeUpdate: true, Checks: api.HealthChecks{
		check(n3, "pay-3-health", "pay-3", api.HealthWarning),
		check(n3, "_service_maintenance:db-3", "db-3", api.HealthCritical),
	}}, nil)
	must(t, err)
	// n4: synced from Kubernetes (skipped), and an instance with an
	// invalid address beside a good one.
	reg(n4, "127.0.2.14", nil, nil,
		&api.AgentService{ID: "k8s-1", Service: prefix + "k8s", Port: 80, Meta: map[string]string{"external-source": "kubernetes"}},
		&api.AgentService{ID: "db-4", Service: prefix + "db", Port: 5432, Address: "10.0.0.1:80"})
}

// The first state from the bulk read is exactly the one the per-service
// reads give, for every mapping input, with and without required tags; and
// it is read in two requests, with no health read before the first state.
func TestConsulBulkFirstReadMatchesPerService(t *testing.T) {
	t.Parallel()
	a := sharedAgent(t)
	c := a.client(t, "")
	const prefix = "bulk-"
	cleanPrefix(t, c, prefix)
	bulkRegistry(t, c, prefix)

	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"defaults", func(*Config) {}},
		{"localities, networks, tagged addresses, warning", func(c *Config) {
			c.ZoneMetaKey, c.NetworkMetaKey, c.TaggedAddresses, c.IncludeWarning = "zone", "net", []string{"lan_ipv4", "wan"}, true
			c.VirtualAddressKey = "mesh-vip"
		}},
		{"required tags", func(c *Config) { c.RequiredTags = []string{"CANARY"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(a.addr, prefix)
			tc.edit(&cfg)
			perService := runSourceWith(t, cfg, func(s *Source) { s.noBulk = true })
			want := perService.next("initial state, per-service reads")
			perService.stop()
			if len(want) < 2 && len(cfg.RequiredTags) == 0 {
				t.Fatalf("per-service initial state too small to compare: %v", want)
			}
			bulk := runSource(t, cfg)
			got := bulk.next("initial state, bulk read")
			if n := bulk.counter(bulk.src.metrics.requests.WithLabelValues("bulk", "ok")); n != 2 {
				t.Errorf("bulk requests: %v, want 2", n)
			}
			if n := bulk.counter(bulk.src.metrics.requests.WithLabelValues("health", "ok")); n != 0 {
				t.Errorf("health reads before the first state: %v, want 0 (the bulk read was not used)", n)
				for _, e := range bulk.logs.FilterMessageSnippet("bulk").All() {
					t.Logf("log: %s %v", e.Message, e.ContextMap())
				}
			}
			bulk.stop()
			if !reflect.DeepEqual(got, want) {
				t.Errorf("bulk first state differs from the per-service one:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// A change made right after the bulk read is seen: each service's blocking
// query starts from the index the bulk read returned, not from a later one.
// The wait is long, so that only the index can show the change in time.
func TestConsulBulkChangeAfterRead(t *testing.T) {
	t.Parallel()
	a := sharedAgent(t)
	c := a.client(t, "")
	const prefix = "bulkch-"
	cleanPrefix(t, c, prefix)
	svc := func(addr string) *api.AgentService {
		return &api.AgentService{ID: "a-1", Service: prefix + "a", Port: 80, Address: addr}
	}
	catalogNode(t, c, prefix+"n1", "127.0.3.1", nil, svc("10.3.0.1"), api.HealthPassing)
	catalogNode(t, c, prefix+"n2", "127.0.3.2", nil, &api.AgentService{ID: "b-1", Service: prefix + "b", Port: 80}, api.HealthPassing)

	cfg := testConfig(a.addr, prefix)
	cfg.Wait = 5 * time.Minute
	h := runSourceWith(t, cfg, func(s *Source) {
		s.afterBulk = func() {
			// The instance of a moves, and b's check fails (on the source's
			// goroutine: t.Error, not t.Fatal).
			for _, r := range []*api.CatalogRegistration{
				{Node: prefix + "n1", Address: "127.0.3.1", Service: svc("10.3.0.2")},
				{Node: prefix + "n2", Address: "127.0.3.2", Check: &api.AgentCheck{Node: prefix + "n2", CheckID: "b-1-health",
					Name: "external", Status: api.HealthCritical, ServiceID: "b-1"}},
			} {
				if _, err := c.Catalog().Register(r, nil); err != nil {
					t.Error(err)
				}
			}
		}
	})
	h.next("initial state")
	if n := h.counter(h.src.metrics.requests.WithLabelValues("bulk", "ok")); n != 2 {
		t.Fatalf("bulk requests: %v, want 2", n)
	}
	h.waitFor("the move made right after the bulk read", func(v view) bool {
		s := v.svc(prefix + "a")
		return s != nil && len(s.Instances) == 1 && s.Instances[0].Address == "10.3.0.2"
	})
	h.waitFor("the check failed right after the bulk read", func(v view) bool {
		s := v.svc(prefix + "b")
		return s != nil && len(s.Instances) == 0
	})
}

// Without the bulk read (another datacenter than the agent's: the health
// API may translate addresses there, the node dump does not), each service
// is read on its own, as before.
func TestConsulBulkNotForOtherDatacenter(t *testing.T) {
	t.Parallel()
	a := sharedAgent(t)
	c := a.client(t, "")
	const prefix = "bulkdc-"
	cleanPrefix(t, c, prefix)
	catalogNode(t, c, prefix+"n1", "127.0.4.1", nil, &api.AgentService{ID: "a-1", Service: prefix + "a", Port: 80}, api.HealthPassing)
	cfg := testConfig(a.addr, prefix)
	cfg.Datacenter = "dc1"
	h := runSource(t, cfg)
	h.next("initial state")
	if s := h.state.svc(prefix + "a"); s == nil || len(s.Instances) != 1 || !reflect.DeepEqual(s.Instances[0], model.Instance{
		ID: prefix + "n1/a-1", Address: "127.0.4.1", Locality: "dc1", Weight: 1, Health: model.HealthPassing}) {
		t.Errorf("state %s", h.state)
	}
	if n := h.counter(h.src.metrics.requests.WithLabelValues("bulk", "ok")); n != 0 {
		t.Errorf("bulk requests with datacenter set: %v, want 0", n)
	}
}

// The bulk read's entries are the health API's, field by field (what the
// mapping reads and more): the node as /v1/catalog/nodes has it, the
// service with the health API's fix-ups (Port from the default of Ports,
// empty tags), the node's and the instance's own checks, the required-tag
// filter in any case.
func TestConsulBulkEntriesMatchHealthAPI(t *testing.T) {
	t.Parallel()
	a := sharedAgent(t)
	c := a.client(t, "")
	const prefix = "bulke-"
	cleanPrefix(t, c, prefix)
	bulkRegistry(t, c, prefix)
	names := []string{prefix + "web", prefix + "api", prefix + "pay", prefix + "db", prefix + "multi", prefix + "k8s"}
	norm := func(es []*api.ServiceEntry) []*api.ServiceEntry {
		for _, e := range es {
			slices.SortFunc(e.Checks, func(x, y *api.HealthCheck) int { return strings.Compare(x.CheckID, y.CheckID) })
		}
		return es
	}
	for _, tags := range [][]string{nil, {"CANARY"}} {
		cfg := testConfig(a.addr, prefix)
		cfg.RequiredTags = tags
		src, err := New(cfg, sources.Options{Name: "bulke"})
		must(t, err)
		res := src.bulkRead(context.Background())
		if res == nil {
			t.Fatal("bulk read failed")
		}
		for _, name := range names {
			want, _, err := c.Health().ServiceMultipleTags(name, tags, false, nil)
			must(t, err)
			got := res.entries[name]
			if len(want) == 0 && len(got) == 0 {
				continue
			}
			if !reflect.DeepEqual(norm(got), norm(want)) {
				gj, _ := json.MarshalIndent(got, "", " ")
				wj, _ := json.MarshalIndent(want, "", " ")
				t.Errorf("tags %v, %s: bulk entries differ from the health API's:\n got %s\nwant %s", tags, name, gj, wj)
			}
		}
	}
}

// The node dump holds every service's answer, so it may be bulkScale times
// maxResponseBytes; past that the bulk read fails as too large and each
// service is read on its own.
func TestConsulBulkBounded(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		dumpBytes int
		bulk      bool
	}{
		{"within bulkScale x maxResponseBytes", 2 << 20, true},
		{"past it", (bulkScale + 1) << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pad := strings.Repeat("x", tc.dumpBytes)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Consul-Index", "7")
				w.Header().Set("Content-Type", "application/json")
				switch r.URL.Path {
				case "/v1/catalog/services":
					fmt.Fprint(w, `{"x-web":[]}`)
				case "/v1/catalog/nodes":
					fmt.Fprint(w, `[{"Node":"n1","Address":"10.0.0.1","Datacenter":"dc1"}]`)
				case "/v1/internal/ui/nodes":
					fmt.Fprintf(w, `[{"Node":"n1","Address":"10.0.0.1","Services":[{"ID":"w1","Service":"x-web","Port":80,"Meta":{"pad":%q}}],"Checks":[]}]`, pad)
				case "/v1/health/service/x-web":
					if r.URL.Query().Get("index") != "" {
						<-r.Context().Done() // a blocking query that never answers
						return
					}
					fmt.Fprint(w, `[{"Node":{"Node":"n1","Address":"10.0.0.1","Datacenter":"dc1"},"Service":{"ID":"w1","Service":"x-web","Port":80},"Checks":[]}]`)
				default:
					fmt.Fprint(w, "[]") // config entries: none
				}
			}))
			t.Cleanup(srv.Close)
			cfg := testConfig(srv.URL, "x-")
			cfg.MaxResponseBytes = 1 << 20
			h := runSource(t, cfg)
			h.next("initial state")
			bulkOK := h.counter(h.src.metrics.requests.WithLabelValues("bulk", "ok"))
			tooLarge := h.counter(h.src.metrics.requests.WithLabelValues("bulk", "toolarge"))
			health := h.counter(h.src.metrics.requests.WithLabelValues("health", "ok"))
			h.stop()
			if tc.bulk && (bulkOK != 2 || health != 0) {
				t.Errorf("bulk requests %v, health reads %v; want 2 and 0", bulkOK, health)
			}
			if !tc.bulk && (tooLarge != 1 || health != 1) {
				t.Errorf("bulk requests too large %v, health reads %v; want 1 and 1", tooLarge, health)
			}
		})
	}
}
