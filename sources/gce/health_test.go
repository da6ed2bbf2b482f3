package gce

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource/cloudsourcetest"
)

// backendState is the fake's backend services, shaped from the API's
// discovery document: GET projects/{p}/global/backendServices/{name} (or
// regions/{r}/backendServices/{name}) returns a BackendService whose
// backends name instance groups; POST .../getHealth with a
// ResourceGroupReference ({"group": url}) returns a
// BackendServiceGroupHealth: {"healthStatus": [{"instance", "ipAddress",
// "port", "healthState": HEALTHY|UNHEALTHY}]}.
type backendState struct {
	// services by "name" or "regions/<region>/<name>": group URL path
	// ("zones/<z>/instanceGroups/<g>") -> member instance names.
	services map[string]map[string][]string
	// unhealthy by "<service key>/<instance name>"; everyone else is
	// HEALTHY.
	unhealthy map[string]bool
	// fail answers every backend service request with this, until cleared.
	fail *failure
	// stats
	gets, getHealths int
}

// addBackend adds a backend service with groups of instances.
func (f *fakeCompute) addBackend(key string, groups map[string][]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.backends.services == nil {
		f.backends.services = map[string]map[string][]string{}
		f.backends.unhealthy = map[string]bool{}
	}
	f.backends.services[key] = groups
}

func (f *fakeCompute) setBackendHealth(key, instance string, healthy bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.backends.unhealthy[key+"/"+instance] = !healthy
}

func (f *fakeCompute) setBackendFail(fl *failure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.backends.fail = fl
}

func (f *fakeCompute) backendRequests() (gets, getHealths int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.backends.gets, f.backends.getHealths
}

// serveBackend answers backendServices.get and getHealth (f.mu held).
func (f *fakeCompute) serveBackend(w http.ResponseWriter, r *http.Request) {
	prefix := "/compute/v1/projects/" + f.project + "/"
	rest, ok := strings.CutPrefix(r.URL.Path, prefix)
	if !ok {
		writeError(w, &failure{status: 404, body: apiError(404, "notFound", "The resource '"+r.URL.Path+"' was not found")})
		return
	}
	rest, getHealth := strings.CutSuffix(rest, "/getHealth")
	var key string
	if name, ok := strings.CutPrefix(rest, "global/backendServices/"); ok {
		key = name
	} else if region, name, ok := strings.Cut(strings.TrimPrefix(rest, "regions/"), "/backendServices/"); ok && strings.HasPrefix(rest, "regions/") {
		key = "regions/" + region + "/" + name
	}
	if getHealth {
		f.backends.getHealths++
	} else {
		f.backends.gets++
	}
	if f.backends.fail != nil {
		writeError(w, f.backends.fail)
		return
	}
	groups, ok := f.backends.services[key]
	if !ok || (getHealth && r.Method != http.MethodPost) || (!getHealth && r.Method != http.MethodGet) {
		writeError(w, &failure{status: 404, body: apiError(404, "notFound", "The resource 'projects/"+f.project+"/"+rest+"' was not found")})
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	if !getHealth {
		names := slices.Sorted(func(yield func(string) bool) {
			for g := range groups {
				if !yield(g) {
					return
				}
			}
		})
		var backends []any
		for _, g := range names {
			backends = append(backends, map[string]any{"group": selfLinkBase + "projects/" + f.project + "/" + g,
				"balancingMode": "UTILIZATION", "capacityScaler": 1})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"kind": "compute#backendService", "id": "4242", "name": key[strings.LastIndexByte(key, '/')+1:],
			"selfLink": selfLinkBase + "projects/" + f.project + "/" + rest, "backends": backends,
			"healthChecks": []any{selfLinkBase + "projects/" + f.project + "/global/healthChecks/http-8080"},
			"protocol":     "HTTP", "port": 8080, "portName": "http", "timeoutSec": 30, "loadBalancingScheme": "EXTERNAL_MANAGED",
		})
		return
	}
	var ref struct {
		Group string `json:"group"`
	}
	if err := json.NewDecoder(r.Body).Decode(&ref); err != nil || ref.Group == "" {
		writeError(w, &failure{status: 400, body: apiError(400, "required", "Required field 'group' not specified")})
		return
	}
	var members []string
	found := false
	for g, m := range groups {
		if strings.HasSuffix(ref.Group, "/"+g) {
			members, found = m, true
		}
	}
	if !found {
		writeError(w, &failure{status: 400, body: apiError(400, "invalid", "Invalid value for field 'resource.group': '"+ref.Group+"'.")})
		return
	}
	resp := map[string]any{"kind": "compute#backendServiceGroupHealth"}
	var statuses []any
	for _, name := range members {
		in, ok := f.instances[name]
		if !ok {
			continue
		}
		state := "HEALTHY"
		if f.backends.unhealthy[key+"/"+name] {
			state = "UNHEALTHY"
		}
		ip := in["networkInterfaces"].([]any)[0].(map[string]any)["networkIP"]
		statuses = append(statuses, map[string]any{"instance": in["selfLink"], "ipAddress": ip, "port": 8080, "healthState": state})
	}
	if statuses != nil { // the API leaves healthStatus out when a group has no instance
		resp["healthStatus"] = statuses
	}
	_ = json.NewEncoder(w).Encode(resp)
}

