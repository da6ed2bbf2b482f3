package cloudmap

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

func sortGroups(gs []model.Group) []model.Group {
	gs = slices.Clone(gs)
	slices.SortFunc(gs, func(a, b model.Group) int { return strings.Compare(a.Scope, b.Scope) })
	return gs
}

func checkBatch(t *testing.T, what string, got []model.Group, want ...model.Group) {
	t.Helper()
	if g, w := sortGroups(got), sortGroups(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("%s:\ngot  %+v\nwant %+v", what, g, w)
	}
}

func group(name, host string, ports []model.Port, instances ...model.Instance) model.Group {
	return model.Group{Scope: name, Services: []model.Service{{Name: name, Host: host, Ports: ports, Instances: instances}}}
}

// TestMotoCloudMap follows a namespace in moto: the full first batch, a
// registration, unchanged refreshes that read only the revision, a health
// change on a health-checked service, deregistrations.
func TestMotoCloudMap(t *testing.T) {
	harness.Need(t)
	c := newCloud(t)
	ns := c.namespace("mesh.local")
	web := c.service(ns, "web", false)
	api := c.service(ns, "api", true)
	other := c.namespace("other.local")
	c.register(c.service(other, "db", false), "db-1", map[string]string{AttrIPv4: "10.9.9.9"})

	c.register(web, "w1", map[string]string{AttrIPv4: "10.0.0.1", AttrPort: "8080", AttrZone: "us-east-1a", "ECS_CLUSTER_NAME": "prod"})
	c.register(web, "w2", map[string]string{AttrIPv4: "10.0.0.2", AttrPort: "80"})
	c.register(web, "opted-out", map[string]string{AttrIPv4: "10.0.0.3", "mesh-exclude": "true"})
	c.register(api, "a1", map[string]string{AttrIPv4: "10.0.1.1", "mesh-ports": "grpc:9090"})
	c.register(api, "a2", map[string]string{AttrIPv6: "2001:db8::1", "mesh-ports": "grpc:9090"}) // no IPv4: skipped

	r := startSource(t, Config{Region: testRegion, Endpoint: harness.URL, Namespace: "mesh.local",
		MappingConfig: cloudsource.MappingConfig{Ports: []Port{{Number: 80, Protocol: "http"}}}})

	http80 := []model.Port{{Number: 80, Protocol: model.ProtocolHTTP}}
	grpc := []model.Port{{Number: 9090, Protocol: model.ProtocolGRPC}}
	w1 := model.Instance{ID: "w1", Address: "10.0.0.1", Ports: model.TargetPortsFromMap(map[uint32]uint32{80: 8080}),
		Labels:   model.LabelsFromMap(map[string]string{"AVAILABILITY_ZONE": "us-east-1a", "ECS_CLUSTER_NAME": "prod"}),
		Locality: "us-east-1/us-east-1a", Health: model.HealthPassing}
	w2 := model.Instance{ID: "w2", Address: "10.0.0.2", Locality: "us-east-1", Health: model.HealthPassing}
	a1 := model.Instance{ID: "a1", Address: "10.0.1.1", Labels: model.LabelsFromMap(map[string]string{"mesh-ports": "grpc:9090"}),
		Locality: "us-east-1", Health: model.HealthPassing}
	checkBatch(t, "first batch", r.Next(t),
		group("api", "api.mesh.local", grpc, a1),
		group("web", "web.mesh.local", http80, w1, w2))
	if st := r.Reporter.Status(); !st.Synced || st.Stale || st.Services != 2 || st.Instances != 3 {
		t.Fatalf("status: %+v", st)
	}
	skipped := func(reason string) float64 {
		return r.Metric(t, "registry_adapter_cloudmap_instances_skipped", map[string]string{"reason": reason})
	}
	if skipped(cloudsource.SkipNoAddress) != 1 || skipped(cloudsource.SkipOptOut) != 1 {
		t.Fatalf("skipped no-address %v, opted-out %v", skipped(cloudsource.SkipNoAddress), skipped(cloudsource.SkipOptOut))
	}

	// Unchanged: web (no health check) is not read again, only its
	// revision; api (health-checked) is read every time.
	reads := func(op, result string) float64 {
		return r.Metric(t, "registry_adapter_cloudmap_requests_total", map[string]string{"operation": op, "result": result})
	}
	unchanged := func() float64 { return r.Metric(t, "registry_adapter_cloudmap_unchanged_total", nil) }
	base := unchanged()
	r.WaitFor(t, "three unchanged refreshes", func() bool { return unchanged() >= base+3 })
	r.None(t)
	if reads("DiscoverInstancesRevision", "ok") < 3 {
		t.Fatalf("DiscoverInstancesRevision ok = %v", reads("DiscoverInstancesRevision", "ok"))
	}

	c.register(web, "w3", map[string]string{AttrIPv4: "10.0.0.4"})
	w3 := model.Instance{ID: "w3", Address: "10.0.0.4", Locality: "us-east-1", Health: model.HealthPassing}
	checkBatch(t, "w3 registered", r.Next(t), group("web", "web.mesh.local", http80, w1, w2, w3))

	// A health change does not move the revision: the health-checked
	// service is read in full anyway.
	c.health(api, "a1", "UNHEALTHY")
	a1.Health = model.HealthCritical
	checkBatch(t, "a1 unhealthy", r.Next(t), group("api", "api.mesh.local", grpc, a1))

	c.deregister(web, "w1")
	checkBatch(t, "w1 deregistered", r.Next(t), group("web", "web.mesh.local", http80, w2, w3))

	c.deregister(api, "a1")
	checkBatch(t, "api emptied", r.Next(t), model.Group{Scope: "api"})
	if st := r.Reporter.Status(); st.Stale || st.Services != 1 || st.Instances != 2 {
		t.Fatalf("final status: %+v", st)
	}
}

