package ec2

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources/awsapi"
	"github.com/registry-adapter/registry-adapter/sources/awsapi/mototest"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

// expect builds the model.Instance the source should report for an
// instance, from the test's own DescribeInstances.
func (c *cloud) expect(id string, labels map[string]string) model.Instance {
	c.t.Helper()
	in := c.instance(id)
	identity := ""
	if in.IamInstanceProfile != nil {
		identity = aws.ToString(in.IamInstanceProfile.Arn)
	}
	return model.Instance{
		ID: id, Address: aws.ToString(in.PrivateIpAddress), Labels: model.LabelsFromMap(labels),
		Locality: testRegion + "/" + c.zone, Network: c.vpc, Identity: identity, Health: model.HealthUnknown,
	}
}

func group(name string, ports []model.Port, instances ...model.Instance) model.Group {
	slices.SortFunc(instances, func(a, b model.Instance) int { return strings.Compare(a.ID, b.ID) })
	return model.Group{Scope: name, Services: []model.Service{{
		Name: name, Host: name + "." + testRegion + ".ec2", Ports: ports, Instances: instances,
	}}}
}

func sortGroups(gs []model.Group) []model.Group {
	gs = slices.Clone(gs)
	slices.SortFunc(gs, func(a, b model.Group) int { return strings.Compare(a.Scope, b.Scope) })
	return gs
}

func checkBatch(t *testing.T, what string, got []model.Group, want ...model.Group) {
	t.Helper()
	if g, w := sortGroups(got), sortGroups(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("%s:\ngot:%s\nwant:%s\n(got %#v)", what, dump(g), dump(w), g)
	}
}

var (
	http8080 = []model.Port{{Number: 8080, Protocol: model.ProtocolHTTP}}
	apiPorts = []model.Port{{Number: 8080, Protocol: model.ProtocolHTTP}, {Number: 9090, Protocol: model.ProtocolGRPC}}
	cfgPorts = []model.Port{{Number: 80, Protocol: model.ProtocolHTTP}}
)

// TestMotoLifecycle follows instances through moto: the full first batch,
// then only the services that changed, as instances stop, start, change
// tags, opt out and terminate.
func TestMotoLifecycle(t *testing.T) {
	harness.Need(t)
	c := newCloud(t)
	profile := c.createInstanceProfile("web-profile")

	webTags := func(name string) map[string]string {
		return map[string]string{"Name": name, "mesh-service": "web", "mesh-ports": "http:8080", "env": "prod"}
	}
	web1 := c.launch(1, webTags("web-1"), func(in *awsec2.RunInstancesInput) {
		in.IamInstanceProfile = &types.IamInstanceProfileSpecification{Name: aws.String("web-profile")}
	})[0]
	web2 := c.launch(1, webTags("web-2"))[0]
	apiTags := map[string]string{"mesh-service": "API, web", "mesh-ports": "grpc:9090 http-api:8080"}
	api1 := c.launch(1, apiTags)[0]
	dbTags := map[string]string{"mesh-service": "db"}
	db1 := c.launch(1, dbTags)[0] // no ports tag: the configured ports
	c.launch(1, map[string]string{"Name": "untagged"})
	c.launch(1, map[string]string{"mesh-service": "web", "mesh-ports": "http:8080", "mesh-exclude": "yes"})
	c.launch(1, map[string]string{"mesh-service": "web", "mesh-ports": "http:8080", AutoRegistrationTag: "web-group"})
	stopped := c.launch(1, webTags("stopped"))[0]
	c.stop(stopped)
	c.launch(1, map[string]string{"mesh-service": "web", "mesh-ports": "http:80800"}) // invalid ports: skipped

	r := startSource(t, Config{Region: testRegion, Endpoint: harness.URL, MappingConfig: cloudsource.MappingConfig{Ports: []Port{{Number: 80, Protocol: "http"}}}})

	w1 := c.expect(web1, webTags("web-1"))
	if w1.Identity != profile {
		t.Fatalf("instance profile: DescribeInstances says %q, created %q", w1.Identity, profile)
	}
	w2 := c.expect(web2, webTags("web-2"))
	a1 := c.expect(api1, apiTags)
	d1 := c.expect(db1, dbTags)
	checkBatch(t, "first batch", r.Next(t),
		group("api", apiPorts, a1),
		group("db", cfgPorts, d1),
		group("web", apiPorts, w1, w2, a1),
	)
	st := r.Reporter.Status()
	if !st.Synced || st.Stale || st.Services != 3 || st.Instances != 5 {
		t.Fatalf("status after first batch: %+v", st)
	}
	if got := r.Metric(t, "registry_adapter_ec2_instances_skipped", map[string]string{"reason": cloudsource.SkipInvalidPorts}); got != 1 {
		t.Errorf("skipped invalid-ports = %v, want 1", got)
	}
	if got := r.Metric(t, "registry_adapter_ec2_instances_skipped", map[string]string{"reason": cloudsource.SkipOptOut}); got != 1 {
		t.Errorf("skipped opted-out = %v, want 1", got)
	}

	c.stop(web2)
	checkBatch(t, "web-2 stopped", r.Next(t), group("web", apiPorts, w1, a1))

	c.start(web2)
	w2 = c.expect(web2, webTags("web-2"))
	checkBatch(t, "web-2 started", r.Next(t), group("web", apiPorts, w1, w2, a1))

	// web-1 moves from web to api.
	c.tag(web1, map[string]string{"mesh-service": "api"})
	tags := webTags("web-1")
	tags["mesh-service"] = "api"
	w1 = c.expect(web1, tags)
	checkBatch(t, "web-1 moved to api", r.Next(t),
		group("api", apiPorts, a1, w1),
		group("web", apiPorts, w2, a1))

	// api-1 opts out: it leaves both of its services.
	c.tag(api1, map[string]string{"mesh-exclude": "true"})
	checkBatch(t, "api-1 opted out", r.Next(t),
		group("api", http8080, w1),
		group("web", http8080, w2))

	// Terminating the only db instance deletes the db scope.
	c.terminate(db1)
	checkBatch(t, "db-1 terminated", r.Next(t), model.Group{Scope: "db"})

	c.terminate(web1, web2)
	checkBatch(t, "the rest terminated", r.Next(t), model.Group{Scope: "api"}, model.Group{Scope: "web"})
	r.None(t)
	if st := r.Reporter.Status(); !st.Synced || st.Stale || st.LastError != "" {
		t.Fatalf("final status: %+v", st)
	}
}