func withHealth(in model.Instance, h model.Health) model.Instance {
	in.Health = h
	return in
}

// TestHealthBackendServices: with health enabled, an instance a backend
// service reports UNHEALTHY leaves its services at the next list and comes
// back when HEALTHY; one in no named backend service is served with unknown
// health; a failing or throttled health call changes nothing.
func TestHealthBackendServices(t *testing.T) {
	f := newFakeCompute(t, project, "us-central1-a", "us-central1-b", "us-central1-c")
	fixture(f)
	f.addBackend("web-bs", map[string][]string{
		"zones/us-central1-a/instanceGroups/web-a": {"web-1"},
		"zones/us-central1-b/instanceGroups/web-b": {"web-2"},
	})
	f.addBackend("regions/us-central1/api-bs", map[string][]string{"zones/us-central1-c/instanceGroups/api-c": {"api-1"}})
	s, rep := newTestSource(t, f, func(c *Config) {
		c.Ports = []Port{{Number: 8000, Protocol: "http"}}
		c.Health = HealthConfig{BackendServices: []string{"web-bs", "regions/us-central1/api-bs"}}
		c.Health.Enabled = true
	})
	// Buffered: a batch sent when none should be is seen by None.
	r := cloudsourcetest.Start(t, s, cloudsourcetest.Options{Reporter: rep, Buffer: 10})
	w1, w2, a1 := withHealth(web1, model.HealthPassing), withHealth(web2, model.HealthPassing), withHealth(api1, model.HealthPassing)
	api := func(instances ...model.Instance) model.Group {
		return group("api", []model.Port{{Number: 8000, Protocol: model.ProtocolHTTP}, httpGRPC[0], httpGRPC[1]}, instances...)
	}
	cloudsourcetest.AssertGroups(t, r.Next(t), []model.Group{
		api(w2, a1),
		group("cache", []model.Port{{Number: 5432, Protocol: model.ProtocolTCP}}, db1),
		group("db", []model.Port{{Number: 5432, Protocol: model.ProtocolTCP}}, db1),
		group("web", httpGRPC, w1, w2),
	})

	f.setBackendHealth("web-bs", "web-1", false)
	cloudsourcetest.AssertGroups(t, r.Next(t), []model.Group{group("web", httpGRPC, w2)})
	f.listStarts.Wait(t, f.listStarts.Now(), 1)
	m := s.Lister.metrics
	byHealth := func(h string) float64 { return testutil.ToFloat64(m.Health.WithLabelValues(h)) }
	if byHealth("passing") != 2 || byHealth("critical") != 1 || byHealth("unknown") != 1 ||
		testutil.ToFloat64(m.Skipped.WithLabelValues(cloudsource.SkipUnhealthy)) != 1 {
		t.Errorf("by health: passing %v critical %v unknown %v", byHealth("passing"), byHealth("critical"), byHealth("unknown"))
	}

	// A failing, then throttled, health API changes nothing: web-1 stays
	// out although it is healthy again, api-1 stays in although it is not.
	for _, fl := range []*failure{errInternal, errRate429} {
		f.setBackendFail(fl)
		f.setBackendHealth("web-bs", "web-1", true)
		f.setBackendHealth("regions/us-central1/api-bs", "api-1", false)
		f.listStarts.Wait(t, f.listStarts.Now(), 3)
		r.None(t)
		if st := rep.Status(); st.Stale {
			t.Errorf("stale while the health API fails: %+v", st)
		}
	}
	if testutil.ToFloat64(m.HealthRequests.WithLabelValues("error")) < 1 || testutil.ToFloat64(m.HealthRequests.WithLabelValues("throttled")) < 1 {
		t.Errorf("health requests: error %v throttled %v", testutil.ToFloat64(m.HealthRequests.WithLabelValues("error")),
			testutil.ToFloat64(m.HealthRequests.WithLabelValues("throttled")))
	}
	f.setBackendFail(nil)
	// api's ports are the union of its instances': without api-1, web-2's.
	cloudsourcetest.AssertGroups(t, r.Next(t), []model.Group{
		group("api", httpGRPC, w2),
		group("web", httpGRPC, w1, w2),
	})
}

