package e2e

// What a workload in the mesh can reach: the services users register in
// Consul, checked in what the real istiod gives a sidecar (clusters,
// endpoints, listeners, DNS name table) against expectations written by hand
// from what each step registered, not computed by the adapter's code.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/registry-adapter/registry-adapter/fidelity"
)

// instance is one Consul registration for the reach tests.
type instance struct {
	service, node, addr string
	port                int                    // single-port service
	ports               consulapi.ServicePorts // multi-port service
	protocol            string
	status              string // health check status; passing when empty
}

func (in instance) register(t *testing.T, c *consulapi.Client) {
	t.Helper()
	status := in.status
	if status == "" {
		status = consulapi.HealthPassing
	}
	var meta map[string]string
	if in.protocol != "" {
		meta = map[string]string{"protocol": in.protocol}
	}
	_, err := c.Catalog().Register(&consulapi.CatalogRegistration{
		Node: in.node, Address: in.addr,
		Service: &consulapi.AgentService{ID: in.service, Service: in.service, Port: in.port, Ports: in.ports, Meta: meta},
		Check:   &consulapi.AgentCheck{Node: in.node, CheckID: "health-" + in.service, Name: "health", Status: status, ServiceID: in.service},
	}, nil)
	if err != nil {
		t.Fatalf("register %s on %s: %v", in.service, in.node, err)
	}
}

// svc builds a hand-written expectation: host, its ports (name, number,
// protocol) and, per port name, the healthy endpoints as "address:target".
func svc(host string, ports map[string]fidelity.Port, endpoints map[string][]string) *fidelity.Service {
	s := placed(&fidelity.Service{Host: host, Ports: ports, Endpoints: map[string]fidelity.Endpoint{}})
	for portName, eps := range endpoints {
		for _, e := range eps {
			addr, port, _ := strings.Cut(e, ":")
			var n uint32
			fmt.Sscan(port, &n)
			s.Endpoints[addr+"/"+portName] = fidelity.Endpoint{Address: addr, PortName: portName, Port: n}
		}
	}
	return s
}

// TestSidecarReachesWhatUsersRegister: an HTTP service whose second instance
// is critical, two TCP services on one port, a multi-port service whose
// instances listen on different ports, a service addressed by a DNS name,
// and the same as MESH_EXTERNAL; after each step, a sidecar's view from the
// real istiod is compared with what the test registered. An endpoint-only
// change then reaches the sidecar as EDS with no CDS or LDS reply. In both
// output modes, with the same expectations.
func TestSidecarReachesWhatUsersRegister(t *testing.T) {
	t.Parallel()
	bothModes(t, testSidecarReaches)
}

