package consul

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

func passingTTL(id string) *api.AgentServiceCheck {
	return &api.AgentServiceCheck{CheckID: id, TTL: "10m", Status: api.HealthPassing}
}

// catalogNode registers a service instance on an external node through the
// catalog API, as ESM or consul-k8s do.
func catalogNode(t testing.TB, c *api.Client, node, addr string, nodeMeta map[string]string, svc *api.AgentService, status string) {
	t.Helper()
	reg := &api.CatalogRegistration{Node: node, Address: addr, NodeMeta: nodeMeta, Service: svc}
	if status != "" {
		reg.Check = &api.AgentCheck{Node: node, CheckID: svc.ID + "-health", Name: "external", Status: status, ServiceID: svc.ID}
	}
	_, err := c.Catalog().Register(reg, nil)
	must(t, err)
}

func TestConsulInitialState(t *testing.T) {
	t.Parallel()
	a := sharedAgent(t)
	c := a.client(t, "")
	cleanPrefix(t, c, "init-")
	ag := c.Agent()

	// Multi-port service with tags, meta, tagged addresses and a TTL check.
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{
		ID: "init-web-1", Name: "init-web", Address: "127.0.0.11",
		Tags:  []string{"v1", "version|v1"},
		Meta:  map[string]string{"protocol": "http", "team": "pay"},
		Ports: api.ServicePorts{{Name: "http", Port: 8080, Default: true}, {Name: "admin", Port: 9090}},
		TaggedAddresses: map[string]api.ServiceAddress{
			"wan_ipv4": {Address: "198.51.100.11", Port: 18080},
		},
		Check: passingTTL("init-web-1-ttl"),
	}))
	// A service with a Connect sidecar: the sidecar (Kind connect-proxy) is skipped.
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{
		ID: "init-api-1", Name: "init-api", Address: "127.0.0.12", Port: 9000, Meta: map[string]string{"protocol": "grpc"},
		Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{}},
	}))
	// No service address: the node address (127.0.0.1) is used.
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "init-db-1", Name: "init-db", Port: 5432, Tags: []string{"primary"}}))
	// External nodes: one passing, one critical, one on another port.
	pay := func(id string, port int) *api.AgentService {
		return &api.AgentService{ID: id, Service: "init-pay", Port: port, Tags: []string{"v2", "env|prod"},
			Meta: map[string]string{"protocol": "http2"}, Weights: api.AgentWeights{Passing: 3, Warning: 1}}
	}
	catalogNode(t, c, "init-ext-1", "127.0.0.21", map[string]string{"zone": "z1"}, pay("pay-1", 7000), api.HealthPassing)
	catalogNode(t, c, "init-ext-2", "127.0.0.22", map[string]string{"zone": "z2"}, pay("pay-2", 7000), api.HealthCritical)
	catalogNode(t, c, "init-ext-3", "127.0.0.23", map[string]string{"zone": "z1"}, pay("pay-3", 7001), api.HealthPassing)
	// Synced by consul-k8s from Kubernetes: skipped.
	catalogNode(t, c, "init-ext-4", "127.0.0.24", nil, &api.AgentService{ID: "k8s-1", Service: "init-k8s", Port: 80,
		Meta: map[string]string{"external-source": "kubernetes"}}, api.HealthPassing)
	// Malformed: every instance has an invalid address; the service is skipped.
	catalogNode(t, c, "init-ext-5", "127.0.0.25", nil, &api.AgentService{ID: "bad-1", Service: "init-bad", Port: 80, Address: "not a host!"}, "")
	// One good and one malformed instance: the good one is kept.
	catalogNode(t, c, "init-ext-6", "127.0.0.26", nil, &api.AgentService{ID: "mixed-1", Service: "init-mixed", Port: 80}, "")
	catalogNode(t, c, "init-ext-7", "127.0.0.27", nil, &api.AgentService{ID: "mixed-2", Service: "init-mixed", Port: 80, Address: "10.0.0.1:80"}, "")

	cfg := testConfig(a.addr, "init-")
	cfg.ZoneMetaKey = "zone"
	h := runSource(t, cfg)
	first := h.next("initial state")

	var scopes []string
	for _, g := range first {
		scopes = append(scopes, g.Scope)
	}
	if want := []string{"init-api", "init-db", "init-mixed", "init-pay", "init-web"}; !reflect.DeepEqual(scopes, want) {
		t.Fatalf("initial scopes %v, want %v", scopes, want)
	}

	wantWeb := model.Service{
		Name: "init-web", Host: "init-web.service.consul",
		Ports: []model.Port{{Number: 8080, Protocol: model.ProtocolHTTP, Name: "http"}, {Number: 9090, Protocol: model.ProtocolHTTP, Name: "admin"}},
		Instances: []model.Instance{{
			ID: "dev/init-web-1", Address: "127.0.0.11", Labels: model.LabelsFromMap(map[string]string{"version": "v1", "team": "pay"}),
			Locality: "dc1", Weight: 1, Health: model.HealthPassing,
		}},
	}
	if got := *h.state.svc("init-web"); !reflect.DeepEqual(got, wantWeb) {
		t.Errorf("init-web:\n got %+v\nwant %+v", got, wantWeb)
	}
	wantPay := model.Service{
		Name: "init-pay", Host: "init-pay.service.consul",
		Ports: []model.Port{{Number: 7000, Protocol: model.ProtocolHTTP2}},
		Instances: []model.Instance{
			{ID: "init-ext-1/pay-1", Address: "127.0.0.21", Labels: model.LabelsFromMap(map[string]string{"env": "prod"}), Locality: "dc1/z1", Weight: 3, Health: model.HealthPassing},
			{ID: "init-ext-3/pay-3", Address: "127.0.0.23", Labels: model.LabelsFromMap(map[string]string{"env": "prod"}), Locality: "dc1/z1", Weight: 3, Health: model.HealthPassing,
				Ports: model.TargetPortsFromMap(map[uint32]uint32{7000: 7001})},
		},
	}
	if got := *h.state.svc("init-pay"); !reflect.DeepEqual(got, wantPay) {
		t.Errorf("init-pay:\n got %+v\nwant %+v", got, wantPay)
	}
	if s := h.state.svc("init-api"); s.Ports[0] != (model.Port{Number: 9000, Protocol: model.ProtocolGRPC}) || ids(s) != "dev/init-api-1" {
		t.Errorf("init-api: %+v", s)
	}
	if s := h.state.svc("init-db"); s.Instances[0].Address != "127.0.0.1" || s.Ports[0].Protocol != model.ProtocolTCP {
		t.Errorf("init-db: %+v", s)
	}
	if s := h.state.svc("init-mixed"); ids(s) != "init-ext-6/mixed-1" {
		t.Errorf("init-mixed: %s", ids(s))
	}
	// The malformed service and instance are logged by name and counted.
	if n := h.logs.FilterMessageSnippet("invalid Consul data").FilterField(zap.String("service", "init-bad")).Len(); n == 0 {
		t.Error("the malformed service init-bad was not logged")
	}
	if got := h.counter(h.src.metrics.invalid.WithLabelValues("address")); got < 2 {
		t.Errorf("invalid{address} = %v, want >= 2", got)
	}
	st := h.waitStatus("synced", func(s sources.Status) bool { return s.Synced })
	if st.Stale || st.Services != 5 || st.Instances != 6 {
		t.Errorf("status %+v", st)
	}

	// With a preference for the wan_ipv4 tagged address, its port too.
	cfg.TaggedAddresses = []string{"wan_ipv4"}
	cfg.Services = []string{"init-web"}
	h2 := runSource(t, cfg)
	h2.next("initial state")
	if s := h2.state.svc("init-web"); s == nil || s.Instances[0].Address != "198.51.100.11" ||
		s.Ports[1] != (model.Port{Number: 18080, Protocol: model.ProtocolHTTP, Name: "http"}) {
		t.Errorf("tagged address: %+v", s)
	}
}

