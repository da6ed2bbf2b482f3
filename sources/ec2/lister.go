package ec2

import (
	"context"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/awsapi"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

// instancesAPI is the EC2 calls the source makes: DescribeInstances, and
// DescribeInstanceStatus when health is enabled.
type instancesAPI interface {
	DescribeInstances(ctx context.Context, in *awsec2.DescribeInstancesInput,
		optFns ...func(*awsec2.Options)) (*awsec2.DescribeInstancesOutput, error)
	DescribeInstanceStatus(ctx context.Context, in *awsec2.DescribeInstanceStatusInput,
		optFns ...func(*awsec2.Options)) (*awsec2.DescribeInstanceStatusOutput, error)
}

// lister lists the instances of a region; it implements poll.Lister.
type lister struct {
	cfg     *Config
	name    string
	mapper  *mapper
	metrics *cloudsource.Metrics
	log     *zap.Logger
	filters []types.Filter
	// maxAttempts is the SDK's attempts per request; 0: its default (tests
	// set 1).
	maxAttempts int

	*cloudsource.Client[instancesAPI]
	problems *cloudsource.ProblemLog
	// health is the last known status-check health of each instance, and
	// targets that of each target group of health.targetGroups, by ARN
	// (only List uses them).
	health  *cloudsource.HealthBook
	targets map[string]*cloudsource.HealthBook
	// elb reads the target groups' health (nil without health.targetGroups).
	elb targetHealthAPI
}

var _ poll.Lister = (*lister)(nil)

// newLister makes the lister of a prepared configuration (cloudsource.New).
func newLister(cfg *Config, opts sources.Options) (*lister, prometheus.Collector, error) {
	m, err := newMapper(cfg)
	l := &lister{cfg: cfg, name: opts.Name, mapper: m, metrics: newMetrics(opts.Name), log: opts.Logger,
		problems: cloudsource.NewProblemLog(opts.Logger, "EC2 instance not (fully) served"),
		filters:  requestFilters(cfg), health: cloudsource.NewHealthBook(), targets: map[string]*cloudsource.HealthBook{},
	}
	l.Client = cloudsource.NewClient(l.newAPI)
	for _, arn := range cfg.Health.TargetGroups {
		l.targets[arn] = cloudsource.NewHealthBook()
	}
	return l, l.metrics, err
}

// requestFilters are the configured filters and tags, plus
// instance-state-name=running and tag-key=<serviceTag> unless the
// configuration sets those filters itself: the API then returns only the
// instances that can be served.
func requestFilters(cfg *Config) []types.Filter {
	var out []types.Filter
	for _, name := range sortedKeys(cfg.Filters) {
		out = append(out, types.Filter{Name: aws.String(name), Values: cfg.Filters[name]})
	}
	for _, key := range sortedKeys(cfg.Tags) {
		out = append(out, types.Filter{Name: aws.String("tag:" + key), Values: cfg.Tags[key]})
	}
	if _, ok := cfg.Filters["instance-state-name"]; !ok {
		out = append(out, types.Filter{Name: aws.String("instance-state-name"), Values: []string{"running"}})
	}
	if _, ok := cfg.Filters["tag-key"]; !ok {
		out = append(out, types.Filter{Name: aws.String("tag-key"), Values: []string{cfg.ServiceTag}})
	}
	return out
}

// newAPI makes the API clients (cloudsource.Client).
func (l *lister) newAPI(ctx context.Context) (instancesAPI, *http.Transport, error) {
	awsCfg, tr, err := awsapi.Load(ctx, awsapi.Options{
		Region: l.cfg.Region, Role: l.cfg.Role, SessionName: l.name, MaxAttempts: l.maxAttempts,
	})
	if err != nil {
		return nil, nil, err
	}
	api := awsec2.NewFromConfig(awsCfg, func(o *awsec2.Options) {
		if l.cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(l.cfg.Endpoint)
		}
	})
	if len(l.cfg.Health.TargetGroups) > 0 {
		l.elb = elbv2.NewFromConfig(awsCfg, func(o *elbv2.Options) {
			if l.cfg.Health.ELBv2Endpoint != "" {
				o.BaseEndpoint = aws.String(l.cfg.Health.ELBv2Endpoint)
			}
		})
	}
	return api, tr, nil
}

// List returns one group per service name. It fails, rather than return a
// smaller state, when any page fails.
func (l *lister) List(ctx context.Context) ([]model.Group, error) {
	api, err := l.API(ctx)
	if err != nil {
		return nil, err
	}
	instances, err := l.describe(ctx, api)
	if err != nil {
		return nil, err
	}
	var health func(id string) cloudsource.Verdict
	if l.cfg.Health.Enabled {
		l.readHealth(ctx, api, instances)
		health = l.verdict
	}
	res := l.mapper.mapInstances(instances, health)
	l.metrics.ObserveResult(res)
	l.problems.Log(res.Problems)
	return res.Groups, nil
}

// describe follows DescribeInstances' pagination to the end.
func (l *lister) describe(ctx context.Context, api instancesAPI) ([]types.Instance, error) {
	var instances []types.Instance
	tokens := map[string]bool{}
	in := &awsec2.DescribeInstancesInput{Filters: l.filters, MaxResults: aws.Int32(l.cfg.PageSize)}
	for page := 1; ; page++ {
		out, err := api.DescribeInstances(ctx, in)
		if err != nil {
			err = awsapi.Classify(err)
			l.metrics.Requests.WithLabelValues(cloudsource.RequestResult(err)).Inc()
			return nil, fmt.Errorf("ec2 DescribeInstances %s page %d: %w", l.cfg.Region, page, err)
		}
		l.metrics.Requests.WithLabelValues("ok").Inc()
		for _, r := range out.Reservations {
			instances = append(instances, r.Instances...)
		}
		next := aws.ToString(out.NextToken)
		if next == "" {
			return instances, nil
		}
		if tokens[next] {
			return nil, fmt.Errorf("ec2 DescribeInstances %s page %d: NextToken repeated: the list is incomplete", l.cfg.Region, page)
		}
		tokens[next] = true
		in = &awsec2.DescribeInstancesInput{Filters: l.filters, MaxResults: aws.Int32(l.cfg.PageSize), NextToken: aws.String(next)}
	}
}
