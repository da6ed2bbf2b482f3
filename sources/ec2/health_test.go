package ec2

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"
	"go.uber.org/zap/zaptest"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources/awsapi/mototest"
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
	if res.Skipped[cloudsource.SkipUnhealthy] != 1 || res.Skipped[cloudsource.SkipNoPorts] != 1 {
		t.Fatalf("skipped %v", res.Skipped)
	}
	// i-4 has no ports: it is not counted by health.
	if want := map[model.Health]int{model.HealthPassing: 1, model.HealthCritical: 1, model.HealthUnknown: 1}; !reflect.DeepEqual(res.Health, want) {
		t.Fatalf("by health %v, want %v", res.Health, want)
	}
	if p := res.Problems["i-2"]; p.Reason != cloudsource.SkipUnhealthy || p.Detail != "system status impaired" || p.Name != "w" {
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

// newHealthProxy starts a mototest.StatusProxy in front of the test's moto.
func newHealthProxy(t *testing.T) *mototest.StatusProxy {
	t.Helper()
	p, err := mototest.NewStatusProxy(harness.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func healthy(in model.Instance) model.Instance {
	in.Health = model.HealthPassing
	return in
}

// TestMotoHealth: an instance whose status checks turn impaired leaves the
// service at the next refresh and comes back when they pass; one that is
// initializing is not served yet; insufficient data keeps the last answer.
func TestMotoHealth(t *testing.T) {
	harness.Need(t)
	c := newCloud(t)
	tags := map[string]string{"mesh-service": "web", "mesh-ports": "http:8080"}
	a := c.launch(1, tags)[0]
	b := c.launch(1, tags)[0]
	p := newHealthProxy(t)
	r := startSource(t, Config{Region: testRegion, Endpoint: p.URL, Health: healthOn})
	ea, eb := healthy(c.expect(a, tags)), healthy(c.expect(b, tags))
	checkBatch(t, "both ok", r.Next(t), group("web", http8080, ea, eb))

	byHealth := func(h string) float64 {
		return r.Metric(t, "registry_adapter_ec2_instances_by_health", map[string]string{"health": h})
	}
	p.Set(b, "impaired")
	checkBatch(t, "b impaired", r.Next(t), group("web", http8080, ea))
	r.WaitFor(t, "metrics of the impaired instance", func() bool {
		return byHealth("critical") == 1 && byHealth("passing") == 1 &&
			r.Metric(t, "registry_adapter_ec2_instances_skipped", map[string]string{"reason": "unhealthy"}) == 1
	})
	if st := r.Reporter.Status(); st.Stale || st.Instances != 1 {
		t.Fatalf("status with an impaired instance: %+v", st)
	}

	// Insufficient data is no answer: b stays out.
	p.Set(b, "insufficient-data")
	before := p.Count("DescribeInstanceStatus")
	r.WaitFor(t, "two more health calls", func() bool { return p.Count("DescribeInstanceStatus") >= before+2 })
	r.None(t)

	p.Set(b, "")
	checkBatch(t, "b ok again", r.Next(t), group("web", http8080, ea, eb))

	// A new instance is served once its checks pass, not while they
	// initialize.
	n := c.launch(1, tags)[0]
	p.Set(n, "initializing")
	before = p.Count("DescribeInstances")
	r.WaitFor(t, "two more lists", func() bool { return p.Count("DescribeInstances") >= before+2 })
	r.None(t)
	p.Set(n, "")
	checkBatch(t, "the new instance ok", r.Next(t), group("web", http8080, ea, eb, healthy(c.expect(n, tags))))
}

// TestMotoHealthAPIFailing: a health API that fails (500) or throttles
// changes nothing that is served: the impaired instance stays out, the
// healthy ones stay in, the source is not stale. Instances the list adds
// meanwhile are served with unknown health, and the answers come back
// when the API does.
func TestMotoHealthAPIFailing(t *testing.T) {
	harness.Need(t)
	c := newCloud(t)
	tags := map[string]string{"mesh-service": "web", "mesh-ports": "http:8080"}
	a := c.launch(1, tags)[0]
	b := c.launch(1, tags)[0]
	p := newHealthProxy(t)
	p.Set(a, "impaired")
	r := startSource(t, Config{Region: testRegion, Endpoint: p.URL, Health: healthOn})
	eb := healthy(c.expect(b, tags))
	checkBatch(t, "a impaired", r.Next(t), group("web", http8080, eb))

	healthErrors := func(result string) float64 {
		return r.Metric(t, "registry_adapter_ec2_health_requests_total", map[string]string{"result": result})
	}
	for _, mode := range []struct{ mode, result string }{{"500", "error"}, {"throttle", "throttled"}} {
		p.Fail(mode.mode)
		// a would be ok now: a failing API must not be read as an answer.
		p.Set(a, "")
		before := healthErrors(mode.result)
		r.WaitFor(t, "two failed health calls ("+mode.mode+")", func() bool { return healthErrors(mode.result) >= before+2 })
		r.None(t)
		if st := r.Reporter.Status(); st.Stale || !st.Synced || st.Instances != 1 {
			t.Fatalf("status while the health API fails (%s): %+v", mode.mode, st)
		}
		p.Set(a, "impaired")
	}

	// An instance first seen while the health API fails is served, its
	// health unknown.
	n := c.launch(1, tags)[0]
	checkBatch(t, "a new instance, health unknown", r.Next(t), group("web", http8080, eb, c.expect(n, tags)))

	p.Set(a, "")
	p.Fail("")
	checkBatch(t, "after recovery", r.Next(t), group("web", http8080, healthy(c.expect(a, tags)), eb, healthy(c.expect(n, tags))))
}

// TestMotoHealthRequests counts the requests of one refresh with health
// on: one DescribeInstances page per 1,000 instances and one
// DescribeInstanceStatus per 100 running instances. The README's figure at
// 1,000 instances was taken with 1000 added to sizes (50 s of moto time,
// too long to run on every make test).
func TestMotoHealthRequests(t *testing.T) {
	harness.Need(t)
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
		src, err := New(Config{Region: testRegion, Endpoint: p.URL, Health: healthOn}, sourcesOptions())
		if err != nil {
			t.Fatal(err)
		}
		p.Reset()
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
		di, ds := p.Count("DescribeInstances"), p.Count("DescribeInstanceStatus")
		t.Logf("%d instances: %d DescribeInstances + %d DescribeInstanceStatus requests per refresh", n, di, ds)
		if di != (n+999)/1000 || ds != (n+99)/100 {
			t.Fatalf("%d instances: %d DescribeInstances and %d DescribeInstanceStatus requests, want %d and %d",
				n, di, ds, (n+999)/1000, (n+99)/100)
		}
	}
}

// healthOn is health enabled, status checks only.
var healthOn = HealthConfig{HealthConfig: cloudsource.HealthConfig{Enabled: true}}

// targetGroup creates an ELBv2 target group in the test's VPC with these
// instances registered on port 8080 (moto reports them healthy) and
// returns its ARN.
func (c *cloud) targetGroup(name string, ids ...string) string {
	c.t.Helper()
	e := elbv2.New(elbv2.Options{Region: testRegion, BaseEndpoint: aws.String(harness.URL), Credentials: c.creds, HTTPClient: harness.HTTP})
	ctx := context.Background()
	tg, err := e.CreateTargetGroup(ctx, &elbv2.CreateTargetGroupInput{
		Name: aws.String(name), Protocol: elbtypes.ProtocolEnumHttp, Port: aws.Int32(8080), VpcId: aws.String(c.vpc),
		TargetType: elbtypes.TargetTypeEnumInstance,
	})
	if err != nil {
		c.t.Fatalf("CreateTargetGroup: %v", err)
	}
	arn := aws.ToString(tg.TargetGroups[0].TargetGroupArn)
	var targets []elbtypes.TargetDescription
	for _, id := range ids {
		targets = append(targets, elbtypes.TargetDescription{Id: aws.String(id), Port: aws.Int32(8080)})
	}
	if _, err := e.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: aws.String(arn), Targets: targets}); err != nil {
		c.t.Fatalf("RegisterTargets: %v", err)
	}
	return arn
}