func TestConsulChanges(t *testing.T) {
	t.Parallel()
	a := sharedAgent(t)
	c := a.client(t, "")
	cleanPrefix(t, c, "ch-")
	ag := c.Agent()
	reg := func(id, name, addr string) {
		must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: name, Address: addr, Port: 80}))
	}
	reg("ch-a-1", "ch-a", "127.0.1.1")

	h := runSource(t, testConfig(a.addr, "ch-"))
	if b := h.next("initial"); len(b) != 1 || b[0].Scope != "ch-a" {
		t.Fatalf("initial %v", b)
	}

	// A new service: a batch with that service only.
	reg("ch-b-1", "ch-b", "127.0.1.2")
	if b := h.next("ch-b registered"); len(b) != 1 || b[0].Scope != "ch-b" || ids(&b[0].Services[0]) != "dev/ch-b-1" {
		t.Fatalf("after registering ch-b: %v", b)
	}
	// A second instance: a batch with the changed service only.
	reg("ch-a-2", "ch-a", "127.0.1.3")
	if b := h.next("ch-a-2 registered"); len(b) != 1 || ids(&b[0].Services[0]) != "dev/ch-a-1,dev/ch-a-2" {
		t.Fatalf("after registering ch-a-2: %v", b)
	}
	must(t, ag.ServiceDeregister("ch-a-1"))
	h.waitFor("ch-a-1 gone", func(v view) bool { return ids(v.svc("ch-a")) == "dev/ch-a-2" })

	// The last instance goes: the scope is removed by a group without services.
	must(t, ag.ServiceDeregister("ch-a-2"))
	h.waitFor("ch-a removed", func(v view) bool { _, ok := v["ch-a"]; return !ok })
	if h.state.svc("ch-b") == nil {
		t.Fatalf("state %s", h.state)
	}
	h.waitStatus("totals updated", func(s sources.Status) bool { return s.Synced && s.Services == 1 && s.Instances == 1 })
}

