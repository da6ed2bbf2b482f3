package ec2

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources/awsapi"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

// targetHealthAPI is the ELBv2 call health.targetGroups makes.
type targetHealthAPI interface {
	DescribeTargetHealth(ctx context.Context, in *elbv2.DescribeTargetHealthInput,
		optFns ...func(*elbv2.Options)) (*elbv2.DescribeTargetHealthOutput, error)
}

// statusBatch is the most instance IDs DescribeInstanceStatus takes in one
// request (MaxResults cannot be combined with InstanceIds).
const statusBatch = 100

// readHealth asks DescribeInstanceStatus about the running instances of
// this list, statusBatch IDs per request, then each target group of
// health.targetGroups (one DescribeTargetHealth each), and records each
// answer in the signal's book. A request that fails keeps the last known
// health of the instances it would have answered for; a throttled one ends
// this refresh's health requests (the rest keep theirs too), so that health
// never adds to a throttled account's load. Errors are only logged: they
// never fail the list.
func (l *lister) readHealth(ctx context.Context, api instancesAPI, instances []types.Instance) {
	var ids []string
	listed := make(map[string]bool, len(instances))
	for i := range instances {
		in := &instances[i]
		if in.State == nil || in.State.Name != types.InstanceStateNameRunning || in.InstanceId == nil {
			continue
		}
		if !listed[*in.InstanceId] {
			ids = append(ids, *in.InstanceId)
			listed[*in.InstanceId] = true
		}
	}
	l.health.Retain(listed)
	slices.Sort(ids)
	var failed []error
	stop := func(err error) bool {
		failed = append(failed, err)
		var throttled *poll.ThrottledError
		return errors.As(err, &throttled) || ctx.Err() != nil
	}
	stopped := false
	for batch := range slices.Chunk(ids, statusBatch) {
		statuses, err := l.describeStatus(ctx, api, batch)
		if err != nil {
			if stopped = stop(err); stopped {
				break
			}
			continue
		}
		for _, st := range statuses {
			l.health.Record(aws.ToString(st.InstanceId), statusVerdict(st))
		}
	}
	for _, arn := range l.cfg.Health.TargetGroups {
		book := l.targets[arn]
		if stopped {
			book.Retain(listed)
			continue
		}
		verdicts, err := l.targetHealth(ctx, arn, listed)
		if err != nil {
			book.Retain(listed)
			stopped = stop(err)
			continue
		}
		// An instance no longer in the group is forgotten by the group.
		reported := make(map[string]bool, len(verdicts))
		for id := range verdicts {
			reported[id] = true
		}
		book.Retain(reported)
		for id, v := range verdicts {
			book.Record(id, v)
		}
	}
	if len(failed) > 0 {
		l.log.Warn("EC2 health requests failed; keeping the last known health of the instances they did not answer for",
			zap.Int("instances", len(ids)), zap.Error(errors.Join(failed...)))
	}
}

// verdict is an instance's health: critical when its status checks or any
// target group says so (last known answers), else passing when one of them
// says passing, else unknown.
func (l *lister) verdict(id string) cloudsource.Verdict {
	v := l.health.Get(id)
	for _, arn := range l.cfg.Health.TargetGroups {
		v = mergeVerdicts(v, l.targets[arn].Get(id))
	}
	return v
}

// mergeVerdicts combines two signals: critical wins (with both details when
// both are critical), then passing.
func mergeVerdicts(a, b cloudsource.Verdict) cloudsource.Verdict {
	switch {
	case a.Health == model.HealthCritical && b.Health == model.HealthCritical:
		return cloudsource.Verdict{Health: model.HealthCritical, Detail: a.Detail + "; " + b.Detail}
	case a.Health == model.HealthCritical:
		return a
	case b.Health == model.HealthCritical:
		return b
	case a.Health == model.HealthPassing:
		return a
	default:
		return b
	}
}

// targetHealth reads one target group's DescribeTargetHealth (every
// registered target, one request) and returns a verdict per listed
// instance it reports: critical when any of its targets (one per port) is
// unhealthy, draining or still initial, passing when they are all healthy,
// no answer for unused and unavailable targets.
func (l *lister) targetHealth(ctx context.Context, arn string, listed map[string]bool) (map[string]cloudsource.Verdict, error) {
	out, err := l.elb.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(arn)})
	if err != nil {
		err = awsapi.Classify(err)
		l.metrics.HealthRequests.WithLabelValues(cloudsource.RequestResult(err)).Inc()
		return nil, fmt.Errorf("elbv2 DescribeTargetHealth %s: %w", arn, err)
	}
	l.metrics.HealthRequests.WithLabelValues("ok").Inc()
	name := arn
	if i := strings.Index(arn, ":targetgroup/"); i >= 0 {
		name, _, _ = strings.Cut(arn[i+len(":targetgroup/"):], "/")
	}
	type tally struct {
		critical      []string
		healthy, none int
	}
	tallies := map[string]*tally{}
	for _, d := range out.TargetHealthDescriptions {
		if d.Target == nil || d.TargetHealth == nil || !listed[aws.ToString(d.Target.Id)] {
			continue
		}
		id := aws.ToString(d.Target.Id)
		t := tallies[id]
		if t == nil {
			t = &tally{}
			tallies[id] = t
		}
		switch st := d.TargetHealth.State; st {
		case elbtypes.TargetHealthStateEnumHealthy:
			t.healthy++
		case elbtypes.TargetHealthStateEnumUnhealthy, elbtypes.TargetHealthStateEnumUnhealthyDraining,
			elbtypes.TargetHealthStateEnumDraining, elbtypes.TargetHealthStateEnumInitial:
			detail := fmt.Sprintf("target group %s port %d: %s", name, aws.ToInt32(d.Target.Port), st)
			if r := d.TargetHealth.Reason; r != "" {
				detail += " (" + string(r) + ")"
			}
			t.critical = append(t.critical, detail)
		default:
			t.none++
		}
	}
	verdicts := make(map[string]cloudsource.Verdict, len(tallies))
	for id, t := range tallies {
		switch {
		case len(t.critical) > 0:
			slices.Sort(t.critical)
			verdicts[id] = cloudsource.Verdict{Health: model.HealthCritical, Detail: strings.Join(t.critical, "; ")}
		case t.none == 0:
			verdicts[id] = cloudsource.Verdict{Health: model.HealthPassing}
		default:
			verdicts[id] = cloudsource.Verdict{}
		}
	}
	return verdicts, nil
}

