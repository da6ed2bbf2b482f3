package consul

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

func testMapper(t *testing.T, mod func(*Config)) *mapper {
	t.Helper()
	var c Config
	if mod != nil {
		mod(&c)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	m, err := newMapper(&c, sources.Limits{PortsPerInstance: 4})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSanitizeHost(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "web.service.consul", want: "web.service.consul"},
		{in: "My_Service.service.consul", want: "my-service.service.consul"},
		{in: "web..service.consul.", want: "web.service.consul"},
		{in: "-web-.service.consul", want: "web.service.consul"},
		{in: "wéb.consul", want: "w--b.consul"},
		{in: strings.Repeat("a", 70) + ".consul", want: strings.Repeat("a", 63) + ".consul"},
		{in: " ..-. ", err: "empty"},
		{in: strings.Repeat(strings.Repeat("a", 60)+".", 5), err: "longer than 253"},
	} {
		got, err := model.SanitizeHost(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("sanitizeHost(%q) = %q, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("sanitizeHost(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestHostTemplate(t *testing.T) {
	d := hostData{Service: "Web_1", Datacenter: "DC1", Namespace: "team-a", Partition: "p1", Peer: "west"}
	for _, tc := range []struct{ tmpl, want string }{
		{DefaultHostTemplate, "web-1.service.consul"},
		{"{{.Service}}.{{.Datacenter}}.consul", "web-1.dc1.consul"},
		{"{{.Service}}.{{.Namespace}}.ns.{{.Partition}}.ap.consul", "web-1.team-a.ns.p1.ap.consul"},
		{DefaultPeerHostTemplate, "web-1.service.west.peer.consul"},
		{"{{.Service}}.{{.Namespace}}.svc.cluster.local", "web-1.team-a.svc.cluster.local"},
		{`{{ .Service | printf "%s-v1" }}.mesh`, "web-1-v1.mesh"},
	} {
		tpl, err := parseHostTemplate("hostTemplate", tc.tmpl)
		if err != nil {
			t.Fatalf("%s: %v", tc.tmpl, err)
		}
		got, err := renderHost(tpl, d)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.tmpl, got, err, tc.want)
		}
	}
	// Empty namespace (Consul OSS) leaves no empty label behind.
	tpl, _ := parseHostTemplate("hostTemplate", "{{.Service}}.{{.Namespace}}.consul")
	if got, _ := renderHost(tpl, hostData{Service: "web"}); got != "web.consul" {
		t.Errorf("empty namespace: got %q", got)
	}
	for _, bad := range []string{"{{.Name}}.consul", "{{.Service", "{{.Service.Foo}}"} {
		if _, err := parseHostTemplate("hostTemplate", bad); err == nil || !strings.HasPrefix(err.Error(), "hostTemplate:") {
			t.Errorf("template %q: got %v, want an error naming hostTemplate", bad, err)
		}
	}
}

func TestChooseAddress(t *testing.T) {
	svc := &api.AgentService{
		Address: "10.0.0.1",
		TaggedAddresses: map[string]api.ServiceAddress{
			"wan_ipv4": {Address: "198.51.100.1", Port: 18080},
			"lan_ipv6": {Address: "2001:db8::1", Port: 0},
		},
	}
	node := &api.Node{Address: "10.0.0.9", TaggedAddresses: map[string]string{"wan": "198.51.100.9", "lan": "10.0.0.9"}}
	for _, tc := range []struct {
		name     string
		prefs    []string
		svc      *api.AgentService
		wantAddr string
		wantPort int
	}{
		{"service address by default", nil, svc, "10.0.0.1", 0},
		{"node address when the service has none", nil, &api.AgentService{}, "10.0.0.9", 0},
		{"service tagged address with port", []string{"wan_ipv4"}, svc, "198.51.100.1", 18080},
		{"service tagged address without port", []string{"lan_ipv6"}, svc, "2001:db8::1", 0},
		{"node tagged address", []string{"wan"}, svc, "198.51.100.9", 0},
		{"first preference found wins", []string{"nope", "wan", "wan_ipv4"}, svc, "198.51.100.9", 0},
		{"service before node for one key", []string{"wan_ipv4"}, &api.AgentService{TaggedAddresses: map[string]api.ServiceAddress{"wan_ipv4": {Address: "198.51.100.2"}}}, "198.51.100.2", 0},
		{"falls back when no preference exists", []string{"nope"}, svc, "10.0.0.1", 0},
	} {
		addr, port := chooseAddress(tc.prefs, tc.svc, node)
		if addr != tc.wantAddr || port != tc.wantPort {
			t.Errorf("%s: got %s:%d, want %s:%d", tc.name, addr, port, tc.wantAddr, tc.wantPort)
		}
	}
}

func TestNormalizeAddress(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.0.0.1", "10.0.0.1"},
		{"2001:DB8::1", "2001:db8::1"},
		{"DB.Example.com.", "db.example.com"},
		{"my_host.internal", "my_host.internal"},
		{"", ""},
		{"10.0.0.1:8080", ""},
		{"fe80::1%eth0", ""},
		{"not a host", ""},
		{"-bad.example.com", ""},
		{"a..b", ""},
	} {
		got, err := normalizeAddress(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("normalizeAddress(%q) = %q; want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("normalizeAddress(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestProtocolValue(t *testing.T) {
	m := testMapper(t, nil)
	for _, tc := range []struct {
		name string
		svc  api.AgentService
		port string
		want string
	}{
		{"meta", api.AgentService{Meta: map[string]string{"protocol": "http"}}, "", "http"},
		{"meta beats tags", api.AgentService{Meta: map[string]string{"protocol": "grpc"}, Tags: []string{"protocol=http"}}, "", "grpc"},
		{"tag with =", api.AgentService{Tags: []string{"v1", "protocol=http2"}}, "", "http2"},
		{"tag with | (Istio's old style)", api.AgentService{Tags: []string{"protocol|redis"}}, "", "redis"},
		{"none", api.AgentService{Tags: []string{"http"}}, "", ""},
		{"per-port meta", api.AgentService{Meta: map[string]string{"protocol": "http", "protocol-admin": "grpc"}}, "admin", "grpc"},
		{"per-port falls back to service-wide", api.AgentService{Meta: map[string]string{"protocol": "http"}}, "admin", "http"},
		{"per-port tag", api.AgentService{Tags: []string{"protocol-admin=tcp", "protocol=http"}}, "admin", "tcp"},
	} {
		if got := m.protocolValue(&tc.svc, tc.port); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	// A custom key.
	m = testMapper(t, func(c *Config) { c.ProtocolMetaKey = "proto" })
	if got := m.protocolValue(&api.AgentService{Meta: map[string]string{"protocol": "http", "proto": "mysql"}}, ""); got != "mysql" {
		t.Errorf("custom key: got %q", got)
	}
}

func TestLabels(t *testing.T) {
	m := testMapper(t, nil)
	for _, tc := range []struct {
		name string
		svc  api.AgentService
		want map[string]string
	}{
		{"none", api.AgentService{Tags: []string{"primary"}}, nil},
		{"tags key=value and key|value", api.AgentService{Tags: []string{"version=v1", "env|prod", "primary"}},
			map[string]string{"version": "v1", "env": "prod"}},
		{"meta, which wins over tags", api.AgentService{Tags: []string{"version=v1"}, Meta: map[string]string{"version": "v2", "team": "pay"}},
			map[string]string{"version": "v2", "team": "pay"}},
		{"protocol keys are not labels", api.AgentService{Tags: []string{"protocol|http"}, Meta: map[string]string{"protocol": "http", "protocol-admin": "tcp"}}, nil},
		// As registered: convert makes them Kubernetes labels (and drops the
		// reserved and the unusable ones, by name), for every source alike.
		{"as registered", api.AgentService{Tags: []string{"app.kubernetes.io/Name=my app!", "-x-=" + strings.Repeat("v", 70), "!!!=dropped"}},
			map[string]string{"app.kubernetes.io/Name": "my app!", "-x-": strings.Repeat("v", 70), "!!!": "dropped"}},
		{"value may be empty", api.AgentService{Tags: []string{"canary="}}, map[string]string{"canary": ""}},
	} {
		if got := m.instanceLabels(&tc.svc); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestLocality(t *testing.T) {
	plain := testMapper(t, nil)
	keyed := testMapper(t, func(c *Config) { c.RegionMetaKey, c.ZoneMetaKey = "region", "zone" })
	node := &api.Node{Meta: map[string]string{"region": "eu-west-1", "zone": "eu-west-1a"}}
	for _, tc := range []struct {
		name string
		m    *mapper
		svc  api.AgentService
		node *api.Node
		dc   string
		want string
	}{
		{"datacenter as region", plain, api.AgentService{}, &api.Node{}, "dc1", "dc1"},
		{"node meta keys", keyed, api.AgentService{}, node, "dc1", "eu-west-1/eu-west-1a"},
		{"meta keys unused unless configured", plain, api.AgentService{}, node, "dc1", "dc1"},
		{"service locality", plain, api.AgentService{Locality: &api.Locality{Region: "us-east-1", Zone: "us-east-1b"}}, &api.Node{}, "dc1", "us-east-1/us-east-1b"},
		{"node locality", plain, api.AgentService{}, &api.Node{Locality: &api.Locality{Region: "r", Zone: "z"}}, "dc1", "r/z"},
		{"zone only: region from datacenter", keyed, api.AgentService{}, &api.Node{Meta: map[string]string{"zone": "z1"}}, "dc1", "dc1/z1"},
		{"slashes removed", keyed, api.AgentService{}, &api.Node{Meta: map[string]string{"zone": "a/b"}}, "dc1", "dc1/a-b"},
		{"nothing known", plain, api.AgentService{}, &api.Node{}, "", ""},
	} {
		if got := tc.m.locality(&tc.svc, tc.node, tc.dc); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestWeight(t *testing.T) {
	for _, tc := range []struct {
		w    api.AgentWeights
		h    model.Health
		want uint32
	}{
		{api.AgentWeights{Passing: 1, Warning: 1}, model.HealthPassing, 1},
		{api.AgentWeights{Passing: 10, Warning: 2}, model.HealthPassing, 10},
		{api.AgentWeights{Passing: 10, Warning: 2}, model.HealthWarning, 2},
		{api.AgentWeights{Passing: 10}, model.HealthWarning, 10},
		{api.AgentWeights{}, model.HealthPassing, 0},
		{api.AgentWeights{Passing: -3}, model.HealthPassing, 0},
		// Clamped like Consul's own Envoy configuration: a registrant's
		// huge weights cannot make a locality's sum pass 2^32-1, which
		// Envoy refuses (before: 2^31 and 2^32-1 were served as they were).
		{api.AgentWeights{Passing: 128}, model.HealthPassing, 128},
		{api.AgentWeights{Passing: 129}, model.HealthPassing, 128},
		{api.AgentWeights{Passing: 65535, Warning: 1 << 31}, model.HealthWarning, 128},
		{api.AgentWeights{Passing: 1 << 40}, model.HealthPassing, 128},
	} {
		if got := weight(tc.w, tc.h); got != tc.want {
			t.Errorf("weight(%+v, %v) = %d, want %d", tc.w, tc.h, got, tc.want)
		}
	}
	// The bound holds for a locality of a million instances (the default
	// per-source cap) with 33 times to spare.
	if uint64(maxWeight)*1_000_000*33 > math.MaxUint32 {
		t.Errorf("maxWeight %d: a million instances can overflow a locality's uint32 weight", maxWeight)
	}
}

func TestInstanceHealth(t *testing.T) {
	chk := func(id, status string) *api.HealthCheck { return &api.HealthCheck{CheckID: id, Status: status} }
	for _, tc := range []struct {
		name   string
		checks api.HealthChecks
		want   model.Health
		maint  bool
	}{
		{"no checks", nil, model.HealthPassing, false},
		{"all passing", api.HealthChecks{chk("serfHealth", "passing"), chk("c", "passing")}, model.HealthPassing, false},
		{"one warning", api.HealthChecks{chk("serfHealth", "passing"), chk("c", "warning")}, model.HealthWarning, false},
		{"critical wins", api.HealthChecks{chk("a", "warning"), chk("b", "critical"), chk("c", "passing")}, model.HealthCritical, false},
		{"node check critical", api.HealthChecks{chk("serfHealth", "critical"), chk("c", "passing")}, model.HealthCritical, false},
		{"service maintenance", api.HealthChecks{chk("_service_maintenance:web-1", "critical")}, model.HealthCritical, true},
		{"node maintenance", api.HealthChecks{chk("_node_maintenance", "critical")}, model.HealthCritical, true},
		{"nil check ignored", api.HealthChecks{nil}, model.HealthPassing, false},
	} {
		h, maint := instanceHealth(tc.checks)
		if h != tc.want || maint != tc.maint {
			t.Errorf("%s: got %v/%v, want %v/%v", tc.name, h, maint, tc.want, tc.maint)
		}
	}
}

func TestSkipReason(t *testing.T) {
	plain := testMapper(t, nil)
	tagged := testMapper(t, func(c *Config) { c.RequiredTags = []string{"mesh", "v1"} })
	k8s := testMapper(t, func(c *Config) { c.IncludeKubernetesSynced = true })
	entry := func(s api.AgentService) *api.ServiceEntry { return &api.ServiceEntry{Service: &s, Node: &api.Node{}} }
	for _, tc := range []struct {
		name string
		m    *mapper
		e    *api.ServiceEntry
		want string
	}{
		{"plain", plain, entry(api.AgentService{}), ""},
		{"sidecar proxy", plain, entry(api.AgentService{Kind: api.ServiceKindConnectProxy}), "kind connect-proxy"},
		{"mesh gateway", plain, entry(api.AgentService{Kind: api.ServiceKindMeshGateway}), "kind mesh-gateway"},
		{"consul-k8s synced", plain, entry(api.AgentService{Meta: map[string]string{"external-source": "kubernetes"}}), "synced from Kubernetes"},
		{"consul-k8s synced, included", k8s, entry(api.AgentService{Meta: map[string]string{"external-source": "kubernetes"}}), ""},
		{"other external source", plain, entry(api.AgentService{Meta: map[string]string{"external-source": "nomad"}}), ""},
		{"required tags present", tagged, entry(api.AgentService{Tags: []string{"v1", "x", "mesh"}}), ""},
		{"required tag missing", tagged, entry(api.AgentService{Tags: []string{"mesh"}}), "missing required tag v1"},
	} {
		if got := tc.m.skipReason(tc.e); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestMostCommon(t *testing.T) {
	if v, ok := mostCommon([]int{9090, 8080, 9090, 8080, 7070}); !ok || v != 8080 {
		t.Errorf("tie: got %d", v)
	}
	if v, _ := mostCommon([]int{9090, 8080, 9090}); v != 9090 {
		t.Errorf("majority: got %d", v)
	}
	if _, ok := mostCommon([]string(nil)); ok {
		t.Error("empty: ok")
	}
}

// entry builds a health entry; checks are "status" or "id=status".
func testEntry(node, addr string, svc api.AgentService, checks ...string) *api.ServiceEntry {
	e := &api.ServiceEntry{Node: &api.Node{Node: node, Address: addr, Datacenter: "dc1"}, Service: &svc}
	if e.Service.ID == "" {
		e.Service.ID = e.Service.Service
	}
	for _, c := range checks {
		id, status, ok := strings.Cut(c, "=")
		if !ok {
			id, status = "check", c
		}
		e.Checks = append(e.Checks, &api.HealthCheck{CheckID: id, Status: status})
	}
	return e
}

func TestMapService(t *testing.T) {
	m := testMapper(t, nil)
	warn := testMapper(t, func(c *Config) { c.IncludeWarning = true; c.Network = "vm-net"; c.NetworkMetaKey = "network" })
	vip := testMapper(t, func(c *Config) { c.VirtualAddressKey = "mesh-vip" })
	web := func(id string, port int, tags ...string) api.AgentService {
		return api.AgentService{ID: id, Service: "web", Port: port, Tags: tags, Weights: api.AgentWeights{Passing: 1, Warning: 1}}
	}
	for _, tc := range []struct {
		name       string
		m          *mapper
		entries    []*api.ServiceEntry
		want       *model.Service
		invalid    bool
		issueCount int
	}{
		{
			name:    "no entries",
			m:       m,
			entries: nil,
		},
		{
			name: "ports: most common is the service port, others per instance",
			m:    m,
			entries: []*api.ServiceEntry{
				testEntry("n1", "10.0.0.1", web("web-a", 8080), "passing"),
				testEntry("n2", "10.0.0.2", web("web-b", 8080), "passing"),
				testEntry("n3", "10.0.0.3", web("web-c", 9090), "passing"),
			},
			want: &model.Service{Name: "web", Host: "web.service.consul",
				Ports: []model.Port{{Number: 8080, Protocol: model.ProtocolTCP}},
				Instances: []model.Instance{
					{ID: "n1/web-a", Address: "10.0.0.1", Locality: "dc1", Weight: 1, Health: model.HealthPassing},
					{ID: "n2/web-b", Address: "10.0.0.2", Locality: "dc1", Weight: 1, Health: model.HealthPassing},
					{ID: "n3/web-c", Address: "10.0.0.3", Locality: "dc1", Weight: 1, Health: model.HealthPassing, Ports: model.TargetPortsFromMap(map[uint32]uint32{8080: 9090})},
				}},
		},
		{
			name: "same service ID on two nodes stays two instances",
			m:    m,
			entries: []*api.ServiceEntry{
				testEntry("n1", "10.0.0.1", web("web", 80)),
				testEntry("n2", "10.0.0.2", web("web", 80)),
			},
			want: &model.Service{Name: "web", Host: "web.service.consul",
				Ports: []model.Port{{Number: 80, Protocol: model.ProtocolTCP}},
				Instances: []model.Instance{
					{ID: "n1/web", Address: "10.0.0.1", Locality: "dc1", Weight: 1, Health: model.HealthPassing},
					{ID: "n2/web", Address: "10.0.0.2", Locality: "dc1", Weight: 1, Health: model.HealthPassing},
				}},
		},
		{
			name: "health: warning and critical out by default, ports kept",
			m:    m,
			entries: []*api.ServiceEntry{
				testEntry("n1", "10.0.0.1", web("a", 80), "warning"),
				testEntry("n2", "10.0.0.2", web("b", 80), "critical"),
				testEntry("n3", "10.0.0.3", web("c", 80), "passing", "_service_maintenance:c=critical"),
			},
			want: &model.Service{Name: "web", Host: "web.service.consul",
				Ports: []model.Port{{Number: 80, Protocol: model.ProtocolTCP}}},
		},
		{
			name: "includeWarning, network from config and node meta, warning weight",
			m:    warn,
			entries: []*api.ServiceEntry{
				func() *api.ServiceEntry {
					e := testEntry("n1", "10.0.0.1", api.AgentService{ID: "a", Port: 80, Weights: api.AgentWeights{Passing: 10, Warning: 3}}, "warning")
					e.Node.Meta = map[string]string{"network": "net-2"}
					return e
				}(),
				testEntry("n2", "10.0.0.2", web("b", 80), "passing"),
			},
			want: &model.Service{Name: "web", Host: "web.service.consul",
				Ports: []model.Port{{Number: 80, Protocol: model.ProtocolTCP}},
				Instances: []model.Instance{
					{ID: "n1/a", Address: "10.0.0.1", Locality: "dc1", Weight: 3, Health: model.HealthWarning, Network: "net-2"},
					{ID: "n2/b", Address: "10.0.0.2", Locality: "dc1", Weight: 1, Health: model.HealthPassing, Network: "vm-net"},
				}},
		},
		{
			name: "multi-port service with per-port protocols",
			m:    m,
			entries: []*api.ServiceEntry{
				testEntry("n1", "10.0.0.1", api.AgentService{ID: "w1", Service: "web",
					Meta:  map[string]string{"protocol": "http", "protocol-admin": "grpc"},
					Ports: api.ServicePorts{{Name: "http", Port: 8080, Default: true}, {Name: "admin", Port: 9090}}}),
				testEntry("n2", "10.0.0.2", api.AgentService{ID: "w2", Service: "web",
					Meta:  map[string]string{"protocol": "http", "protocol-admin": "grpc"},
					Ports: api.ServicePorts{{Name: "http", Port: 8081, Default: true}, {Name: "admin", Port: 9090}}}),
				// A single-port instance maps onto the default port.
				testEntry("n3", "10.0.0.3", api.AgentService{ID: "w3", Service: "web", Port: 8080, Meta: map[string]string{"protocol": "http"}}),
			},
			want: &model.Service{Name: "web", Host: "web.service.consul",
				Ports: []model.Port{{Number: 8080, Protocol: model.ProtocolHTTP, Name: "http"}, {Number: 9090, Protocol: model.ProtocolGRPC, Name: "admin"}},
				Instances: []model.Instance{
					{ID: "n1/w1", Address: "10.0.0.1", Locality: "dc1", Health: model.HealthPassing},
					{ID: "n2/w2", Address: "10.0.0.2", Locality: "dc1", Health: model.HealthPassing, Ports: model.TargetPortsFromMap(map[uint32]uint32{8080: 8081})},
					{ID: "n3/w3", Address: "10.0.0.3", Locality: "dc1", Health: model.HealthPassing},
				}},
		},
		{
			name: "unknown protocol: default and an issue",
			m:    m,
			entries: []*api.ServiceEntry{
				testEntry("n1", "10.0.0.1", api.AgentService{ID: "a", Port: 80, Meta: map[string]string{"protocol": "carrier-pigeon"}}),
			},
			want: &model.Service{Name: "web", Host: "web.service.consul",
				Ports:     []model.Port{{Number: 80, Protocol: model.ProtocolTCP}},
				Instances: []model.Instance{{ID: "n1/a", Address: "10.0.0.1", Locality: "dc1", Health: model.HealthPassing}}},
			issueCount: 1,
		},
		{
			name: "protocol by majority, case-insensitive",
			m:    m,
			entries: []*api.ServiceEntry{
				testEntry("n1", "10.0.0.1", api.AgentService{ID: "a", Port: 80, Meta: map[string]string{"protocol": "HTTP2"}}),
				testEntry("n2", "10.0.0.2", api.AgentService{ID: "b", Port: 80, Tags: []string{"protocol|http2"}}),
				testEntry("n3", "10.0.0.3", api.AgentService{ID: "c", Port: 80, Meta: map[string]string{"protocol": "http"}}),
				testEntry("n4", "10.0.0.4", api.AgentService{ID: "d", Port: 80}),
			},
			want: &model.Service{Name: "web", Host: "web.service.consul",
				Ports: []model.Port{{Number: 80, Protocol: model.ProtocolHTTP2}},
				Instances: []model.Instance{
					{ID: "n1/a", Address: "10.0.0.1", Locality: "dc1", Health: model.HealthPassing},
					{ID: "n2/b", Address: "10.0.0.2", Locality: "dc1", Health: model.HealthPassing},
					{ID: "n3/c", Address: "10.0.0.3", Locality: "dc1", Health: model.HealthPassing},
					{ID: "n4/d", Address: "10.0.0.4", Locality: "dc1", Health: model.HealthPassing},
				}},
		},
		{
			name: "bad instances skipped, others kept; hostname address; sidecars ignored",
			m:    m,
			entries: []*api.ServiceEntry{
				testEntry("n1", "", api.AgentService{ID: "noaddr", Port: 80}),
				testEntry("n2", "10.0.0.2", api.AgentService{ID: "badaddr", Port: 80, Address: "not a host"}),
				testEntry("n3", "10.0.0.3", api.AgentService{ID: "badport", Port: 70000}),
				testEntry("n4", "10.0.0.4", api.AgentService{ID: "ok", Port: 80, Address: "DB.Example.com"}),
				testEntry("n5", "10.0.0.5", api.AgentService{ID: "web-sidecar-proxy", Port: 21000, Kind: api.ServiceKindConnectProxy}),
				nil,
				{Node: &api.Node{Node: "n6"}},
			},
			want: &model.Service{Name: "web", Host: "web.service.consul",
				Ports:     []model.Port{{Number: 80, Protocol: model.ProtocolTCP}},
				Instances: []model.Instance{{ID: "n4/ok", Address: "db.example.com", Locality: "dc1", Health: model.HealthPassing}}},
			issueCount: 5,
		},
		{
			name: "instance without a port uses the service port",
			m:    m,
			entries: []*api.ServiceEntry{
				testEntry("n1", "10.0.0.1", api.AgentService{ID: "a", Port: 80}),
				testEntry("n2", "10.0.0.2", api.AgentService{ID: "b"}),
			},
			want: &model.Service{Name: "web", Host: "web.service.consul",
				Ports: []model.Port{{Number: 80, Protocol: model.ProtocolTCP}},
				Instances: []model.Instance{
					{ID: "n1/a", Address: "10.0.0.1", Locality: "dc1", Health: model.HealthPassing},
					{ID: "n2/b", Address: "10.0.0.2", Locality: "dc1", Health: model.HealthPassing},
				}},
		},
		{
			name:       "no port anywhere: invalid service",
			m:          m,
			entries:    []*api.ServiceEntry{testEntry("n1", "10.0.0.1", api.AgentService{ID: "a"})},
			invalid:    true,
			issueCount: 1,
		},
		{
			name: "virtual addresses: consul-virtual, then the configured key (meta or tag), not a label",
			m:    vip,
			entries: []*api.ServiceEntry{
				testEntry("n1", "10.0.0.1", api.AgentService{ID: "a", Service: "web", Port: 80, Meta: map[string]string{"mesh-vip": "10.96.0.7"},
					TaggedAddresses: map[string]api.ServiceAddress{"consul-virtual": {Address: "240.0.0.3", Port: 80}}}),
				testEntry("n2", "10.0.0.2", api.AgentService{ID: "b", Service: "web", Port: 80, Tags: []string{"mesh-vip=10.96.0.7"},
					TaggedAddresses: map[string]api.ServiceAddress{"consul-virtual": {Address: "240.0.0.3", Port: 80}}}),
			},
			want: &model.Service{Name: "web", Host: "web.service.consul", Addresses: []string{"240.0.0.3", "10.96.0.7"},
				Ports: []model.Port{{Number: 80, Protocol: model.ProtocolTCP}},
				Instances: []model.Instance{
					{ID: "n1/a", Address: "10.0.0.1", Locality: "dc1", Health: model.HealthPassing},
					{ID: "n2/b", Address: "10.0.0.2", Locality: "dc1", Health: model.HealthPassing},
				}},
		},
		{
			name: "virtual addresses: not an IP address is left out and reported; the same IP once",
			m:    vip,
			entries: []*api.ServiceEntry{
				testEntry("n1", "10.0.0.1", api.AgentService{ID: "a", Service: "web", Port: 80, Meta: map[string]string{"mesh-vip": "db.example"},
					TaggedAddresses: map[string]api.ServiceAddress{"consul-virtual": {Address: "240.0.0.3"}}}),
				testEntry("n2", "10.0.0.2", api.AgentService{ID: "b", Service: "web", Port: 80, Meta: map[string]string{"mesh-vip": "240.0.0.3"},
					TaggedAddresses: map[string]api.ServiceAddress{"consul-virtual": {Address: "240.0.0.3"}}}),
				testEntry("n3", "10.0.0.3", api.AgentService{ID: "c", Service: "web", Port: 80, Meta: map[string]string{"mesh-vip": "db.example"}}),
			},
			issueCount: 1,
			want: &model.Service{Name: "web", Host: "web.service.consul", Addresses: []string{"240.0.0.3"},
				Ports: []model.Port{{Number: 80, Protocol: model.ProtocolTCP}},
				Instances: []model.Instance{
					{ID: "n1/a", Address: "10.0.0.1", Locality: "dc1", Health: model.HealthPassing},
					{ID: "n2/b", Address: "10.0.0.2", Locality: "dc1", Health: model.HealthPassing},
					{ID: "n3/c", Address: "10.0.0.3", Locality: "dc1", Health: model.HealthPassing},
				}},
		},
		{
			name: "an instance with more ports than limits.portsPerService is skipped by name; the service keeps its ports",
			m:    m, // 4 ports per instance
			entries: []*api.ServiceEntry{
				testEntry("n1", "10.0.0.1", api.AgentService{ID: "a", Service: "web", Port: 80}),
				testEntry("n2", "10.0.0.2", api.AgentService{ID: "b", Service: "web", Ports: api.ServicePorts{
					{Name: "p1", Port: 81, Default: true}, {Name: "p2", Port: 82}, {Name: "p3", Port: 83}, {Name: "p4", Port: 84}, {Name: "p5", Port: 85}}}),
			},
			issueCount: 1,
			want: &model.Service{Name: "web", Host: "web.service.consul",
				Ports:     []model.Port{{Number: 80, Protocol: model.ProtocolTCP}},
				Instances: []model.Instance{{ID: "n1/a", Address: "10.0.0.1", Locality: "dc1", Health: model.HealthPassing}}},
		},
		{
			name:    "only sidecars: nothing",
			m:       m,
			entries: []*api.ServiceEntry{testEntry("n1", "10.0.0.1", api.AgentService{ID: "a", Port: 1, Kind: api.ServiceKindConnectProxy})},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.m.mapService("web", "", tc.entries)
			if r.invalid != tc.invalid {
				t.Errorf("invalid = %v, want %v", r.invalid, tc.invalid)
			}
			if len(r.issues) != tc.issueCount {
				t.Errorf("issues = %+v, want %d", r.issues, tc.issueCount)
			}
			if !reflect.DeepEqual(r.svc, tc.want) {
				t.Errorf("got  %+v\nwant %+v", r.svc, tc.want)
			}
		})
	}
}

func TestMapServicePeerHost(t *testing.T) {
	m := testMapper(t, nil)
	r := m.mapService("web", "west", []*api.ServiceEntry{testEntry("n1", "10.0.0.1", api.AgentService{ID: "a", Port: 80})})
	if r.svc == nil || r.svc.Host != "web.service.west.peer.consul" {
		t.Fatalf("got %+v", r.svc)
	}
	if k := (watchKey{peer: "west", name: "web"}); k.scope() != "peer/west/web" {
		t.Errorf("scope %q", k.scope())
	}
}

func TestTaggedAddressPort(t *testing.T) {
	m := testMapper(t, func(c *Config) { c.TaggedAddresses = []string{"wan_ipv4"} })
	e := testEntry("n1", "10.0.0.1", api.AgentService{ID: "a", Port: 8080,
		TaggedAddresses: map[string]api.ServiceAddress{"wan_ipv4": {Address: "198.51.100.1", Port: 18080}}})
	e2 := testEntry("n2", "10.0.0.2", api.AgentService{ID: "b", Port: 8080,
		TaggedAddresses: map[string]api.ServiceAddress{"wan_ipv4": {Address: "198.51.100.2", Port: 18080}}})
	e3 := testEntry("n3", "10.0.0.3", api.AgentService{ID: "c", Port: 8080})
	r := m.mapService("web", "", []*api.ServiceEntry{e, e2, e3})
	want := []model.Instance{
		{ID: "n1/a", Address: "198.51.100.1", Locality: "dc1", Health: model.HealthPassing},
		{ID: "n2/b", Address: "198.51.100.2", Locality: "dc1", Health: model.HealthPassing},
		{ID: "n3/c", Address: "10.0.0.3", Locality: "dc1", Health: model.HealthPassing, Ports: model.TargetPortsFromMap(map[uint32]uint32{18080: 8080})},
	}
	if r.svc == nil || r.svc.Ports[0].Number != 18080 || !reflect.DeepEqual(r.svc.Instances, want) {
		t.Fatalf("got %+v", r.svc)
	}
}

func TestCatalogFilter(t *testing.T) {
	c := Config{RequiredTags: []string{"mesh", `we"ird`}}
	want := `ServiceKind == "" and ServiceMeta["external-source"] != "kubernetes" and "mesh" in ServiceTags and "we\"ird" in ServiceTags`
	if got := catalogFilter(&c); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	c = Config{IncludeKubernetesSynced: true}
	if got := catalogFilter(&c); got != `ServiceKind == ""` {
		t.Errorf("got %s", got)
	}
}