func TestConsulHealth(t *testing.T) {
	t.Parallel()
	// Its own agent: node maintenance affects every service of the node.
	a := startAgent(t, agentOpts{})
	c := a.client(t, "")
	ag := c.Agent()
	for i, id := range []string{"hl-1", "hl-2"} {
		must(t, ag.ServiceRegister(&api.AgentServiceRegistration{
			ID: id, Name: "hl", Address: "127.0.2." + string(rune('1'+i)), Port: 80,
			Weights: &api.AgentWeights{Passing: 5, Warning: 2},
			Check:   passingTTL(id + "-ttl"),
		}))
	}
	def := runSource(t, testConfig(a.addr, "hl"))
	cfgW := testConfig(a.addr, "hl")
	cfgW.IncludeWarning = true
	warn := runSource(t, cfgW)
	both := func(what string, wantDef, wantWarn string) {
		t.Helper()
		def.waitFor(what+" (default)", func(v view) bool { return ids(v.svc("hl")) == wantDef })
		warn.waitFor(what+" (includeWarning)", func(v view) bool { return ids(v.svc("hl")) == wantWarn })
	}
	ttl := func(id, status string) { must(t, ag.UpdateTTL(id+"-ttl", "test", status)) }

	both("initial", "dev/hl-1,dev/hl-2", "dev/hl-1,dev/hl-2")

	ttl("hl-1", api.HealthWarning)
	both("hl-1 warning", "dev/hl-2", "dev/hl-1,dev/hl-2")
	warn.waitFor("hl-1 in warning", func(v view) bool {
		i := v.svc("hl").Instances[0]
		return i.Health == model.HealthWarning && i.Weight == 2
	})
	ttl("hl-1", api.HealthCritical)
	both("hl-1 critical", "dev/hl-2", "dev/hl-2")

	// Every instance critical: the service stays, with no endpoints.
	ttl("hl-2", api.HealthCritical)
	both("all critical", "", "")
	if s := def.state.svc("hl"); s == nil || len(s.Ports) != 1 || s.Ports[0].Number != 80 {
		t.Fatalf("all critical: want the service with its port and no instances, got %+v", s)
	}
	ttl("hl-1", api.HealthPassing)
	ttl("hl-2", api.HealthPassing)
	both("all passing", "dev/hl-1,dev/hl-2", "dev/hl-1,dev/hl-2")

	must(t, ag.EnableServiceMaintenance("hl-1", "test"))
	both("hl-1 in maintenance", "dev/hl-2", "dev/hl-2")
	must(t, ag.DisableServiceMaintenance("hl-1"))
	both("hl-1 out of maintenance", "dev/hl-1,dev/hl-2", "dev/hl-1,dev/hl-2")

	must(t, ag.EnableNodeMaintenance("test"))
	both("node in maintenance", "", "")
	must(t, ag.DisableNodeMaintenance())
	both("node out of maintenance", "dev/hl-1,dev/hl-2", "dev/hl-1,dev/hl-2")
}

func TestConsulFilters(t *testing.T) {
	t.Parallel()
	a := sharedAgent(t)
	c := a.client(t, "")
	cleanPrefix(t, c, "fl-")
	svc := func(id, name string, tags ...string) *api.AgentService {
		return &api.AgentService{ID: id, Service: name, Port: 80, Tags: tags}
	}
	catalogNode(t, c, "fl-n1", "127.0.3.1", nil, svc("a", "fl-a", "mesh"), "")
	catalogNode(t, c, "fl-n1", "127.0.3.1", nil, svc("b", "fl-b"), "")
	catalogNode(t, c, "fl-n1", "127.0.3.1", nil, svc("c1", "fl-c", "mesh"), "")
	catalogNode(t, c, "fl-n2", "127.0.3.2", nil, svc("c2", "fl-c"), "")
	catalogNode(t, c, "fl-n1", "127.0.3.1", nil, svc("x", "fl-x1", "mesh"), "")
	catalogNode(t, c, "fl-n1", "127.0.3.1", nil, &api.AgentService{ID: "k", Service: "fl-k8s", Port: 80, Tags: []string{"mesh"},
		Meta: map[string]string{"external-source": "kubernetes"}}, "")

	cfg := testConfig(a.addr, "fl-")
	cfg.RequiredTags = []string{"mesh"}
	cfg.ExcludeServices = []string{"fl-x*"}
	h := runSource(t, cfg)
	h.next("initial")
	if len(h.state) != 2 || ids(h.state.svc("fl-a")) != "fl-n1/a" || ids(h.state.svc("fl-c")) != "fl-n1/c1" {
		t.Fatalf("required tags and excludes: %s", h.state)
	}

	cfg.RequiredTags, cfg.ExcludeServices = nil, nil
	cfg.IncludeKubernetesSynced = true
	cfg.Services = []string{"fl-k8s", "fl-b"}
	h2 := runSource(t, cfg)
	h2.next("initial")
	if len(h2.state) != 2 || h2.state.svc("fl-k8s") == nil || h2.state.svc("fl-b") == nil {
		t.Fatalf("includeKubernetesSynced: %s", h2.state)
	}
}