// notFoundIDRE finds the instance IDs an InvalidInstanceID.NotFound error
// names ("The instance IDs 'i-1, i-2' do not exist").
var notFoundIDRE = regexp.MustCompile(`\bi-[0-9a-f]+\b`)

// describeStatus reads the status of up to statusBatch instances, every
// page. An instance DescribeInstances just listed may not be known to
// DescribeInstanceStatus yet (EC2 is eventually consistent, and an
// instance may be terminated in between): the call then fails with
// InvalidInstanceID.NotFound naming it, and is made once more without the
// instances it names, which stay without an answer this time.
func (l *lister) describeStatus(ctx context.Context, api instancesAPI, ids []string) ([]types.InstanceStatus, error) {
	for attempt := 0; ; attempt++ {
		out, err := l.describeStatusPages(ctx, api, ids)
		var ae smithy.APIError
		if err == nil || attempt > 0 || !errors.As(err, &ae) || ae.ErrorCode() != "InvalidInstanceID.NotFound" {
			return out, err
		}
		gone := map[string]bool{}
		for _, id := range notFoundIDRE.FindAllString(ae.ErrorMessage(), -1) {
			gone[id] = true
		}
		ids = slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return gone[id] })
		if len(gone) == 0 || len(ids) == 0 {
			return nil, err
		}
	}
}

func (l *lister) describeStatusPages(ctx context.Context, api instancesAPI, ids []string) ([]types.InstanceStatus, error) {
	var out []types.InstanceStatus
	tokens := map[string]bool{}
	in := &awsec2.DescribeInstanceStatusInput{InstanceIds: ids}
	for page := 1; ; page++ {
		resp, err := api.DescribeInstanceStatus(ctx, in)
		if err != nil {
			err = awsapi.Classify(err)
			l.metrics.HealthRequests.WithLabelValues(cloudsource.RequestResult(err)).Inc()
			return nil, fmt.Errorf("ec2 DescribeInstanceStatus %s (%s..., %d instances) page %d: %w",
				l.cfg.Region, ids[0], len(ids), page, err)
		}
		l.metrics.HealthRequests.WithLabelValues("ok").Inc()
		out = append(out, resp.InstanceStatuses...)
		next := aws.ToString(resp.NextToken)
		if next == "" {
			return out, nil
		}
		if tokens[next] {
			return nil, fmt.Errorf("ec2 DescribeInstanceStatus %s page %d: NextToken repeated", l.cfg.Region, page)
		}
		tokens[next] = true
		in = &awsec2.DescribeInstanceStatusInput{InstanceIds: ids, NextToken: aws.String(next)}
	}
}

// statusVerdict reads an instance's status checks: any check impaired is
// critical, and so is one still initializing (an instance that has just
// started is served once its checks pass, as a load balancer serves a new
// target once it passes its health check); the system and instance checks
// both ok, and none impaired or initializing, is passing. insufficient-data
// and not-applicable are no answer: the last one stands. The attached EBS
// status check counts when EC2 reports it.
func statusVerdict(st types.InstanceStatus) cloudsource.Verdict {
	type check struct {
		name    string
		status  types.SummaryStatus
		failing []string
	}
	summary := func(name string, s *types.InstanceStatusSummary) check {
		c := check{name: name}
		if s != nil {
			c.status = s.Status
			for _, d := range s.Details {
				if d.Status != types.StatusTypePassed {
					c.failing = append(c.failing, fmt.Sprintf("%s %s", d.Name, d.Status))
				}
			}
		}
		return c
	}
	checks := []check{summary("system", st.SystemStatus), summary("instance", st.InstanceStatus)}
	if e := st.AttachedEbsStatus; e != nil {
		c := check{name: "attached EBS", status: e.Status}
		for _, d := range e.Details {
			if d.Status != types.StatusTypePassed {
				c.failing = append(c.failing, fmt.Sprintf("%s %s", d.Name, d.Status))
			}
		}
		checks = append(checks, c)
	}
	var bad []string
	for _, c := range checks {
		if c.status == types.SummaryStatusImpaired || c.status == types.SummaryStatusInitializing {
			detail := fmt.Sprintf("%s status %s", c.name, c.status)
			if len(c.failing) > 0 {
				detail += " (" + strings.Join(c.failing, ", ") + ")"
			}
			bad = append(bad, detail)
		}
	}
	switch {
	case len(bad) > 0:
		return cloudsource.Verdict{Health: model.HealthCritical, Detail: strings.Join(bad, "; ")}
	case checks[0].status == types.SummaryStatusOk && checks[1].status == types.SummaryStatusOk:
		return cloudsource.Verdict{Health: model.HealthPassing}
	default:
		return cloudsource.Verdict{}
	}
}
