package azure

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource/cloudsourcetest"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newTestSource makes a source reading f through the endpoint override with
// a fake credential. Its poll schedule is fast, which the config would
// refuse.
func newTestSource(t *testing.T, f *fakeARM, mutate func(*Config)) (*Source, *sources.Reporter) {
	t.Helper()
	cfg := Config{SubscriptionID: subscription, Endpoint: f.srv.URL}
	if mutate != nil {
		mutate(&cfg)
	}
	rep := sources.NewReporter("azure-test", nil)
	opts := sources.Options{Name: "azure-test", Logger: zaptest.NewLogger(t), Reporter: rep}
	s, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Lister.credential = fakeCredential{}
	s.Lister.computeTransport = f.transport(t)
	s.Lister.networkTransport = s.Lister.computeTransport
	s.Poll = poll.New(poll.Config{RefreshInterval: 10 * time.Millisecond, Timeout: 5 * time.Second, MaxBackoff: 1500 * time.Millisecond},
		s.Lister, opts)
	return s, rep
}

func mustList(t *testing.T, s *Source) []model.Group {
	t.Helper()
	groups, err := s.Lister.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return groups
}

const (
	vmWeb1 = "00000000-0000-0000-0000-00000000a001"
	vmWeb2 = "00000000-0000-0000-0000-00000000a002"
	vmAPI1 = "00000000-0000-0000-0000-00000000a004"
	vmDB1  = "00000000-0000-0000-0000-00000000a009"
	vmWeb3 = "00000000-0000-0000-0000-00000000a011"
)

var ports = map[string]string{"mesh-ports": "http:8080,grpc:9090"}