func TestConsulHostCollision(t *testing.T) {
	t.Parallel()
	a := sharedAgent(t)
	c := a.client(t, "")
	cleanPrefix(t, c, "col")
	catalogNode(t, c, "col-n1", "127.0.4.1", nil, &api.AgentService{ID: "u", Service: "col_a", Port: 80}, "")
	catalogNode(t, c, "col-n1", "127.0.4.1", nil, &api.AgentService{ID: "d", Service: "col-a", Port: 80}, "")

	h := runSource(t, testConfig(a.addr, "col"))
	h.next("initial")
	// Both map to col-a.service.consul: the smaller name owns it.
	if len(h.state) != 1 || ids(h.state.svc("col-a")) != "col-n1/d" {
		t.Fatalf("collision: %s", h.state)
	}
	h.waitLog("its host is already the host of another service")
	_, err := c.Catalog().Deregister(&api.CatalogDeregistration{Node: "col-n1", ServiceID: "d"}, nil)
	must(t, err)
	h.waitFor("col_a takes the host over", func(v view) bool {
		return len(v) == 1 && ids(v.svc("col_a")) == "col-n1/u"
	})
}

// Names that differ only in case or in leading characters (Web, -web, web)
// all map to web.service.consul. Consul's health endpoint ignores case, so
// the answer for "Web" held web's instances too, and "-web", the smallest
// name, took the host with its own instance: a registrant of a variant
// replaced web's instances. Now each service keeps its own instances, and
// the collision policy applies: the name that is the host's own spelling
// wins, the others are skipped with a warning and counted, and take over,
// with only their own instances, when it goes.
func TestConsulNamesDifferingInCaseCollide(t *testing.T) {
	t.Parallel()
	a := sharedAgent(t)
	c := a.client(t, "")
	for _, p := range []string{"case", "Case", "-case"} {
		cleanPrefix(t, c, p)
	}
	catalogNode(t, c, "case-n1", "10.0.6.1", nil, &api.AgentService{ID: "upper", Service: "Case-web", Port: 80}, "")
	catalogNode(t, c, "case-n2", "10.0.6.2", nil, &api.AgentService{ID: "lower", Service: "case-web", Port: 80}, "")
	catalogNode(t, c, "case-n3", "10.0.6.3", nil, &api.AgentService{ID: "dash", Service: "-case-web", Port: 80}, "")

	cfg := testConfig(a.addr, "")
	cfg.Services = []string{"case-*", "Case-*", "-case-*"}
	h := runSource(t, cfg)
	h.next("initial")
	if len(h.state) != 1 || ids(h.state.svc("case-web")) != "case-n2/lower" {
		t.Fatalf("want case-web alone, with its own instance: %s", h.state)
	}
	h.waitLog("its host is already the host of another service")
	if got := h.counter(h.src.metrics.invalid.WithLabelValues("collision")); got != 2 {
		t.Errorf("collisions counted %v, want 2", got)
	}
	// Without case-web, the smaller of the variants takes the host, with its
	// own instance only.
	_, err := c.Catalog().Deregister(&api.CatalogDeregistration{Node: "case-n2", ServiceID: "lower"}, nil)
	must(t, err)
	h.waitFor("-case-web takes the host over", func(v view) bool {
		return len(v) == 1 && ids(v.svc("-case-web")) == "case-n3/dash"
	})
	_, err = c.Catalog().Deregister(&api.CatalogDeregistration{Node: "case-n3", ServiceID: "dash"}, nil)
	must(t, err)
	h.waitFor("Case-web takes the host over", func(v view) bool {
		return len(v) == 1 && ids(v.svc("Case-web")) == "case-n1/upper"
	})
}

