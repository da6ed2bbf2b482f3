package gce

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"google.golang.org/api/option"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource/cloudsourcetest"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const project = "mesh-prod-1"

// newTestSource makes a source reading f, unauthenticated. Its poll schedule
// is fast, which the config would refuse.
func newTestSource(t *testing.T, f *fakeCompute, mutate func(*Config)) (*Source, *sources.Reporter) {
	t.Helper()
	cfg := Config{Project: f.project, Endpoint: f.srv.URL}
	if mutate != nil {
		mutate(&cfg)
	}
	rep := sources.NewReporter("gce-test", nil)
	opts := sources.Options{Name: "gce-test", Logger: zaptest.NewLogger(t), Reporter: rep}
	s, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Lister.clientOptions = []option.ClientOption{option.WithoutAuthentication()}
	s.Poll = poll.New(poll.Config{RefreshInterval: 10 * time.Millisecond, Timeout: 5 * time.Second, MaxBackoff: 10 * time.Millisecond},
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

// fixture fills f with a project covering every mapping rule.
func fixture(f *fakeCompute) {
	port := map[string]string{"mesh-ports": "http:8080,grpc:9090"}
	f.put(vm{name: "web-1", zone: "us-central1-a", id: 1001, ip: "10.0.0.11",
		labels: map[string]string{"mesh-service": "web", "version": "v1"}, metadata: port,
		serviceAccount: "web@mesh-prod-1.iam.gserviceaccount.com"})
	f.put(vm{name: "web-2", zone: "us-central1-b", id: 1002, ip: "10.0.1.12", network: "prod-vpc",
		labels: map[string]string{"mesh-service": "web_api", "version": "v2"}, metadata: port})
	f.put(vm{name: "api-stopped", zone: "us-central1-b", id: 1003, ip: "10.0.1.13", status: "TERMINATED",
		labels: map[string]string{"mesh-service": "api"}})
	f.put(vm{name: "api-1", zone: "us-central1-c", id: 1004, ip: "10.0.2.14",
		labels: map[string]string{"mesh-service": "api"}}) // ports from the config
	f.put(vm{name: "opted-out", zone: "us-central1-a", id: 1005, ip: "10.0.0.15",
		labels: map[string]string{"mesh-service": "web", "mesh-opt-out": "true"}, metadata: port})
	f.put(vm{name: "auto-registered", zone: "us-central1-c", id: 1006, ip: "10.0.2.16",
		labels:   map[string]string{"mesh-service": "web"},
		metadata: map[string]string{"mesh-ports": "http:8080", "istio-io-autoRegistrationGroup": "web"}})
	f.put(vm{name: "unlabelled", zone: "us-central1-a", id: 1007, ip: "10.0.0.17"})
	f.put(vm{name: "bad-ports", zone: "us-central1-c", id: 1008, ip: "10.0.2.18",
		labels: map[string]string{"mesh-service": "web"}, metadata: map[string]string{"mesh-ports": "htp:8080"}})
	f.put(vm{name: "db-1", zone: "us-central1-a", id: 1009, ip: "10.0.0.19",
		metadata: map[string]string{"mesh-service": "db, cache", "mesh-ports": "tcp:5432"}})
	f.put(vm{name: "staging", zone: "us-central1-b", id: 1010, ip: "10.0.1.20", status: "STAGING",
		labels: map[string]string{"mesh-service": "web"}, metadata: port})
}

func inst(id, addr, zone, network string, labels map[string]string, identity string) model.Instance {
	return model.Instance{ID: id, Address: addr, Labels: model.LabelsFromMap(labels), Locality: regionOf(zone) + "/" + zone,
		Network: network, Identity: identity, Health: model.HealthUnknown}
}

func group(name string, ports []model.Port, instances ...model.Instance) model.Group {
	return model.Group{Scope: name, Services: []model.Service{{
		Name: name, Host: name + ".gce.internal", Ports: ports, Instances: instances,
	}}}
}

var (
	httpGRPC = []model.Port{{Number: 8080, Protocol: model.ProtocolHTTP}, {Number: 9090, Protocol: model.ProtocolGRPC}}
	web1     = inst("1001", "10.0.0.11", "us-central1-a", "default",
		map[string]string{"mesh-service": "web", "version": "v1"}, "web@mesh-prod-1.iam.gserviceaccount.com")
	web2 = inst("1002", "10.0.1.12", "us-central1-b", "prod-vpc",
		map[string]string{"mesh-service": "web_api", "version": "v2"}, "")
	api1 = inst("1004", "10.0.2.14", "us-central1-c", "default", map[string]string{"mesh-service": "api"}, "")
	db1  = inst("1009", "10.0.0.19", "us-central1-a", "default", nil, "")
)

func fixtureGroups() []model.Group {
	return []model.Group{
		group("api", []model.Port{{Number: 8000, Protocol: model.ProtocolHTTP}, httpGRPC[0], httpGRPC[1]}, web2, api1),
		group("cache", []model.Port{{Number: 5432, Protocol: model.ProtocolTCP}}, db1),
		group("db", []model.Port{{Number: 5432, Protocol: model.ProtocolTCP}}, db1),
		group("web", httpGRPC, web1, web2),
	}
}

func TestListFollowsPagesAcrossZones(t *testing.T) {
	f := newFakeCompute(t, project, "us-central1-a", "us-central1-b", "us-central1-c", "europe-west1-b")
	fixture(f)
	s, _ := newTestSource(t, f, func(c *Config) {
		c.Ports = []Port{{Number: 8000, Protocol: "http"}}
		c.Filter = "labels.mesh-service:*"
	})
	cloudsourcetest.AssertGroups(t, mustList(t, s), fixtureGroups())

	// Ten instances, two a page: five pages, chained by nextPageToken, each
	// carrying the filter.
	f.mu.Lock()
	tokens, filters := f.tokens, f.filters
	f.mu.Unlock()
	if want := []string{"", "tok-2", "tok-4", "tok-6", "tok-8"}; !slices.Equal(tokens, want) {
		t.Errorf("page tokens %q, want %q", tokens, want)
	}
	for _, fl := range filters {
		if fl != "labels.mesh-service:*" {
			t.Errorf("filter %q sent", fl)
		}
	}

	m := s.Lister.metrics
	if got := testutil.ToFloat64(m.Seen); got != 10 {
		t.Errorf("instances seen %v, want 10", got)
	}
	for reason, want := range map[string]float64{
		cloudsource.SkipNotRunning: 2, cloudsource.SkipOptOut: 1, cloudsource.SkipAutoRegistered: 1, cloudsource.SkipNoService: 1, cloudsource.SkipInvalidPorts: 1,
		cloudsource.SkipNoPorts: 0, skipZone: 0,
	} {
		if got := testutil.ToFloat64(m.Skipped.WithLabelValues(reason)); got != want {
			t.Errorf("skipped{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	if got := testutil.ToFloat64(m.Requests.WithLabelValues("ok")); got != 5 {
		t.Errorf("ok requests %v, want 5", got)
	}
	// The list is stable: a second list is identical (poll diffs with DeepEqual).
	cloudsourcetest.AssertGroups(t, mustList(t, s), fixtureGroups())
}

func TestListOptions(t *testing.T) {
	f := newFakeCompute(t, project, "us-central1-a", "us-central1-b")
	port := map[string]string{"mesh-ports": "https:443"}
	f.put(vm{name: "a", zone: "us-central1-a", id: 1, ip: "10.0.0.1", natIP: "34.1.2.3", ipv6: "fd20:1:2:3::1",
		labels: map[string]string{"mesh-service": "web"}, metadata: port})
	f.put(vm{name: "b", zone: "us-central1-b", id: 2, ip: "10.0.1.2",
		labels: map[string]string{"mesh-service": "web"}, metadata: port})
	https := []model.Port{{Number: 443, Protocol: model.ProtocolHTTPS}}
	labels := map[string]string{"mesh-service": "web"}

	tests := []struct {
		name   string
		mutate func(*Config)
		want   []model.Instance
		skip   map[string]float64
	}{
		{"public", func(c *Config) { c.AddressType = cloudsource.AddressPublic }, []model.Instance{
			inst("1", "34.1.2.3", "us-central1-a", "default", labels, ""),
		}, map[string]float64{cloudsource.SkipNoAddress: 1}},
		{"ipv6", func(c *Config) { c.AddressType = cloudsource.AddressIPv6 }, []model.Instance{
			inst("1", "fd20:1:2:3::1", "us-central1-a", "default", labels, ""),
		}, map[string]float64{cloudsource.SkipNoAddress: 1}},
		{"zones and network", func(c *Config) { c.Zones = []string{"us-central1-b"}; c.Network = "mesh-net" }, []model.Instance{
			inst("2", "10.0.1.2", "us-central1-b", "mesh-net", labels, ""),
		}, map[string]float64{skipZone: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestSource(t, f, func(c *Config) {
				c.HostTemplate = "{{.Service}}.{{.Project}}.example.com"
				tt.mutate(c)
			})
			want := []model.Group{{Scope: "web", Services: []model.Service{{
				Name: "web", Host: "web.mesh-prod-1.example.com", Ports: https, Instances: tt.want,
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

func TestListFailsInsteadOfReturningPartialState(t *testing.T) {
	f := newFakeCompute(t, project, "us-central1-a", "us-central1-b", "us-central1-c")
	fixture(f)

	t.Run("page error", func(t *testing.T) {
		s, _ := newTestSource(t, f, nil)
		f.mu.Lock()
		f.failures = []*failure{nil, nil, errInternal} // the third page fails
		f.mu.Unlock()
		groups, err := s.Lister.List(context.Background())
		if err == nil || groups != nil {
			t.Fatalf("List = %v, %v; want an error and nothing", groups, err)
		}
		if !strings.Contains(err.Error(), "500") {
			t.Errorf("error %q does not say 500", err)
		}
	})

	t.Run("unreachable zone", func(t *testing.T) {
		f.setUnreachable("us-central1-b", true)
		defer f.setUnreachable("us-central1-b", false)
		s, _ := newTestSource(t, f, nil)
		if _, err := s.Lister.List(context.Background()); err == nil || !strings.Contains(err.Error(), "zones/us-central1-b") {
			t.Fatalf("List error %v, want one naming the unreachable zone", err)
		}
		// A zone the source does not read may be unreachable.
		s, _ = newTestSource(t, f, func(c *Config) { c.Zones = []string{"us-central1-a", "us-central1-c"} })
		if _, err := s.Lister.List(context.Background()); err != nil {
			t.Fatalf("List with zones filter: %v", err)
		}
	})
}

func TestClassify(t *testing.T) {
	f := newFakeCompute(t, project, "us-central1-a")
	s, _ := newTestSource(t, f, nil)
	for _, tt := range []struct {
		fl         *failure
		throttled  bool
		retryAfter time.Duration
	}{
		{errRate403, true, 0},
		{errRate429, true, time.Second},
		{&failure{status: 429, body: apiError(429, "rateLimitExceeded", "slow down"), header: map[string][]string{
			"Retry-After": {time.Now().Add(time.Hour).UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")}}}, true, time.Hour},
		{&failure{status: 403, body: apiError(403, "forbidden", "Required 'compute.instances.list' permission")}, false, 0},
		{errInternal, false, 0},
	} {
		f.setFailAlways(tt.fl)
		_, err := s.Lister.List(context.Background())
		var th *poll.ThrottledError
		if errors.As(err, &th) != tt.throttled {
			t.Errorf("%d %s: throttled = %v, want %v (%v)", tt.fl.status, tt.fl.body, !tt.throttled, tt.throttled, err)
			continue
		}
		if th != nil && (th.RetryAfter > tt.retryAfter || th.RetryAfter < tt.retryAfter-time.Minute) {
			t.Errorf("%d: RetryAfter %s, want about %s", tt.fl.status, th.RetryAfter, tt.retryAfter)
		}
	}
	f.setFailAlways(nil)
	if got := testutil.ToFloat64(s.Lister.metrics.Requests.WithLabelValues("throttled")); got != 3 {
		t.Errorf("throttled requests %v, want 3", got)
	}
}

func TestRunSendsChangesKeepsStateOnErrorsAndRecovers(t *testing.T) {
	f := newFakeCompute(t, project, "us-central1-a", "us-central1-b", "us-central1-c", "europe-west1-b")
	fixture(f)
	s, rep := newTestSource(t, f, func(c *Config) { c.Ports = []Port{{Number: 8000, Protocol: "http"}} })
	r := cloudsourcetest.Start(t, s, cloudsourcetest.Options{Reporter: rep})

	// The first batch is the whole state.
	cloudsourcetest.AssertGroups(t, r.Next(t), fixtureGroups())
	// Synced is recorded after the batch is sent, before the next list.
	f.listStarts.Wait(t, f.listStarts.Now(), 1)
	if st := rep.Status(); !st.Synced || st.Stale || st.Services != 4 || st.Instances != 6 {
		t.Errorf("status after first list: %+v", st)
	}

	// A new web instance: only the web scope is sent.
	f.put(vm{name: "web-3", zone: "us-central1-c", id: 1011, ip: "10.0.2.21",
		labels: map[string]string{"mesh-service": "web"}, metadata: map[string]string{"mesh-ports": "http:8080,grpc:9090"}})
	web3 := inst("1011", "10.0.2.21", "us-central1-c", "default", map[string]string{"mesh-service": "web"}, "")
	cloudsourcetest.AssertGroups(t, r.Next(t), []model.Group{group("web", httpGRPC, web1, web2, web3)})

	// Unchanged lists send nothing.
	f.listStarts.Wait(t, f.listStarts.Now(), 3)
	r.None(t)

	// The API fails: 500, then throttling. Nothing is sent, the state is
	// kept, the reporter says stale; a change made meanwhile shows after.
	for _, fl := range []*failure{errInternal, errRate403, {status: 429, body: errRate429.body}} {
		f.setFailAlways(fl)
		f.listStarts.Wait(t, f.listStarts.Now(), 3)
		r.None(t)
		st := rep.Status()
		if !st.Stale || !strings.Contains(st.LastError, fmt.Sprint(fl.status)) {
			t.Errorf("status during %d: %+v", fl.status, st)
		}
		if fl.status != 500 && !strings.Contains(st.LastError, "throttled") {
			t.Errorf("status during %d: %q does not say throttled", fl.status, st.LastError)
		}
	}
	// api-1 stops and db-1 is deleted while the API fails.
	f.setStatus("api-1", "STOPPING")
	f.remove("db-1")
	f.setFailAlways(nil)
	// api keeps web-2's membership; cache and db are deleted (empty groups).
	cloudsourcetest.AssertGroups(t, r.Next(t), []model.Group{
		group("api", httpGRPC, web2),
		{Scope: "cache"},
		{Scope: "db"},
	})
	f.listStarts.Wait(t, f.listStarts.Now(), 2)
	if st := rep.Status(); st.Stale || st.Services != 2 || st.Instances != 4 {
		t.Errorf("status after recovery: %+v", st)
	}

	// The last instance of api is deleted: the scope goes.
	f.setStatus("web-2", "TERMINATED")
	cloudsourcetest.AssertGroups(t, r.Next(t), []model.Group{{Scope: "api"}, group("web", httpGRPC, web1, web3)})
}

func TestNewDoesNoIOAndRejectsBadConfig(t *testing.T) {
	if _, err := New(Config{}, sources.Options{Name: "x"}); err == nil || !strings.Contains(err.Error(), "project: required") {
		t.Fatalf("New without project: %v", err)
	}
	// No credentials are looked up before the first list.
	if _, err := New(Config{Project: project}, sources.Options{Name: "x"}); err != nil {
		t.Fatal(err)
	}
}
