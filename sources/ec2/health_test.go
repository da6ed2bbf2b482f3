package ec2

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"go.uber.org/zap/zaptest"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

func TestStatusVerdict(t *testing.T) {
	sum := func(s types.SummaryStatus, failing ...string) *types.InstanceStatusSummary {
		out := &types.InstanceStatusSummary{Status: s}
		for _, f := range failing {
			out.Details = append(out.Details, types.InstanceStatusDetails{Name: types.StatusName(f), Status: types.StatusTypeFailed})
		}
		return out
	}
	ok := sum(types.SummaryStatusOk)
	for _, tc := range []struct {
		name             string
		system, instance *types.InstanceStatusSummary
		ebs              types.SummaryStatus
		want             model.Health
		detail           string
	}{
		{"both ok", ok, ok, "", model.HealthPassing, ""},
		{"system impaired", sum(types.SummaryStatusImpaired, "reachability"), ok, "", model.HealthCritical, "system status impaired (reachability failed)"},
		{"instance impaired", ok, sum(types.SummaryStatusImpaired), "", model.HealthCritical, "instance status impaired"},
		{"initializing", sum(types.SummaryStatusInitializing), sum(types.SummaryStatusInitializing), "", model.HealthCritical,
			"system status initializing; instance status initializing"},
		{"insufficient data", ok, sum(types.SummaryStatusInsufficientData), "", model.HealthUnknown, ""},
		{"not applicable", sum(types.SummaryStatusNotApplicable), sum(types.SummaryStatusNotApplicable), "", model.HealthUnknown, ""},
		{"missing", nil, nil, "", model.HealthUnknown, ""},
		{"ebs impaired", ok, ok, types.SummaryStatusImpaired, model.HealthCritical, "attached EBS status impaired"},
		{"ebs not applicable", ok, ok, types.SummaryStatusNotApplicable, model.HealthPassing, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := types.InstanceStatus{SystemStatus: tc.system, InstanceStatus: tc.instance}
			if tc.ebs != "" {
				st.AttachedEbsStatus = &types.EbsStatusSummary{Status: tc.ebs}
			}
			v := statusVerdict(st)
			if v.Health != tc.want || v.Detail != tc.detail {
				t.Fatalf("verdict %v %q, want %v %q", v.Health, v.Detail, tc.want, tc.detail)
			}
		})
	}
}

// TestMapUnhealthyLeftOut: a critical instance is not sent as critical but
// left out, so that the adapter sees it removed (and the mass-deletion
// guard counts it); the others carry the health they were given.
func TestMapUnhealthyLeftOut(t *testing.T) {
	m := newTestMapper(t, nil)
	tags := map[string]string{"mesh-service": "web", "mesh-ports": "http:8080", "Name": "w"}
	health := map[string]cloudsource.Verdict{
		"i-1": {Health: model.HealthPassing},
		"i-2": {Health: model.HealthCritical, Detail: "system status impaired"},
	}
	res := m.mapInstances([]types.Instance{inst("i-1", tags), inst("i-2", tags), inst("i-3", tags),
		inst("i-4", map[string]string{"mesh-service": "web"})}, func(id string) cloudsource.Verdict { return health[id] })
	if len(res.Groups) != 1 {
		t.Fatalf("groups:%s", dump(res.Groups))
	}
	var got []string
	for _, in := range res.Groups[0].Services[0].Instances {
		got = append(got, in.ID+"="+in.Health.String())
	}
	if want := []string{"i-1=passing", "i-3=unknown"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("instances %v, want %v", got, want)
	}
	if res.Skipped[skipUnhealthy] != 1 || res.Skipped[skipNoPorts] != 1 {
		t.Fatalf("skipped %v", res.Skipped)
	}
	// i-4 has no ports: it is not counted by health.
	if want := map[model.Health]int{model.HealthPassing: 1, model.HealthCritical: 1, model.HealthUnknown: 1}; !reflect.DeepEqual(res.Health, want) {
		t.Fatalf("by health %v, want %v", res.Health, want)
	}
	if p := res.Problems["i-2"]; p.Reason != skipUnhealthy || p.Detail != "system status impaired" || p.Name != "w" {
		t.Fatalf("problem %+v", p)
	}
}