// TestHealthPartialFailure: when one backend service answers and another
// fails, an instance the answering one reports UNHEALTHY leaves, but one
// it reports HEALTHY does not come back (the failing one might say
// otherwise).
func TestHealthPartialFailure(t *testing.T) {
	f := newFakeCompute(t, project, "us-central1-a", "us-central1-b", "us-central1-c")
	fixture(f)
	f.addBackend("web-bs", map[string][]string{"zones/us-central1-a/instanceGroups/web-a": {"web-1"}})
	f.addBackend("web-canary-bs", map[string][]string{"zones/us-central1-a/instanceGroups/web-a": {"web-1"}})
	s, _ := newTestSource(t, f, func(c *Config) {
		c.Ports = []Port{{Number: 8000, Protocol: "http"}}
		c.Health = HealthConfig{BackendServices: []string{"web-bs", "web-canary-bs", "missing-bs"}}
		c.Health.Enabled = true
	})
	web := func(groups []model.Group) []string {
		var out []string
		for _, g := range groups {
			if g.Scope == "web" {
				for _, in := range g.Services[0].Instances {
					out = append(out, in.ID+"="+in.Health.String())
				}
			}
		}
		return out
	}
	// missing-bs answers 404: web-1 is HEALTHY in both others, but that is
	// not recorded; never answered, it is served as unknown.
	if got := web(mustList(t, s)); !slices.Equal(got, []string{"1001=unknown", "1002=unknown"}) {
		t.Fatalf("with one backend service failing: %v", got)
	}
	f.setBackendHealth("web-canary-bs", "web-1", false)
	if got := web(mustList(t, s)); !slices.Equal(got, []string{"1002=unknown"}) {
		t.Fatalf("UNHEALTHY in one answering backend service: %v", got)
	}
	f.setBackendHealth("web-canary-bs", "web-1", true)
	if got := web(mustList(t, s)); !slices.Equal(got, []string{"1002=unknown"}) {
		t.Fatalf("HEALTHY again while another backend service fails: %v", got)
	}
	s.Lister.cfg.Health.BackendServices = s.Lister.cfg.Health.BackendServices[:2]
	s.Lister.backendServices = s.Lister.backendServices[:2]
	if got := web(mustList(t, s)); !slices.Equal(got, []string{"1001=passing", "1002=unknown"}) {
		t.Fatalf("every backend service answering: %v", got)
	}
}

// TestHealthRequests counts the requests of one refresh with health on,
// at 100 and 1,000 instances in one backend service with one instance
// group per zone: aggregatedList pages of 500 (the API's default
// maxResults), one backendServices.get and one getHealth per group.
func TestHealthRequests(t *testing.T) {
	for _, n := range []int{100, 1000} {
		f := newFakeCompute(t, project, "us-central1-a", "us-central1-b")
		f.pageSize = 500
		groups := map[string][]string{}
		for i := range n {
			zone := []string{"us-central1-a", "us-central1-b"}[i%2]
			name := fmt.Sprintf("web-%04d", i)
			f.put(vm{name: name, zone: zone, id: uint64(5000 + i), ip: fmt.Sprintf("10.%d.%d.%d", i/65536, i/256%256, i%256),
				labels: map[string]string{"mesh-service": "web"}, metadata: map[string]string{"mesh-ports": "http:8080"}})
			g := "zones/" + zone + "/instanceGroups/web"
			groups[g] = append(groups[g], name)
		}
		f.addBackend("web-bs", groups)
		s, _ := newTestSource(t, f, func(c *Config) {
			c.Health = HealthConfig{BackendServices: []string{"web-bs"}}
			c.Health.Enabled = true
		})
		groupsOut, err := s.Lister.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		served := groupsOut[0].Services[0].Instances
		if len(served) != n || served[0].Health != model.HealthPassing {
			t.Fatalf("%d instances: served %d, first %v", n, len(served), served[0].Health)
		}
		gets, getHealths := f.backendRequests()
		f.mu.Lock()
		lists := f.requests
		f.mu.Unlock()
		t.Logf("%d instances: %d aggregatedList + %d backendServices.get + %d getHealth requests per refresh", n, lists, gets, getHealths)
		if want := (n + 499) / 500; lists != want || gets != 1 || getHealths != 2 {
			t.Fatalf("%d instances: %d lists, %d gets, %d getHealth; want %d, 1, 2", n, lists, gets, getHealths, want)
		}
	}
}