func testSidecarReaches(t *testing.T, mode string) {
	c, addr := startConsul(t, 0)
	for _, in := range []instance{
		{service: "web", node: "web-1", addr: "10.40.0.1", port: 8080, protocol: "http"},
		{service: "web", node: "web-2", addr: "10.40.0.2", port: 8080, protocol: "http", status: consulapi.HealthCritical},
		{service: "pg-a", node: "pg-a-1", addr: "10.40.1.1", port: 5432},
		{service: "pg-b", node: "pg-b-1", addr: "10.40.2.1", port: 5432},
		{service: "mp", node: "mp-1", addr: "10.40.3.1", protocol: "http",
			ports: consulapi.ServicePorts{{Name: "api", Port: 8000, Default: true}, {Name: "admin", Port: 9000}}},
		{service: "mp", node: "mp-2", addr: "10.40.3.2", protocol: "http",
			ports: consulapi.ServicePorts{{Name: "api", Port: 8000, Default: true}, {Name: "admin", Port: 9000}}},
		{service: "mp", node: "mp-3", addr: "10.40.3.3", protocol: "http",
			ports: consulapi.ServicePorts{{Name: "api", Port: 8001, Default: true}, {Name: "admin", Port: 9001}}},
		{service: "ext", node: "ext-1", addr: "db.example.internal", port: 3306},
	} {
		in.register(t, c)
	}
	tcp := func(n uint32) map[string]fidelity.Port {
		return map[string]fidelity.Port{"tcp": {Number: n, Protocol: "TCP"}}
	}
	want := fidelity.View{
		// web-2 is critical: not an endpoint.
		"web.service.consul": svc("web.service.consul", map[string]fidelity.Port{"http": {Number: 8080, Protocol: "HTTP"}},
			map[string][]string{"http": {"10.40.0.1:8080"}}),
		"pg-a.service.consul": svc("pg-a.service.consul", tcp(5432), map[string][]string{"tcp": {"10.40.1.1:5432"}}),
		"pg-b.service.consul": svc("pg-b.service.consul", tcp(5432), map[string][]string{"tcp": {"10.40.2.1:5432"}}),
		// Service ports 8000 and 9000 (two of three instances); mp-3 is
		// reached at its own target ports.
		"mp.service.consul": svc("mp.service.consul",
			map[string]fidelity.Port{"api": {Number: 8000, Protocol: "HTTP"}, "admin": {Number: 9000, Protocol: "HTTP"}},
			map[string][]string{
				"api":   {"10.40.3.1:8000", "10.40.3.2:8000", "10.40.3.3:8001"},
				"admin": {"10.40.3.1:9000", "10.40.3.2:9000", "10.40.3.3:9001"},
			}),
		// Addressed by DNS name: a STRICT_DNS cluster with the name itself.
		"ext.service.consul": svc("ext.service.consul", tcp(3306), map[string][]string{"tcp": {"db.example.internal:3306"}}),
	}

	a := startAdapter(t, withMode(consulConfig(addr), mode), 0)
	p := startIstiod(t, meshFor(a.xdsAddr))
	p.waitReady(t)
	step := func(what string, want fidelity.View) {
		t.Helper()
		eventually(t, 30*time.Second, what+": registry and sidecar faithful", func() error {
			if err := faithful(t, a, p); err != nil {
				return err
			}
			got, err := fidelity.Istiod(context.Background(), http.DefaultClient, "http://"+p.httpAddr)
			if err != nil {
				return err
			}
			if d := fidelity.Diff(placement(want), placement(got)); len(d) > 0 {
				return fmt.Errorf("istiod places the services elsewhere than the test expects:\n%s", strings.Join(d, "\n"))
			}
			return reaches(t, p, want)
		})
	}
	step("initial", want)

	// The same, checked by `check` with Consul read directly.
	out, err := runCheckArgs(t, a, p, "--xds", p.grpcAddr, "--consul", addr)
	if err != nil || !strings.Contains(out, "istiod is faithful") {
		t.Errorf("check --xds --consul: %v\n%s", err, out)
	}

	// An endpoint-only change: a third web instance. The sidecar gets new
	// endpoints and no cluster or listener reply.
	px, err := p.sidecar(t)
	if err != nil {
		t.Fatal(err)
	}
	before := px.Replies()
	instance{service: "web", node: "web-3", addr: "10.40.0.3", port: 8080, protocol: "http"}.register(t, c)
	want["web.service.consul"] = svc("web.service.consul", map[string]fidelity.Port{"http": {Number: 8080, Protocol: "HTTP"}},
		map[string][]string{"http": {"10.40.0.1:8080", "10.40.0.3:8080"}})
	step("a third web instance", want)
	after := px.Replies()
	for _, typ := range []string{fidelity.TypeCluster, fidelity.TypeListener, fidelity.TypeNameTable} {
		if after[typ] != before[typ] {
			t.Errorf("an endpoint-only change sent %d %s replies to the sidecar, want none", after[typ]-before[typ], typ)
		}
	}
	if after[fidelity.TypeEndpoint] <= before[fidelity.TypeEndpoint] {
		t.Errorf("no EDS reply for an endpoint-only change (%d -> %d)", before[fidelity.TypeEndpoint], after[fidelity.TypeEndpoint])
	}
	t.Logf("replies for one endpoint-only change: %v -> %v", before, after)

	// The critical instance recovers; pg-b goes away.
	instance{service: "web", node: "web-2", addr: "10.40.0.2", port: 8080, protocol: "http"}.register(t, c)
	deregister(t, c, "pg-b-1", "pg-b")
	want["web.service.consul"] = svc("web.service.consul", map[string]fidelity.Port{"http": {Number: 8080, Protocol: "HTTP"}},
		map[string][]string{"http": {"10.40.0.1:8080", "10.40.0.2:8080", "10.40.0.3:8080"}})
	delete(want, "pg-b.service.consul")
	step("web-2 passing, pg-b gone", want)

	// MESH_EXTERNAL: the same services, served as outside the mesh.
	cfg, err := os.ReadFile(a.configPath)
	if err != nil {
		t.Fatal(err)
	}
	external := strings.Replace(string(cfg), "\noutput: {", "\noutput: {location: MESH_EXTERNAL, ", 1)
	if err := os.WriteFile(a.configPath, []byte(external), 0o600); err != nil {
		t.Fatal(err)
	}
	a.restart(t)
	for _, s := range want {
		s.Location = fidelity.MeshExternal
	}
	step("MESH_EXTERNAL", want)
}