// statusAPI answers DescribeInstanceStatus like EC2 for a set of known
// instances: an unknown ID fails the whole call with
// InvalidInstanceID.NotFound naming it.
type statusAPI struct {
	instancesAPI
	known map[string]bool
	calls [][]string
}

func (a *statusAPI) DescribeInstanceStatus(_ context.Context, in *awsec2.DescribeInstanceStatusInput,
	_ ...func(*awsec2.Options)) (*awsec2.DescribeInstanceStatusOutput, error) {
	a.calls = append(a.calls, in.InstanceIds)
	var missing []string
	out := &awsec2.DescribeInstanceStatusOutput{}
	ok := &types.InstanceStatusSummary{Status: types.SummaryStatusOk}
	for _, id := range in.InstanceIds {
		if !a.known[id] {
			missing = append(missing, id)
			continue
		}
		out.InstanceStatuses = append(out.InstanceStatuses, types.InstanceStatus{InstanceId: aws.String(id), SystemStatus: ok, InstanceStatus: ok})
	}
	if len(missing) > 0 {
		return nil, &smithy.GenericAPIError{Code: "InvalidInstanceID.NotFound",
			Message: fmt.Sprintf("The instance IDs '%s' do not exist", strings.Join(missing, ", "))}
	}
	return out, nil
}

// TestStatusNotFoundRetried: an instance DescribeInstanceStatus does not
// know yet (eventual consistency) fails the batch; it is asked once more
// without it, and the others get their answer.
func TestStatusNotFoundRetried(t *testing.T) {
	api := &statusAPI{known: map[string]bool{"i-1": true, "i-3": true}}
	l := &lister{cfg: &Config{Region: testRegion}, metrics: newMetrics("t"), log: zaptest.NewLogger(t), health: cloudsource.NewHealthBook()}
	running := func(id string) types.Instance {
		return types.Instance{InstanceId: aws.String(id), State: &types.InstanceState{Name: types.InstanceStateNameRunning}}
	}
	l.readHealth(context.Background(), api, []types.Instance{running("i-1"), running("i-2"), running("i-3")})
	if want := [][]string{{"i-1", "i-2", "i-3"}, {"i-1", "i-3"}}; !reflect.DeepEqual(api.calls, want) {
		t.Fatalf("calls %v, want %v", api.calls, want)
	}
	for id, want := range map[string]model.Health{"i-1": model.HealthPassing, "i-2": model.HealthUnknown, "i-3": model.HealthPassing} {
		if got := l.health.Get(id).Health; got != want {
			t.Errorf("%s: %v, want %v", id, got, want)
		}
	}
}

// healthProxy stands in front of moto. moto 5.2.1 implements
// DescribeInstanceStatus (its real XML), but reports every running instance
// ok and has no way to impair one: the proxy rewrites the status checks of
// the instances the test names in moto's own answer, fails the call on
// demand, and counts requests by action.
type healthProxy struct {
	srv  *httptest.Server
	mode atomic.Value // of DescribeInstanceStatus: "ok", "500", "throttle"

	mu       sync.Mutex
	statuses map[string]string // instance ID -> summary status of both checks
	requests map[string]int    // by Action
}