func TestConsulManyServicesFewSlots(t *testing.T) {
	t.Parallel()
	a := sharedAgent(t)
	c := a.client(t, "")
	cleanPrefix(t, c, "cap-")
	for i := range 6 {
		catalogNode(t, c, "cap-n1", "127.0.5.1", nil, &api.AgentService{ID: "s" + string(rune('0'+i)), Service: "cap-" + string(rune('a'+i)), Port: 80}, "")
	}
	cfg := testConfig(a.addr, "cap-")
	cfg.MaxConcurrentQueries = 2
	cfg.Wait = 3 * time.Second
	cfg.Stale = true
	cfg.Cached = true
	h := runSource(t, cfg)
	h.next("initial")
	if len(h.state) != 6 {
		t.Fatalf("initial %s", h.state)
	}
	catalogNode(t, c, "cap-n2", "127.0.5.2", nil, &api.AgentService{ID: "s9", Service: "cap-f", Port: 80}, "")
	h.waitFor("second instance of cap-f", func(v view) bool { return ids(v.svc("cap-f")) == "cap-n1/s5,cap-n2/s9" })
	if got := h.counter(h.src.metrics.inflight); got > 2 {
		t.Errorf("in flight %v > 2", got)
	}
	// Six services, two slots: four watches wait their turn, which the
	// operator must be able to see.
	if got := h.counter(h.src.metrics.slotsShort); got != 4 {
		t.Errorf("watches without a slot = %v, want 4", got)
	}
}

func TestConsulEnterpriseOnly(t *testing.T) {
	t.Parallel()
	a := sharedAgent(t)
	cfg := testConfig(a.addr, "ent-")
	cfg.Namespace = "team-a"
	h := runSource(t, cfg)
	st := h.waitStatus("failed", func(s sources.Status) bool { return s.LastError != "" })
	if !strings.Contains(st.LastError, "Enterprise") || st.Synced {
		t.Errorf("status %+v", st)
	}
	if got := h.counter(h.src.metrics.requests.WithLabelValues("catalog", "unsupported")); got < 1 {
		t.Errorf("requests{unsupported} = %v", got)
	}
	h.noBatch("nothing is sent while the namespace is rejected")
}

func TestConsulACL(t *testing.T) {
	t.Parallel()
	const root = "b1a2c3d4-0000-4000-8000-00000000r00t"
	a := startAgent(t, agentOpts{readyToken: root, args: []string{"-hcl",
		`acl { enabled = true default_policy = "deny" tokens { initial_management = "` + root + `" agent = "` + root + `" } }`}})
	c := a.client(t, root)
	token := func(name, rules string) string {
		_, _, err := c.ACL().PolicyCreate(&api.ACLPolicy{Name: name, Rules: rules}, nil)
		must(t, err)
		tok, _, err := c.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{Name: name}}}, nil)
		must(t, err)
		return tok.SecretID
	}
	readOnly := token("registry-adapter", `service_prefix "" { policy = "read" } node_prefix "" { policy = "read" }`)
	noNodeRead := token("services-only", `service_prefix "" { policy = "read" }`)
	bogus := "11111111-2222-4333-8444-555555555555"
	for _, id := range []string{"acl-web-1", "acl-web-2"} {
		must(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: "acl-web", Port: 80}))
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	must(t, os.WriteFile(file, []byte(readOnly+"\n"), 0o600))
	cfg := testConfig(a.addr, "acl-")
	cfg.TokenFile = file
	h := runSource(t, cfg)
	h.next("initial")
	if ids(h.state.svc("acl-web")) != "dev/acl-web-1,dev/acl-web-2" {
		t.Fatalf("read-only token: %s", h.state)
	}

	// The token file now holds a token without node:read: Consul answers
	// with empty lists filtered by ACLs, which must not delete anything.
	must(t, os.WriteFile(file, []byte(noNodeRead), 0o600))
	h.waitLog("ignoring an empty service list filtered by ACLs")
	h.waitLog("ignoring an empty instance list filtered by ACLs")
	h.noBatch("a filtered empty answer is not a deregistration")
	if got := h.counter(h.src.metrics.aclFiltered.WithLabelValues("catalog")); got < 1 {
		t.Errorf("acl_filtered{catalog} = %v", got)
	}
	// Back to the read-only token; a new service is the only change.
	must(t, os.WriteFile(file, []byte(readOnly), 0o600))
	h.waitLog("no longer filters the service list")
	must(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "acl-new-1", Name: "acl-new", Port: 80}))
	if b := h.next("acl-new registered"); len(b) != 1 || b[0].Scope != "acl-new" {
		t.Fatalf("after the token came back: %v", b)
	}

	// The token file is emptied (a rewrite caught half-way, a broken mount):
	// an error that keeps the current token, not a switch to the anonymous
	// token, which sees nothing here.
	must(t, os.WriteFile(file, nil, 0o600))
	h.waitLog("cannot re-read the ACL token file; keeping the current token")
	must(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "acl-new2-1", Name: "acl-new2", Port: 80}))
	if b := h.next("acl-new2 registered"); len(b) != 1 || b[0].Scope != "acl-new2" {
		t.Fatalf("with an empty token file: %v", b)
	}

	// A token without node:read from the start: an empty, synced state, logged.
	cfg2 := testConfig(a.addr, "acl-")
	cfg2.Token = noNodeRead
	h2 := runSource(t, cfg2)
	if b := h2.next("initial"); len(b) != 0 {
		t.Fatalf("without node:read: %v", b)
	}
	h2.waitLog("Consul filtered the service list by ACLs")

	// An unknown token: an ACL error, reported without the token.
	cfg3 := testConfig(a.addr, "acl-")
	cfg3.Token = bogus
	h3 := runSource(t, cfg3)
	st := h3.waitStatus("failed", func(s sources.Status) bool { return s.LastError != "" })
	if st.Synced || !st.Stale {
		t.Errorf("bogus token status %+v", st)
	}
	if got := h3.counter(h3.src.metrics.requests.WithLabelValues("catalog", "acl")); got < 1 {
		t.Errorf("requests{acl} = %v", got)
	}
	h3.noBatch("nothing is sent with an unusable token")

	for _, hh := range []*harness{h, h2, h3} {
		text := hh.allLogText() + hh.reporter.Status().LastError
		for _, secret := range []string{root, readOnly, noNodeRead, bogus} {
			if strings.Contains(text, secret) {
				t.Errorf("an ACL token appears in the logs or status: %s", text)
			}
		}
	}
}