// TestMotoExplicitServices reads only the configured services; a missing
// namespace is an error that keeps the last state.
func TestMotoExplicitServices(t *testing.T) {
	harness.Need(t)
	c := newCloud(t)
	ns := c.namespace("mesh.local")
	c.register(c.service(ns, "web", false), "w1", map[string]string{AttrIPv4: "10.0.0.1", AttrPort: "8080"})
	c.register(c.service(ns, "api", false), "a1", map[string]string{AttrIPv4: "10.0.0.2", AttrPort: "9090"})

	r := startSource(t, Config{Region: testRegion, Endpoint: harness.URL, Namespace: "mesh.local",
		Services:      []string{"web", "missing"},
		MappingConfig: cloudsource.MappingConfig{HostTemplate: "{{.Service}}.{{.Region}}.cloudmap"}})
	checkBatch(t, "first batch", r.Next(t), group("web", "web.us-east-1.cloudmap",
		[]model.Port{{Number: 8080, Protocol: model.ProtocolTCP}},
		model.Instance{ID: "w1", Address: "10.0.0.1", Locality: "us-east-1", Health: model.HealthPassing}))

	r2 := startSource(t, Config{Region: testRegion, Endpoint: harness.URL, Namespace: "nope.local"})
	r2.WaitFor(t, "a failed list", func() bool { return r2.Reporter.Status().Stale })
	if st := r2.Reporter.Status(); st.Synced || !strings.Contains(st.LastError, `namespace "nope.local" not found`) {
		t.Fatalf("status: %+v", st)
	}
	r2.None(t)
}

// TestMotoCloudMapErrors: a 500 and a throttle (Cloud Map's
// RequestLimitExceeded) keep the last good state; recovery sends only what
// changed meanwhile.
func TestMotoCloudMapErrors(t *testing.T) {
	harness.Need(t)
	c := newCloud(t)
	ns := c.namespace("mesh.local")
	web := c.service(ns, "web", false)
	c.register(web, "w1", map[string]string{AttrIPv4: "10.0.0.1", AttrPort: "8080"})
	c.register(web, "w2", map[string]string{AttrIPv4: "10.0.0.2", AttrPort: "8080"})

	target, _ := url.Parse(harness.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	tr := harness.Transport.Clone()
	proxy.Transport = tr
	var mode atomic.Value
	mode.Store("ok")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch mode.Load().(string) {
		case "500":
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `{"__type":"InternalFailure","message":"internal failure"}`)
		case "throttle":
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"__type":"RequestLimitExceeded","Message":"The operation can't be completed because you've reached the quota for the number of requests."}`)
		default:
			proxy.ServeHTTP(w, req)
		}
	}))
	t.Cleanup(func() { srv.Close(); tr.CloseIdleConnections() })

	r := startSource(t, Config{Region: testRegion, Endpoint: srv.URL, Namespace: "mesh.local"})
	tcp := []model.Port{{Number: 8080, Protocol: model.ProtocolTCP}}
	i1 := model.Instance{ID: "w1", Address: "10.0.0.1", Locality: "us-east-1", Health: model.HealthPassing}
	i2 := model.Instance{ID: "w2", Address: "10.0.0.2", Locality: "us-east-1", Health: model.HealthPassing}
	checkBatch(t, "first batch", r.Next(t), group("web", "web.mesh.local", tcp, i1, i2))

	errs := func(kind string) float64 {
		return r.Metric(t, "registry_adapter_source_errors_total", map[string]string{"kind": kind})
	}
	mode.Store("500")
	r.WaitFor(t, "a failed list", func() bool { return errs("api") >= 1 })
	c.deregister(web, "w2")
	r.WaitFor(t, "another failed list", func() bool { return errs("api") >= 2 })
	if st := r.Reporter.Status(); !st.Stale || !st.Synced || st.Instances != 2 || !strings.Contains(st.LastError, "InternalFailure") {
		t.Fatalf("status after a 500: %+v", st)
	}
	r.None(t)

	mode.Store("throttle")
	r.WaitFor(t, "a throttled list", func() bool { return errs("throttled") >= 1 })
	if st := r.Reporter.Status(); !st.Stale || !strings.Contains(st.LastError, "RequestLimitExceeded") {
		t.Fatalf("status after a throttle: %+v", st)
	}
	r.None(t)

	mode.Store("ok")
	checkBatch(t, "after recovery", r.Next(t), group("web", "web.mesh.local", tcp, i1))
	r.WaitFor(t, "not stale", func() bool { return !r.Reporter.Status().Stale })
}