func newHealthProxy(t *testing.T) *healthProxy {
	t.Helper()
	target, _ := url.Parse(motoURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	tr := testTransport.Clone()
	proxy.Transport = tr
	p := &healthProxy{statuses: map[string]string{}, requests: map[string]int{}}
	p.mode.Store("ok")
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Header.Get("X-Test-Action") != "DescribeInstanceStatus" || resp.StatusCode != http.StatusOK {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		b = p.rewrite(b)
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Set("Content-Length", fmt.Sprint(len(b)))
		return nil
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		action := form.Get("Action")
		p.mu.Lock()
		p.requests[action]++
		p.mu.Unlock()
		r.Header.Set("X-Test-Action", action)
		if action == "DescribeInstanceStatus" {
			code, msg, status := "", "", 0
			switch p.mode.Load().(string) {
			case "500":
				code, msg, status = "InternalError", "An internal error has occurred", http.StatusInternalServerError
			case "throttle":
				code, msg, status = "RequestLimitExceeded", "Request limit exceeded.", http.StatusServiceUnavailable
			}
			if code != "" {
				w.Header().Set("Content-Type", "text/xml")
				w.WriteHeader(status)
				fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>%s</Code>`+
					`<Message>%s</Message></Error></Errors><RequestID>r-1</RequestID></Response>`, code, msg)
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { p.srv.Close(); tr.CloseIdleConnections() })
	return p
}

// set makes both status checks of id report status ("impaired",
// "initializing", "insufficient-data"); "" gives moto's own answer back.
func (p *healthProxy) set(id, status string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if status == "" {
		delete(p.statuses, id)
	} else {
		p.statuses[id] = status
	}
}

func (p *healthProxy) count(action string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[action]
}

func (p *healthProxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests = map[string]int{}
}

// rewrite replaces, in moto's DescribeInstanceStatusResponse, the status
// (and reachability detail) of the system and instance checks of each
// instance the test set.
func (p *healthProxy) rewrite(b []byte) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := string(b)
	for id, status := range p.statuses {
		at := strings.Index(s, "<instanceId>"+id+"</instanceId>")
		if at < 0 {
			continue
		}
		end := strings.Index(s[at:], "</systemStatus>")
		if end < 0 {
			continue
		}
		end += at
		detail := map[string]string{"impaired": "failed", "initializing": "initializing", "insufficient-data": "insufficient-data"}[status]
		item := s[at:end]
		item = strings.ReplaceAll(item, "<status>passed</status>", "<status>"+detail+"</status>")
		item = strings.ReplaceAll(item, "<status>ok</status>", "<status>"+status+"</status>")
		s = s[:at] + item + s[end:]
	}
	return []byte(s)
}

func healthy(in model.Instance) model.Instance {
	in.Health = model.HealthPassing
	return in
}

// TestMotoHealth: an instance whose status checks turn impaired leaves the
// service at the next refresh and comes back when they pass; one that is
// initializing is not served yet; insufficient data keeps the last answer.
func TestMotoHealth(t *testing.T) {
	needMoto(t)
	c := newCloud(t)
	tags := map[string]string{"mesh-service": "web", "mesh-ports": "http:8080"}
	a := c.launch(1, tags)[0]
	b := c.launch(1, tags)[0]
	p := newHealthProxy(t)
	r := startSource(t, Config{Region: testRegion, Endpoint: p.srv.URL, Health: cloudsource.HealthConfig{Enabled: true}})
	ea, eb := healthy(c.expect(a, tags)), healthy(c.expect(b, tags))
	checkBatch(t, "both ok", r.Next(t), group("web", http8080, ea, eb))

	byHealth := func(h string) float64 {
		return r.Metric(t, "registry_adapter_ec2_instances_by_health", map[string]string{"health": h})
	}
	p.set(b, "impaired")
	checkBatch(t, "b impaired", r.Next(t), group("web", http8080, ea))
	r.WaitFor(t, "metrics of the impaired instance", func() bool {
		return byHealth("critical") == 1 && byHealth("passing") == 1 &&
			r.Metric(t, "registry_adapter_ec2_instances_skipped", map[string]string{"reason": "unhealthy"}) == 1
	})
	if st := r.Reporter.Status(); st.Stale || st.Instances != 1 {
		t.Fatalf("status with an impaired instance: %+v", st)
	}

	// Insufficient data is no answer: b stays out.
	p.set(b, "insufficient-data")
	before := p.count("DescribeInstanceStatus")
	r.WaitFor(t, "two more health calls", func() bool { return p.count("DescribeInstanceStatus") >= before+2 })
	r.None(t)

	p.set(b, "")
	checkBatch(t, "b ok again", r.Next(t), group("web", http8080, ea, eb))

	// A new instance is served once its checks pass, not while they
	// initialize.
	n := c.launch(1, tags)[0]
	p.set(n, "initializing")
	before = p.count("DescribeInstances")
	r.WaitFor(t, "two more lists", func() bool { return p.count("DescribeInstances") >= before+2 })
	r.None(t)
	p.set(n, "")
	checkBatch(t, "the new instance ok", r.Next(t), group("web", http8080, ea, eb, healthy(c.expect(n, tags))))
}

// TestMotoHealthAPIFailing: a health API that fails (500) or throttles
// changes nothing that is served: the impaired instance stays out, the
// healthy ones stay in, the source is not stale. Instances the list adds
// meanwhile are served with unknown health, and the answers come back
// when the API does.
func TestMotoHealthAPIFailing(t *testing.T) {
	needMoto(t)
	c := newCloud(t)
	tags := map[string]string{"mesh-service": "web", "mesh-ports": "http:8080"}
	a := c.launch(1, tags)[0]
	b := c.launch(1, tags)[0]
	p := newHealthProxy(t)
	p.set(a, "impaired")
	r := startSource(t, Config{Region: testRegion, Endpoint: p.srv.URL, Health: cloudsource.HealthConfig{Enabled: true}})
	eb := healthy(c.expect(b, tags))
	checkBatch(t, "a impaired", r.Next(t), group("web", http8080, eb))

	healthErrors := func(result string) float64 {
		return r.Metric(t, "registry_adapter_ec2_health_requests_total", map[string]string{"result": result})
	}
	for _, mode := range []struct{ mode, result string }{{"500", "error"}, {"throttle", "throttled"}} {
		p.mode.Store(mode.mode)
		// a would be ok now: a failing API must not be read as an answer.
		p.set(a, "")
		before := healthErrors(mode.result)
		r.WaitFor(t, "two failed health calls ("+mode.mode+")", func() bool { return healthErrors(mode.result) >= before+2 })
		r.None(t)
		if st := r.Reporter.Status(); st.Stale || !st.Synced || st.Instances != 1 {
			t.Fatalf("status while the health API fails (%s): %+v", mode.mode, st)
		}
		p.set(a, "impaired")
	}

	// An instance first seen while the health API fails is served, its
	// health unknown.
	n := c.launch(1, tags)[0]
	checkBatch(t, "a new instance, health unknown", r.Next(t), group("web", http8080, eb, c.expect(n, tags)))

	p.set(a, "")
	p.mode.Store("ok")
	checkBatch(t, "after recovery", r.Next(t), group("web", http8080, healthy(c.expect(a, tags)), eb, healthy(c.expect(n, tags))))
}

// TestMotoHealthRequests counts the requests of one refresh with health
// on: one DescribeInstances page per 1,000 instances and one
// DescribeInstanceStatus per 100 running instances. The README's figure at
// 1,000 instances was taken with 1000 added to sizes (50 s of moto time,
// too long to run on every make test).
func TestMotoHealthRequests(t *testing.T) {
	needMoto(t)
	c := newCloud(t)
	// newCloud's /24 holds fewer than 1,000 addresses.
	sn, err := c.ec2.CreateSubnet(context.Background(), &awsec2.CreateSubnetInput{
		VpcId: aws.String(c.vpc), CidrBlock: aws.String("10.0.4.0/22"), AvailabilityZone: aws.String(c.zone),
	})
	if err != nil {
		t.Fatalf("CreateSubnet: %v", err)
	}
	c.subnet = aws.ToString(sn.Subnet.SubnetId)
	tags := map[string]string{"mesh-service": "web", "mesh-ports": "http:8080"}
	p := newHealthProxy(t)
	total := 0
	for _, n := range []int{100, 201} {
		c.launch(int32(n-total), tags)
		total = n
		src, err := New(Config{Region: testRegion, Endpoint: p.srv.URL, Health: cloudsource.HealthConfig{Enabled: true}}, sourcesOptions())
		if err != nil {
			t.Fatal(err)
		}
		p.reset()
		groups, err := src.Lister.List(context.Background())
		src.Lister.CloseIdleConnections()
		if err != nil {
			t.Fatal(err)
		}
		if got := len(groups[0].Services[0].Instances); got != n {
			t.Fatalf("%d instances served, want %d", got, n)
		}
		for _, in := range groups[0].Services[0].Instances {
			if in.Health != model.HealthPassing {
				t.Fatalf("%s: health %v", in.ID, in.Health)
			}
		}
		di, ds := p.count("DescribeInstances"), p.count("DescribeInstanceStatus")
		t.Logf("%d instances: %d DescribeInstances + %d DescribeInstanceStatus requests per refresh", n, di, ds)
		if di != (n+999)/1000 || ds != (n+99)/100 {
			t.Fatalf("%d instances: %d DescribeInstances and %d DescribeInstanceStatus requests, want %d and %d",
				n, di, ds, (n+999)/1000, (n+99)/100)
		}
	}
}