func tags(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func withPorts(m map[string]string) map[string]string {
	m["mesh-ports"] = ports["mesh-ports"]
	return m
}

// fixture fills f with a subscription covering every mapping rule.
func fixture(f *fakeARM) {
	f.put(azvm{name: "web-1", rg: "rg-mesh", zone: "1", vmID: vmWeb1, ip: "10.1.0.4", principalID: "p-web-1",
		tags: withPorts(tags("mesh-service", "web", "version", "v1"))})
	f.put(azvm{name: "web-2", rg: "rg-mesh", vmID: vmWeb2, ip: "10.1.0.5", userAssigned: "p-web-2",
		nicRefCase: "RG-MESH", tags: withPorts(tags("mesh-service", "web, api", "version", "v2"))})
	f.put(azvm{name: "api-stopped", rg: "rg-mesh", vmID: "00000000-0000-0000-0000-00000000a003", ip: "10.1.0.6",
		power: "deallocated", tags: tags("mesh-service", "api")})
	f.put(azvm{name: "api-1", rg: "rg-other", location: "westeurope", zone: "2", vmID: vmAPI1, ip: "10.2.0.4",
		tags: tags("Mesh-Service", "api")}) // tag names are case-insensitive; ports from the config
	f.put(azvm{name: "opted-out", rg: "rg-mesh", vmID: "00000000-0000-0000-0000-00000000a005", ip: "10.1.0.7",
		tags: withPorts(tags("mesh-service", "web", "mesh-opt-out", "true"))})
	f.put(azvm{name: "auto-registered", rg: "rg-mesh", vmID: "00000000-0000-0000-0000-00000000a006", ip: "10.1.0.8",
		tags: withPorts(tags("mesh-service", "web", "istio.io-autoRegistrationGroup", "web"))})
	f.put(azvm{name: "untagged", rg: "rg-mesh", vmID: "00000000-0000-0000-0000-00000000a007", ip: "10.1.0.9"})
	f.put(azvm{name: "bad-ports", rg: "rg-mesh", vmID: "00000000-0000-0000-0000-00000000a008", ip: "10.1.0.10",
		tags: tags("mesh-service", "web", "mesh-ports", "htp:80")})
	f.put(azvm{name: "db-1", rg: "rg-mesh", vmID: vmDB1, ip: "10.1.0.11",
		tags: tags("mesh-service", "db,cache", "mesh-ports", "tcp:5432")})
	f.put(azvm{name: "starting", rg: "rg-mesh", vmID: "00000000-0000-0000-0000-00000000a010", ip: "10.1.0.12",
		power: "starting", tags: withPorts(tags("mesh-service", "web"))})
}

func vnet(rg string) string {
	return rgID(rg) + "/providers/Microsoft.Network/virtualNetworks/vnet-" + rg
}

func inst(id, addr, locality, network string, labels map[string]string, identity string) model.Instance {
	return model.Instance{ID: id, Address: addr, Labels: model.LabelsFromMap(labels), Locality: locality, Network: network,
		Identity: identity, Health: model.HealthUnknown}
}

func group(name string, ports []model.Port, instances ...model.Instance) model.Group {
	return model.Group{Scope: name, Services: []model.Service{{
		Name: name, Host: name + ".azure.internal", Ports: ports, Instances: instances,
	}}}
}

var (
	httpGRPC = []model.Port{{Number: 8080, Protocol: model.ProtocolHTTP}, {Number: 9090, Protocol: model.ProtocolGRPC}}
	web1     = inst(vmWeb1, "10.1.0.4", "eastus/eastus-1", vnet("rg-mesh"),
		withPorts(tags("mesh-service", "web", "version", "v1")), "p-web-1")
	web2 = inst(vmWeb2, "10.1.0.5", "eastus", vnet("rg-mesh"),
		withPorts(tags("mesh-service", "web, api", "version", "v2")), "p-web-2")
	api1 = inst(vmAPI1, "10.2.0.4", "westeurope/westeurope-2", vnet("rg-other"), tags("Mesh-Service", "api"), "")
	db1  = inst(vmDB1, "10.1.0.11", "eastus", vnet("rg-mesh"), tags("mesh-service", "db,cache", "mesh-ports", "tcp:5432"), "")
)

func fixtureGroups() []model.Group {
	return []model.Group{
		group("api", []model.Port{{Number: 8000, Protocol: model.ProtocolHTTP}, httpGRPC[0], httpGRPC[1]}, web2, api1),
		group("cache", []model.Port{{Number: 5432, Protocol: model.ProtocolTCP}}, db1),
		group("db", []model.Port{{Number: 5432, Protocol: model.ProtocolTCP}}, db1),
		group("web", httpGRPC, web1, web2),
	}
}

func TestListJoinsVMsAndNICsAcrossPages(t *testing.T) {
	f := newFakeARM(t)
	fixture(f)
	s, _ := newTestSource(t, f, func(c *Config) { c.Ports = []Port{{Number: 8000, Protocol: "http"}} })
	cloudsourcetest.AssertGroups(t, mustList(t, s), fixtureGroups())

	// Ten VMs and ten NICs, two a page: five pages each, chained by nextLink.
	f.mu.Lock()
	reqs := slices.Clone(f.requests)
	f.mu.Unlock()
	var vmPages, nicPages, pipPages int
	for _, r := range reqs {
		switch {
		case strings.Contains(r, "/virtualMachines?"):
			vmPages++
		case strings.Contains(r, "/networkInterfaces?"):
			nicPages++
		case strings.Contains(r, "/publicIPAddresses?"):
			pipPages++
		}
	}
	if vmPages != 5 || nicPages != 5 || pipPages != 0 {
		t.Errorf("pages: %d VMs, %d NICs, %d public IPs; want 5, 5, 0\n%s", vmPages, nicPages, pipPages, strings.Join(reqs, "\n"))
	}

	m := s.Lister.metrics
	if got := testutil.ToFloat64(m.Seen); got != 10 {
		t.Errorf("VMs seen %v, want 10", got)
	}
	for reason, want := range map[string]float64{
		cloudsource.SkipNotRunning: 2, cloudsource.SkipOptOut: 1, cloudsource.SkipAutoRegistered: 1, cloudsource.SkipNoService: 1, cloudsource.SkipInvalidPorts: 1,
		cloudsource.SkipNoPorts: 0, skipResourceGroup: 0, cloudsource.SkipNoAddress: 0,
	} {
		if got := testutil.ToFloat64(m.Skipped.WithLabelValues(reason)); got != want {
			t.Errorf("skipped{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	if got := testutil.ToFloat64(m.Requests.WithLabelValues(apiVMs, "ok")); got != 5 {
		t.Errorf("ok VM requests %v, want 5", got)
	}
	cloudsourcetest.AssertGroups(t, mustList(t, s), fixtureGroups())
}

func TestListOptions(t *testing.T) {
	f := newFakeARM(t)
	f.put(azvm{name: "a", rg: "rg-a", zone: "3", vmID: "a", ip: "10.0.0.1", publicIP: "20.1.2.3", ipv6: "fd00:db8::1",
		tags: tags("mesh-service", "web", "mesh-ports", "https:443")})
	f.put(azvm{name: "b", rg: "rg-b", vmID: "b", ip: "10.0.1.2", tags: tags("mesh-service", "web", "mesh-ports", "https:443")})
	https := []model.Port{{Number: 443, Protocol: model.ProtocolHTTPS}}
	lbl := tags("mesh-service", "web", "mesh-ports", "https:443")

	tests := []struct {
		name   string
		mutate func(*Config)
		want   []model.Instance
		skip   map[string]float64
	}{
		{"public", func(c *Config) { c.AddressType = cloudsource.AddressPublic }, []model.Instance{
			inst("a", "20.1.2.3", "eastus/eastus-3", vnet("rg-a"), lbl, ""),
		}, map[string]float64{cloudsource.SkipNoAddress: 1}},
		{"ipv6", func(c *Config) { c.AddressType = cloudsource.AddressIPv6 }, []model.Instance{
			inst("a", "fd00:db8::1", "eastus/eastus-3", vnet("rg-a"), lbl, ""),
		}, map[string]float64{cloudsource.SkipNoAddress: 1}},
		{"resource groups and network", func(c *Config) { c.ResourceGroups = []string{"RG-B"}; c.Network = "mesh-net" }, []model.Instance{
			inst("b", "10.0.1.2", "eastus", "mesh-net", lbl, ""),
		}, map[string]float64{skipResourceGroup: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestSource(t, f, func(c *Config) {
				c.HostTemplate = "{{.Service}}.{{.Subscription}}.example.com"
				tt.mutate(c)
			})
			want := []model.Group{{Scope: "web", Services: []model.Service{{
				Name: "web", Host: "web." + subscription + ".example.com", Ports: https, Instances: tt.want,
			}}}}
			cloudsourcetest.AssertGroups(t, mustList(t, s), want)
			for reason, n := range tt.skip {
				if got := testutil.ToFloat64(s.Lister.metrics.Skipped.WithLabelValues(reason)); got != n {
					t.Errorf("skipped{reason=%s} = %v, want %v", reason, got, n)
				}
			}
		})
	}
}

func TestListErrors(t *testing.T) {
	f := newFakeARM(t)
	fixture(f)
	s, _ := newTestSource(t, f, nil)

	// A failed page of either list fails the whole list.
	f.mu.Lock()
	f.failures["networkInterfaces"] = []*armFailure{nil, {status: 500, code: "InternalServerError"}}
	f.mu.Unlock()
	if groups, err := s.Lister.List(context.Background()); err == nil || groups != nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("List with a failing NIC page = %v, %v", groups, err)
	}

	for _, tt := range []struct {
		fl         *armFailure
		throttled  bool
		retryAfter time.Duration
	}{
		{&armFailure{status: 429, code: "TooManyRequests", header: map[string][]string{"Retry-After": {"17"}}}, true, 17 * time.Second},
		{&armFailure{status: 429, code: "TooManyRequests", header: map[string][]string{"X-Ms-Retry-After-Ms": {"1500"}}}, true, 1500 * time.Millisecond},
		{&armFailure{status: 429, code: "SubscriptionRequestsThrottled"}, true, 0},
		{&armFailure{status: 403, code: "AuthorizationFailed"}, false, 0},
		{&armFailure{status: 500, code: "InternalServerError"}, false, 0},
	} {
		f.setFailAlways("virtualMachines", tt.fl)
		_, err := s.Lister.List(context.Background())
		var th *poll.ThrottledError
		if errors.As(err, &th) != tt.throttled {
			t.Errorf("%d %s: throttled = %v (%v)", tt.fl.status, tt.fl.code, !tt.throttled, err)
			continue
		}
		if th != nil && th.RetryAfter != tt.retryAfter {
			t.Errorf("%d %s: RetryAfter %s, want %s", tt.fl.status, tt.fl.code, th.RetryAfter, tt.retryAfter)
		}
		if err == nil || strings.Contains(err.Error(), "fake-token") {
			t.Errorf("error %v", err)
		}
	}
	f.setFailAlways("virtualMachines", nil)
	if got := testutil.ToFloat64(s.Lister.metrics.Requests.WithLabelValues(apiVMs, "throttled")); got != 3 {
		t.Errorf("throttled VM requests %v, want 3", got)
	}
}

func TestRunSendsChangesKeepsStateOnErrorsAndRecovers(t *testing.T) {
	f := newFakeARM(t)
	fixture(f)
	s, rep := newTestSource(t, f, func(c *Config) { c.Ports = []Port{{Number: 8000, Protocol: "http"}} })
	r := cloudsourcetest.Start(t, s, cloudsourcetest.Options{Reporter: rep})

	cloudsourcetest.AssertGroups(t, r.Next(t), fixtureGroups())
	// Synced is recorded after the batch is sent, before the next list.
	f.listStarts.Wait(t, f.listStarts.Now(), 1)
	if st := rep.Status(); !st.Synced || st.Stale || st.Services != 4 || st.Instances != 6 {
		t.Errorf("status after first list: %+v", st)
	}

	// A new web VM: only the web scope is sent.
	f.put(azvm{name: "web-3", rg: "rg-mesh", zone: "2", vmID: vmWeb3, ip: "10.1.0.13", tags: withPorts(tags("mesh-service", "web"))})
	web3 := inst(vmWeb3, "10.1.0.13", "eastus/eastus-2", vnet("rg-mesh"), withPorts(tags("mesh-service", "web")), "")
	cloudsourcetest.AssertGroups(t, r.Next(t), []model.Group{group("web", httpGRPC, web1, web2, web3)})

	// Unchanged lists send nothing.
	f.listStarts.Wait(t, f.listStarts.Now(), 3)
	r.None(t)

	// 500 from the VM list, 500 from the NIC list: nothing sent, stale.
	for _, api := range []string{"virtualMachines", "networkInterfaces"} {
		f.setFailAlways(api, &armFailure{status: 500, code: "InternalServerError"})
		f.listStarts.Wait(t, f.listStarts.Now(), 3)
		r.None(t)
		if st := rep.Status(); !st.Stale || !strings.Contains(st.LastError, "500") || !strings.Contains(st.LastError, api) {
			t.Errorf("status during %s 500: %+v", api, st)
		}
		f.setFailAlways(api, nil)
	}

	// 429 with Retry-After: 1: the poller waits for it, since it is under the
	// poller's maximum backoff (1.5s; a longer Retry-After is capped there).
	f.setFailAlways("virtualMachines", &armFailure{status: 429, code: "TooManyRequests",
		header: map[string][]string{"Retry-After": {"1"}}})
	base := f.listStarts.Now()
	f.listStarts.Wait(t, base, 1)
	start := time.Now()
	f.listStarts.Wait(t, base, 2)
	if waited := time.Since(start); waited < 900*time.Millisecond {
		t.Errorf("retried after %s despite Retry-After: 1", waited)
	}
	r.None(t)
	if st := rep.Status(); !st.Stale || !strings.Contains(st.LastError, "throttled") {
		t.Errorf("status during 429: %+v", st)
	}

	// Changes made during the outage show after it: api-1 deallocated,
	// db-1 deleted.
	f.setPower("api-1", "deallocated")
	f.remove("db-1")
	f.setFailAlways("virtualMachines", nil)
	cloudsourcetest.AssertGroups(t, r.Next(t), []model.Group{group("api", httpGRPC, web2), {Scope: "cache"}, {Scope: "db"}})
	f.listStarts.Wait(t, f.listStarts.Now(), 2)
	if st := rep.Status(); st.Stale || st.Services != 2 || st.Instances != 4 {
		t.Errorf("status after recovery: %+v", st)
	}

	// The last VM of api stops: the scope goes.
	f.setPower("web-2", "stopped")
	cloudsourcetest.AssertGroups(t, r.Next(t), []model.Group{{Scope: "api"}, group("web", httpGRPC, web1, web3)})
}

func TestNewDoesNoIOAndRejectsBadConfig(t *testing.T) {
	if _, err := New(Config{}, sources.Options{Name: "x"}); err == nil || !strings.Contains(err.Error(), "subscriptionId: required") {
		t.Fatalf("New without subscriptionId: %v", err)
	}
	if _, err := New(Config{SubscriptionID: subscription, ClientID: subscription}, sources.Options{Name: "x"}); err != nil {
		t.Fatal(err)
	}
}