func TestConsulIndexReset(t *testing.T) {
	t.Parallel()
	a := startAgent(t, agentOpts{})
	c := a.client(t, "")
	catalogNode(t, c, "rs-n1", "127.0.6.1", nil, &api.AgentService{ID: "keep", Service: "rs-keep", Port: 80}, api.HealthPassing)
	snap, _, err := c.Snapshot().Save(nil)
	must(t, err)
	saved, err := io.ReadAll(snap)
	must(t, err)
	snap.Close()
	// Move the indexes well past the snapshot's.
	catalogNode(t, c, "rs-n1", "127.0.6.1", nil, &api.AgentService{ID: "gone", Service: "rs-gone", Port: 80}, api.HealthPassing)
	for range 5 {
		catalogNode(t, c, "rs-n2", "127.0.6.2", nil, &api.AgentService{ID: "churn", Service: "rs-keep", Port: 80}, api.HealthPassing)
		_, err := c.Catalog().Deregister(&api.CatalogDeregistration{Node: "rs-n2"}, nil)
		must(t, err)
	}

	cfg := testConfig(a.addr, "rs-")
	cfg.Wait = 5 * time.Minute // the reset must not wait for a blocking query to expire
	h := runSource(t, cfg)
	h.next("initial")
	if len(h.state) != 2 {
		t.Fatalf("initial %s", h.state)
	}

	// Restore while the catalog, both health queries and the config entry
	// watches block: Consul wakes them with their old index (the state store
	// was abandoned); the re-read shows the index went backwards. (A query
	// that starts after a restore blocks until its wait expires: detection
	// then takes up to one wait.)
	h.waitGauge("3 queries in flight, and the config entry watches", h.src.metrics.inflight, float64(3+len(cfg.ConfigEntries.kinds())))
	must(t, c.Snapshot().Restore(nil, bytes.NewReader(saved)))
	h.waitFor("rs-gone removed after the restore", func(v view) bool { _, ok := v["rs-gone"]; return !ok && len(v) == 1 })
	if got := h.counter(h.src.metrics.indexResets.WithLabelValues("catalog")); got < 1 {
		t.Errorf("index resets = %v", got)
	}
	// Blocking resumes at the restored (lower) index.
	catalogNode(t, c, "rs-n1", "127.0.6.1", nil, &api.AgentService{ID: "new", Service: "rs-new", Port: 80}, api.HealthPassing)
	catalogNode(t, c, "rs-n3", "127.0.6.3", nil, &api.AgentService{ID: "keep3", Service: "rs-keep", Port: 80}, api.HealthPassing)
	h.waitFor("rs-new and a new rs-keep instance", func(v view) bool {
		return v.svc("rs-new") != nil && ids(v.svc("rs-keep")) == "rs-n1/keep,rs-n3/keep3"
	})
}

