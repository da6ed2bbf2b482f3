package fidelity

import (
	"slices"
	"strings"
	"testing"

	consulapi "github.com/hashicorp/consul/api"
	"google.golang.org/protobuf/encoding/protowire"
)

func entry(node, addr string, svc *consulapi.AgentService, status string) *consulapi.ServiceEntry {
	return &consulapi.ServiceEntry{
		Node:    &consulapi.Node{Node: node, Address: addr},
		Service: svc,
		Checks:  consulapi.HealthChecks{{Node: node, CheckID: "c", Status: status}},
	}
}

// TestConsulService: the registry side read from Consul's own answers, not
// the adapter's mapping.
func TestConsulService(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []*consulapi.ServiceEntry
		want    string // ports; endpoints; addresses
	}{
		{"critical and warning instances are not endpoints", []*consulapi.ServiceEntry{
			entry("n1", "10.0.0.1", &consulapi.AgentService{Service: "web", Port: 8080, Meta: map[string]string{"protocol": "http"}}, consulapi.HealthPassing),
			entry("n2", "10.0.0.2", &consulapi.AgentService{Service: "web", Port: 8080, Meta: map[string]string{"protocol": "http"}}, consulapi.HealthCritical),
			entry("n3", "10.0.0.3", &consulapi.AgentService{Service: "web", Port: 8080, Meta: map[string]string{"protocol": "http"}}, consulapi.HealthWarning),
		}, ":8080/HTTP; 10.0.0.1:8080; "},
		{"the most common port is the service port; others are target ports; service address wins", []*consulapi.ServiceEntry{
			entry("n1", "10.0.0.1", &consulapi.AgentService{Service: "pg", Port: 5432}, consulapi.HealthPassing),
			entry("n2", "10.0.0.2", &consulapi.AgentService{Service: "pg", Port: 5432, Address: "10.9.0.2"}, consulapi.HealthPassing),
			entry("n3", "10.0.0.3", &consulapi.AgentService{Service: "pg", Port: 6432}, consulapi.HealthPassing),
		}, ":5432/TCP; 10.0.0.1:5432 10.0.0.3:6432 10.9.0.2:5432; "},
		{"multi-port, a virtual IP, a Connect proxy left out", []*consulapi.ServiceEntry{
			entry("n1", "10.0.0.1", &consulapi.AgentService{Service: "mp", Ports: consulapi.ServicePorts{{Name: "api", Port: 8000, Default: true}, {Name: "admin", Port: 9000}},
				TaggedAddresses: map[string]consulapi.ServiceAddress{"consul-virtual": {Address: "240.0.0.7"}}}, consulapi.HealthPassing),
			entry("n1", "10.0.0.1", &consulapi.AgentService{Service: "mp-sidecar-proxy", Kind: consulapi.ServiceKindConnectProxy, Port: 21000}, consulapi.HealthPassing),
		}, "admin:9000/TCP api:8000/TCP; 10.0.0.1:8000 10.0.0.1:9000; 240.0.0.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := consulService("x", tc.entries)
			var ports, eps []string
			for n, p := range s.Ports {
				ports = append(ports, n+":"+itoa(p.Number)+"/"+p.Protocol)
			}
			for _, e := range s.Endpoints {
				eps = append(eps, hostPort(e.Address, e.Port))
			}
			slices.Sort(ports)
			slices.Sort(eps)
			got := strings.Join(ports, " ") + "; " + strings.Join(eps, " ") + "; " + strings.Join(s.Addresses, " ")
			if got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
			if s.Host != "x.service.consul" {
				t.Errorf("host %q", s.Host)
			}
		})
	}
}

func itoa(n uint32) string { return hostPort("", n)[1:] }

// TestDecodeAddress reads a Service and a Workload as istiod encodes them.
func TestDecodeAddress(t *testing.T) {
	msg := func(fields ...[]byte) []byte { return slices.Concat(fields...) }
	str := func(n protowire.Number, s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, n, protowire.BytesType), s)
	}
	by := func(n protowire.Number, b []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, n, protowire.BytesType), b)
	}
	service := msg(str(1, "kubernetes"), str(2, "default"), str(3, "kubernetes.default.svc.cluster.local"),
		by(4, msg(str(1, ""), by(2, []byte{10, 96, 0, 1}))))
	workload := msg(str(1, "pod-1"), str(2, "ns"), by(3, []byte{10, 1, 2, 3}), str(20, "uid"))
	v := ZtunnelView{Services: map[string][]string{}, Workloads: map[string][]string{}}
	if err := decodeAddress(by(2, service), v); err != nil {
		t.Fatal(err)
	}
	if err := decodeAddress(by(1, workload), v); err != nil {
		t.Fatal(err)
	}
	if got := v.Services["kubernetes.default.svc.cluster.local"]; !slices.Equal(got, []string{"10.96.0.1"}) {
		t.Errorf("services %v", v.Services)
	}
	if got := v.Workloads["ns/pod-1"]; !slices.Equal(got, []string{"10.1.2.3"}) {
		t.Errorf("workloads %v", v.Workloads)
	}
	if d := DiffZtunnel(View{"pg.service.consul": {}}, v); !slices.Equal(d, []string{"host pg.service.consul: not in what istiod gives ztunnel (ambient)"}) {
		t.Errorf("diff %v", d)
	}
}