// TestMotoTargetHealth: with health.targetGroups, an instance its target
// group reports unhealthy leaves and comes back when healthy; an instance
// in no named group is served on its status checks alone; a failing or
// throttled DescribeTargetHealth changes nothing; one request per target
// group per refresh.
func TestMotoTargetHealth(t *testing.T) {
	harness.Need(t)
	c := newCloud(t)
	tags := map[string]string{"mesh-service": "web", "mesh-ports": "http:8080"}
	a := c.launch(1, tags)[0]
	b := c.launch(1, tags)[0]
	n := c.launch(1, tags)[0] // in no target group
	arn := c.targetGroup("web", a, b)
	p := newHealthProxy(t)
	h := healthOn
	h.TargetGroups, h.ELBv2Endpoint = []string{arn}, p.URL
	r := startSource(t, Config{Region: testRegion, Endpoint: p.URL, Health: h})
	ea, eb, en := healthy(c.expect(a, tags)), healthy(c.expect(b, tags)), healthy(c.expect(n, tags))
	checkBatch(t, "all healthy", r.Next(t), group("web", http8080, ea, eb, en))

	p.SetTarget(b, "unhealthy")
	checkBatch(t, "b unhealthy in its target group", r.Next(t), group("web", http8080, ea, en))

	healthErrors := func(result string) float64 {
		return r.Metric(t, "registry_adapter_ec2_health_requests_total", map[string]string{"result": result})
	}
	for _, mode := range []struct{ mode, result string }{{"500", "error"}, {"throttle", "throttled"}} {
		p.Fail(mode.mode)
		p.SetTarget(b, "")
		p.SetTarget(a, "unhealthy")
		before := healthErrors(mode.result)
		r.WaitFor(t, "two failed health rounds ("+mode.mode+")", func() bool { return healthErrors(mode.result) >= before+2 })
		r.None(t)
		p.SetTarget(a, "")
		p.SetTarget(b, "unhealthy")
	}
	p.Fail("")
	p.SetTarget(b, "draining")
	before := p.Count("DescribeTargetHealth")
	r.WaitFor(t, "two more target health answers", func() bool { return p.Count("DescribeTargetHealth") >= before+2 })
	r.None(t)
	p.SetTarget(b, "")
	checkBatch(t, "b healthy again", r.Next(t), group("web", http8080, ea, eb, en))

	p.Reset()
	before = p.Count("DescribeInstances")
	r.WaitFor(t, "two more lists", func() bool { return p.Count("DescribeInstances") >= before+2 })
	lists, targets := p.Count("DescribeInstances"), p.Count("DescribeTargetHealth")
	if targets < lists-1 || targets > lists+1 {
		t.Fatalf("%d DescribeTargetHealth requests in %d refreshes, want one per refresh", targets, lists)
	}
}