func TestConsulUnavailable(t *testing.T) {
	t.Parallel()
	a1 := startAgent(t, agentOpts{})
	c1 := a1.client(t, "")
	catalogNode(t, c1, "un-n1", "127.0.7.1", nil, &api.AgentService{ID: "a", Service: "un-a", Port: 80}, api.HealthPassing)
	cfg := testConfig(a1.addr, "un-")
	cfg.Wait = 5 * time.Minute
	h := runSource(t, cfg)
	h.next("initial")

	// Consul goes away: the source reports it and keeps its state.
	a1.stop(t)
	st := h.waitStatus("stale", func(s sources.Status) bool { return s.Stale })
	if st.LastError == "" || !st.Synced {
		t.Errorf("status %+v", st)
	}
	h.noBatch("nothing is deleted while Consul is unreachable")

	// Another (empty) agent on the same address: the source re-reads it.
	a2 := startAgent(t, agentOpts{httpPort: a1.port()})
	c2 := a2.client(t, "")
	catalogNode(t, c2, "un-n2", "127.0.7.2", nil, &api.AgentService{ID: "b", Service: "un-b", Port: 80}, api.HealthPassing)
	h.waitFor("the new agent's state", func(v view) bool { return len(v) == 1 && v.svc("un-b") != nil })
	h.waitStatus("recovered", func(s sources.Status) bool { return !s.Stale })
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}

func TestConsulPeering(t *testing.T) {
	t.Parallel()
	// Two clusters; peering needs each server's gRPC TLS port.
	b := startAgent(t, agentOpts{args: []string{"-grpc-tls-port", freePort(t), "-datacenter", "dcb", "-node", "nb"}})
	a := startAgent(t, agentOpts{args: []string{"-grpc-tls-port", freePort(t), "-node", "na"}})
	cb, ca := b.client(t, ""), a.client(t, "")
	gen, _, err := cb.Peerings().GenerateToken(t.Context(), api.PeeringGenerateTokenRequest{PeerName: "cluster-a"}, nil)
	must(t, err)
	_, _, err = ca.Peerings().Establish(t.Context(), api.PeeringEstablishRequest{PeerName: "cluster-b", PeeringToken: gen.PeeringToken}, nil)
	must(t, err)
	must(t, cb.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "pw-1", Name: "pweb", Address: "127.0.8.1", Port: 8080}))
	export := func(names ...string) {
		var svcs []api.ExportedService
		for _, n := range names {
			svcs = append(svcs, api.ExportedService{Name: n, Consumers: []api.ServiceConsumer{{Peer: "cluster-a"}}})
		}
		_, _, err := cb.ConfigEntries().Set(&api.ExportedServicesConfigEntry{Name: "default", Services: svcs}, nil)
		must(t, err)
	}
	export("pweb")
	// The same name in the local cluster stays a separate service.
	must(t, ca.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "pw-local", Name: "pweb", Address: "127.0.8.9", Port: 8080}))

	cfg := testConfig(a.addr, "pweb")
	cfg.Peers = []string{"cluster-b"}
	cfg.PeerRefreshInterval = 50 * time.Millisecond
	h := runSource(t, cfg)
	h.waitFor("local and imported pweb", func(v view) bool {
		return ids(v.svc("pweb")) == "na/pw-local" && ids(v.svc("peer/cluster-b/pweb")) == "nb/pw-1"
	})
	if s := h.state.svc("peer/cluster-b/pweb"); s.Host != "pweb.service.cluster-b.peer.consul" || s.Instances[0].Address != "127.0.8.1" ||
		s.Instances[0].Locality != "dcb" {
		t.Errorf("imported service %+v", s)
	}
	// Instance changes in the peer arrive through the blocking ?peer= query.
	must(t, cb.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "pw-2", Name: "pweb", Address: "127.0.8.2", Port: 8080}))
	h.waitFor("second imported instance", func(v view) bool { return ids(v.svc("peer/cluster-b/pweb")) == "nb/pw-1,nb/pw-2" })
	// No longer exported: the imported service goes, the local one stays.
	export()
	h.waitFor("imported pweb removed", func(v view) bool {
		_, ok := v["peer/cluster-b/pweb"]
		return !ok && v.svc("pweb") != nil
	})
}

// TestConsulTLS is not parallel: it sets CONSUL_* environment variables.
func TestConsulTLS(t *testing.T) {
	dir := t.TempDir()
	consulCerts(t, dir)
	f := func(name string) string { return filepath.Join(dir, name) }
	httpsPort := freePort(t)
	a := startAgent(t, agentOpts{args: tlsAgentArgs(httpsPort, dir)})
	must(t, a.client(t, "").Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "tls-1", Name: "tls-web", Port: 443}))
	addr := "https://127.0.0.1:" + httpsPort

	// From the configuration: CA, client certificate, server name.
	cfg := testConfig(addr, "tls-")
	cfg.TLS = tlsClient(dir)
	h := runSource(t, cfg)
	h.next("initial over TLS")
	if ids(h.state.svc("tls-web")) != "dev/tls-1" {
		t.Fatalf("over TLS: %s", h.state)
	}

	// From the standard environment variables.
	t.Setenv("CONSUL_HTTP_ADDR", addr)
	t.Setenv("CONSUL_CACERT", f("consul-agent-ca.pem"))
	t.Setenv("CONSUL_CLIENT_CERT", f("dc1-client-consul-0.pem"))
	t.Setenv("CONSUL_CLIENT_KEY", f("dc1-client-consul-0-key.pem"))
	t.Setenv("CONSUL_TLS_SERVER_NAME", "server.dc1.consul")
	cfg = testConfig("", "tls-")
	h2 := runSource(t, cfg)
	h2.next("initial over TLS from the environment")
	if ids(h2.state.svc("tls-web")) != "dev/tls-1" {
		t.Fatalf("over TLS from env: %s", h2.state)
	}

	// Without the client certificate the agent refuses: an error, no state.
	t.Setenv("CONSUL_CLIENT_CERT", "")
	t.Setenv("CONSUL_CLIENT_KEY", "")
	h3 := runSource(t, cfg)
	st := h3.waitStatus("failed", func(s sources.Status) bool { return s.LastError != "" })
	if st.Synced {
		t.Errorf("status %+v", st)
	}
	h3.noBatch("no state without a client certificate")
}