// runCheckArgs runs `registry-adapter check` against istiod with extra flags.
func runCheckArgs(t *testing.T, a *adapterProc, p *istiodProc, extra ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	args := append([]string{"check", "--config", a.configPath, "--istiod", "http://" + p.httpAddr}, extra...)
	cmd := exec.Command(adapterBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestAmbientZtunnelLacksConfigSourceEntries records what ambient data
// planes get from an xds:// config source: nothing. istiod runs with
// PILOT_ENABLE_AMBIENT=true (and AMBIENT_ENABLE_STATUS=false: without a
// k8s:// config source its status queue would have no notifier and istiod
// panics at start). What istiod gives a ztunnel (delta xDS,
// istio.workload.Address, wildcard) holds the Kubernetes Service
// kubernetes.default but not the adapter's host, which is in istiod's
// registry. If a new Istio changes this, this test fails and README's
// Compatibility section must change with it.
func TestAmbientZtunnelLacksConfigSourceEntries(t *testing.T) {
	t.Parallel()
	groupNamespace(t, "default") // kubernetes.default, the control below
	c, addr := startConsul(t, 0)
	instance{service: "pg-a", node: "pg-a-1", addr: "10.41.1.1", port: 5432}.register(t, c)
	a := startAdapter(t, consulConfig(addr), 0)
	runDir := t.TempDir()
	mesh := runDir + "/mesh.yaml"
	if err := os.WriteFile(mesh, []byte(meshFor(a.xdsAddr)), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := launchIstiod(t, runDir, []string{"PILOT_ENABLE_AMBIENT=true", "AMBIENT_ENABLE_STATUS=false"}, mesh)
	if err != nil {
		t.Fatal(err)
	}
	p.waitReady(t)
	eventually(t, 30*time.Second, "istiod's registry holds the adapter's host", func() error {
		got, err := fidelity.Istiod(context.Background(), http.DefaultClient, "http://"+p.httpAddr)
		if err != nil {
			return err
		}
		if _, ok := got["pg-a.service.consul"]; !ok {
			return fmt.Errorf("registry: %v", got.Hosts())
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	z, err := fidelity.Ztunnel(ctx, fidelity.ProxyConfig{Address: p.grpcAddr})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := z.Services["kubernetes.default.svc.cluster.local"]; !ok {
		t.Fatalf("ztunnel's view lacks kubernetes.default too, so it proves nothing: %v", z.Services)
	}
	if _, ok := z.Services["pg-a.service.consul"]; ok {
		t.Errorf("ztunnel's view holds pg-a.service.consul: config-source entries reach ambient now; update README's Compatibility section")
	}
	t.Logf("ztunnel's view: services %v", z.Services)

	// The same, reproducible with check.
	out, err := runCheckArgs(t, a, p, "--xds", p.grpcAddr, "--ztunnel")
	if err == nil || !strings.Contains(out, "host pg-a.service.consul: not in what istiod gives ztunnel (ambient)") {
		t.Errorf("check --ztunnel: %v\n%s", err, out)
	}
}

// TestCheckNamesServicesWithoutAddress is the proxy-view check's deliberate
// fault, kept as a test: with address allocation off, two TCP services on one
// port share istiod's 0.0.0.0_5432 listener and neither is in the sidecar's
// name table. check must fail (exit 3) and name both hosts, while istiod's
// registry is faithful.
func TestCheckNamesServicesWithoutAddress(t *testing.T) {
	t.Parallel()
	c, addr := startConsul(t, 0)
	for _, in := range []instance{
		{service: "pg-a", node: "pg-a-1", addr: "10.42.1.1", port: 5432},
		{service: "pg-b", node: "pg-b-1", addr: "10.42.2.1", port: 5432},
	} {
		in.register(t, c)
	}
	a := startAdapter(t, consulConfig(addr)+"output: {addresses: {allocate: [none]}}\n", 0)
	p := startIstiod(t, meshFor(a.xdsAddr))
	p.waitReady(t)
	eventually(t, 30*time.Second, "istiod's registry holds both services", func() error {
		got := strings.Join(p.configs(t), " ")
		for _, host := range []string{"pg-a.service.consul", "pg-b.service.consul"} {
			if !strings.Contains(got, host) {
				return fmt.Errorf("no %s in %s", host, got)
			}
		}
		return nil
	})

	out, err := runCheckArgs(t, a, p, "--xds", p.grpcAddr, "--consul", addr)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("check without addresses: %v, want exit 3 (differences)\n%s", err, out)
	}
	for _, host := range []string{"pg-a.service.consul", "pg-b.service.consul"} {
		for _, want := range []string{
			"host " + host + " port 5432 (TCP): no address, so no listener of its own",
			"host " + host + ": not in the sidecar's DNS name table",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("check's report lacks %q:\n%s", want, out)
			}
		}
	}
	// istiod's registry itself is faithful: only the sidecar's view differs.
	if !regexp.MustCompile(`(?m)^istiod's registry .*: 0 differences$`).MatchString(out) {
		t.Errorf("check reports registry differences, want only the sidecar's:\n%s", out)
	}
}