// TestMotoPagination lists more reservations than fit in one page: every
// instance arrives in the one first batch.
func TestMotoPagination(t *testing.T) {
	harness.Need(t)
	c := newCloud(t)
	tags := map[string]string{"mesh-service": "bulk", "mesh-ports": "tcp:7000"}
	var ids []string
	for range 12 {
		ids = append(ids, c.launch(1, tags)...)
	}
	ids = append(ids, c.launch(3, tags)...) // one reservation, three instances

	r := startSource(t, Config{Region: testRegion, Endpoint: harness.URL, PageSize: 5})
	var want []model.Instance
	for _, id := range ids {
		want = append(want, c.expect(id, tags))
	}
	checkBatch(t, "first batch", r.Next(t), group("bulk", []model.Port{{Number: 7000, Protocol: model.ProtocolTCP}}, want...))
	// 13 reservations, 5 a page: at least 3 requests for the first list.
	if got := r.Metric(t, "registry_adapter_ec2_requests_total", map[string]string{"result": "ok"}); got < 3 {
		t.Fatalf("requests ok = %v, want at least 3 pages", got)
	}
}

// TestMotoSelection checks API filters, tag filters, the public address, a
// network override and a custom host template against moto.
func TestMotoSelection(t *testing.T) {
	harness.Need(t)
	c := newCloud(t)
	prod := map[string]string{"mesh-service": "shop", "mesh-ports": "http:8080", "env": "prod", "team": "a"}
	keep := c.launch(1, prod, func(in *awsec2.RunInstancesInput) {
		// A public address, as in a public subnet.
		in.SubnetId = nil
		in.NetworkInterfaces = []types.InstanceNetworkInterfaceSpecification{{
			DeviceIndex: aws.Int32(0), SubnetId: aws.String(c.subnet), AssociatePublicIpAddress: aws.Bool(true),
		}}
	})[0]
	staging := map[string]string{"mesh-service": "shop", "mesh-ports": "http:8080", "env": "staging", "team": "a"}
	c.launch(1, staging)
	otherTeam := map[string]string{"mesh-service": "shop", "mesh-ports": "http:8080", "env": "prod", "team": "b"}
	c.launch(1, otherTeam)

	in := c.instance(keep)
	if aws.ToString(in.PublicIpAddress) == "" {
		mototest.Unavailable(t, "moto gave instance %s no public address", keep)
	}
	r := startSource(t, Config{
		Region: testRegion, Endpoint: harness.URL,
		Filters: map[string][]string{"tag:env": {"prod"}, "vpc-id": {c.vpc}},
		Tags:    map[string][]string{"team": {"a"}},
		MappingConfig: cloudsource.MappingConfig{
			AddressType:  cloudsource.AddressPublic,
			Network:      "aws-net",
			HostTemplate: "{{.Service}}.shop.example.com",
		},
	})
	checkBatch(t, "first batch", r.Next(t), model.Group{Scope: "shop", Services: []model.Service{{
		Name: "shop", Host: "shop.shop.example.com", Ports: http8080,
		Instances: []model.Instance{{
			ID: keep, Address: aws.ToString(in.PublicIpAddress), Labels: model.LabelsFromMap(prod),
			Locality: testRegion + "/" + c.zone, Network: "aws-net", Health: model.HealthUnknown,
		}},
	}}})
	if got := r.Metric(t, "registry_adapter_ec2_instances_seen", nil); got != 1 {
		t.Fatalf("instances seen = %v, want 1 (the filters are applied by the API)", got)
	}
}