// consulCerts writes a CA, a server and a client certificate for dc1 into
// dir with `consul tls` (consul-agent-ca.pem, dc1-server-consul-0.pem,
// dc1-client-consul-0.pem and their -key.pem files).
func consulCerts(t testing.TB, dir string) {
	t.Helper()
	bin := requireConsul(t)
	for _, args := range [][]string{{"tls", "ca", "create"}, {"tls", "cert", "create", "-server", "-dc", "dc1"}, {"tls", "cert", "create", "-client", "-dc", "dc1"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("consul %v: %v\n%s", args, err, out)
		}
	}
}

// tlsAgentArgs serve HTTPS on httpsPort with the certificates of dir,
// requiring client certificates.
func tlsAgentArgs(httpsPort, dir string) []string {
	f := func(name string) string { return filepath.Join(dir, name) }
	return []string{"-hcl", `ports { https = ` + httpsPort + ` }
tls {
  defaults { ca_file = "` + f("consul-agent-ca.pem") + `" cert_file = "` + f("dc1-server-consul-0.pem") + `" key_file = "` + f("dc1-server-consul-0-key.pem") + `" }
  https { verify_incoming = true }
}`}
}

// tlsClient is the source's TLS configuration for the certificates of dir.
func tlsClient(dir string) TLSConfig {
	f := func(name string) string { return filepath.Join(dir, name) }
	return TLSConfig{CAFile: f("consul-agent-ca.pem"), CertFile: f("dc1-client-consul-0.pem"), KeyFile: f("dc1-client-consul-0-key.pem"),
		ServerName: "server.dc1.consul"}
}

// TestConsulTLSRotation replaces Consul's CA and certificates (as a rotation
// does) and the source's CA and client certificate files with them: new
// connections use what is on disk now, without a restart.
func TestConsulTLSRotation(t *testing.T) {
	t.Parallel()
	dirA, dirB, live := t.TempDir(), t.TempDir(), t.TempDir()
	consulCerts(t, dirA)
	consulCerts(t, dirB) // another CA
	install := func(from string) {
		for _, f := range []string{"consul-agent-ca.pem", "dc1-client-consul-0.pem", "dc1-client-consul-0-key.pem"} {
			b, err := os.ReadFile(filepath.Join(from, f))
			must(t, err)
			// Written aside and renamed, as Kubernetes updates a mounted secret.
			must(t, os.WriteFile(filepath.Join(live, f+".tmp"), b, 0o600))
			must(t, os.Rename(filepath.Join(live, f+".tmp"), filepath.Join(live, f)))
		}
	}
	install(dirA)
	port := freePort(t)
	a1 := startAgent(t, agentOpts{args: tlsAgentArgs(port, dirA)})
	must(t, a1.client(t, "").Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "rot-a-1", Name: "rot-a", Port: 443}))
	cfg := testConfig("https://127.0.0.1:"+port, "rot-")
	cfg.TLS = tlsClient(live)
	h := runSource(t, cfg)
	h.next("initial")
	if ids(h.state.svc("rot-a")) != "dev/rot-a-1" {
		t.Fatalf("initial: %s", h.state)
	}

	// The rotation: Consul comes back on the same address with certificates
	// of the new CA and accepts only clients of the new CA.
	install(dirB)
	a1.stop(t)
	a2 := startAgent(t, agentOpts{args: tlsAgentArgs(port, dirB)})
	must(t, a2.client(t, "").Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "rot-b-1", Name: "rot-b", Port: 443}))
	h.waitFor("the services of the agent with rotated certificates", func(v view) bool {
		return len(v) == 1 && ids(v.svc("rot-b")) == "dev/rot-b-1"
	})
	h.waitLog("Consul CA changed on disk")
	h.waitLog("Consul client certificate changed on disk")
}