// TestMotoAssumeRole lists another account's instances through a role: with
// moto, the assumed role's credentials select the role's account.
func TestMotoAssumeRole(t *testing.T) {
	harness.Need(t)
	const role = "arn:aws:iam::111122223333:role/mesh-reader"
	// The instances live in account 111122223333 ...
	other := newCloudWith(t, assumeRole(t, role))
	tags := map[string]string{"mesh-service": "ledger", "mesh-ports": "tcp:5432"}
	id := other.launch(1, tags)[0]
	// ... and the default account has an instance of its own.
	home := newCloud(t)
	homeID := home.launch(1, tags)[0]

	r := startSource(t, Config{Region: testRegion, Endpoint: harness.URL, Role: awsapi.Role{AssumeRoleARN: role, STSEndpoint: harness.URL}})
	want := other.expect(id, tags)
	checkBatch(t, "through the role", r.Next(t), group("ledger", []model.Port{{Number: 5432, Protocol: model.ProtocolTCP}}, want))

	r2 := startSource(t, Config{Region: testRegion, Endpoint: harness.URL})
	checkBatch(t, "without the role", r2.Next(t), group("ledger", []model.Port{{Number: 5432, Protocol: model.ProtocolTCP}}, home.expect(homeID, tags)))
}

// faultyEC2 is a proxy in front of moto that can fail on demand.
type faultyEC2 struct {
	srv      *httptest.Server
	mode     atomic.Value // "ok", "500", "throttle"
	requests atomic.Int64
}

func newFaultyEC2(t *testing.T) *faultyEC2 {
	t.Helper()
	target, _ := url.Parse(harness.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	tr := harness.Transport.Clone()
	proxy.Transport = tr
	f := &faultyEC2{}
	f.mode.Store("ok")
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		switch f.mode.Load().(string) {
		case "500":
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>InternalError</Code>`+
				`<Message>An internal error has occurred</Message></Error></Errors><RequestID>r-500</RequestID></Response>`)
		case "throttle":
			// What EC2 answers when the account's API rate is exceeded.
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded</Code>`+
				`<Message>Request limit exceeded.</Message></Error></Errors><RequestID>r-throttle</RequestID></Response>`)
		default:
			proxy.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(func() { f.srv.Close(); tr.CloseIdleConnections() })
	return f
}

// TestMotoAPIErrors: a 500 and a throttle keep the last good state (nothing
// is sent, the source is stale), and the next good list sends only what
// changed meanwhile.
func TestMotoAPIErrors(t *testing.T) {
	harness.Need(t)
	c := newCloud(t)
	tags := map[string]string{"mesh-service": "web", "mesh-ports": "http:8080"}
	a := c.launch(1, tags)[0]
	b := c.launch(1, tags)[0]
	f := newFaultyEC2(t)
	r := startSource(t, Config{Region: testRegion, Endpoint: f.srv.URL})
	checkBatch(t, "first batch", r.Next(t), group("web", http8080, c.expect(a, tags), c.expect(b, tags)))

	errs := func(kind string) float64 {
		return r.Metric(t, "registry_adapter_source_errors_total", map[string]string{"kind": kind})
	}
	f.mode.Store("500")
	r.WaitFor(t, "a failed list", func() bool { return errs("api") >= 1 })
	// Every list from now on fails: the source must not see this.
	c.terminate(b)
	r.WaitFor(t, "another failed list", func() bool { return errs("api") >= 2 })
	st := r.Reporter.Status()
	if !st.Stale || !st.Synced || !strings.Contains(st.LastError, "InternalError") || st.Instances != 2 {
		t.Fatalf("status after a 500: %+v", st)
	}
	r.None(t)

	f.mode.Store("throttle")
	r.WaitFor(t, "a throttled list", func() bool { return errs("throttled") >= 1 })
	st = r.Reporter.Status()
	if !st.Stale || !strings.Contains(st.LastError, "RequestLimitExceeded") {
		t.Fatalf("status after a throttle: %+v", st)
	}
	if got := r.Metric(t, "registry_adapter_ec2_requests_total", map[string]string{"result": "throttled"}); got < 1 {
		t.Fatalf("requests throttled = %v", got)
	}
	r.None(t)

	f.mode.Store("ok")
	checkBatch(t, "after recovery", r.Next(t), group("web", http8080, c.expect(a, tags)))
	r.WaitFor(t, "not stale", func() bool { return !r.Reporter.Status().Stale })
	if st := r.Reporter.Status(); st.Instances != 1 {
		t.Fatalf("status after recovery: %+v", st)
	}
}

// TestUnreachable: with nothing listening, the source sends nothing and
// reports itself failing, never synced.
func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := startSource(t, Config{Region: testRegion, Endpoint: "http://" + addr})
	r.WaitFor(t, "two failed lists", func() bool {
		return r.Metric(t, "registry_adapter_source_errors_total", map[string]string{"kind": "api"}) >= 2
	})
	st := r.Reporter.Status()
	if st.Synced || !st.Stale || !strings.Contains(st.LastError, "connect") {
		t.Fatalf("status: %+v", st)
	}
	r.None(t)
}
