package cloudmap

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sd "github.com/aws/aws-sdk-go-v2/service/servicediscovery"
	"github.com/aws/aws-sdk-go-v2/service/servicediscovery/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/awsapi"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

// cloudMapAPI is the Cloud Map calls the source makes.
type cloudMapAPI interface {
	ListNamespaces(ctx context.Context, in *sd.ListNamespacesInput, optFns ...func(*sd.Options)) (*sd.ListNamespacesOutput, error)
	ListServices(ctx context.Context, in *sd.ListServicesInput, optFns ...func(*sd.Options)) (*sd.ListServicesOutput, error)
	ListInstances(ctx context.Context, in *sd.ListInstancesInput, optFns ...func(*sd.Options)) (*sd.ListInstancesOutput, error)
	GetInstancesHealthStatus(ctx context.Context, in *sd.GetInstancesHealthStatusInput, optFns ...func(*sd.Options)) (*sd.GetInstancesHealthStatusOutput, error)
	DiscoverInstancesRevision(ctx context.Context, in *sd.DiscoverInstancesRevisionInput, optFns ...func(*sd.Options)) (*sd.DiscoverInstancesRevisionOutput, error)
}

// pageSize is the largest page ListInstances and GetInstancesHealthStatus
// return (their MaxResults is 1 to 100; 100 is also their default).
// DiscoverInstances is not used for the instances: it has no NextToken and
// stops at 1000, so a larger service could not be read in full.
const pageSize = 100

// concurrency bounds the services read at once.
const concurrency = 4

// cached is the last read of one service.
type cached struct {
	revision int64
	read     time.Time
	result   serviceResult
}

// lister reads the services of a namespace; it implements poll.Lister.
type lister struct {
	cfg     *Config
	name    string
	mapper  *mapper
	metrics *metrics
	log     *zap.Logger
	now     func() time.Time
	// maxAttempts is the SDK's attempts per request; 0: its default.
	maxAttempts int

	*cloudsource.Client[cloudMapAPI]

	// cache and logged are only used by List, which poll never runs
	// concurrently with itself.
	cache    map[string]cached
	problems *cloudsource.ProblemLog
}

var _ poll.Lister = (*lister)(nil)

// newLister makes the lister of a prepared configuration (cloudsource.New).
func newLister(cfg *Config, opts sources.Options) (*lister, prometheus.Collector, error) {
	m, err := newMapper(cfg)
	l := &lister{cfg: cfg, name: opts.Name, mapper: m, metrics: newMetrics(opts.Name), log: opts.Logger, now: time.Now,
		problems: cloudsource.NewProblemLog(opts.Logger, "Cloud Map instance or service not (fully) served")}
	l.Client = cloudsource.NewClient(l.newAPI)
	return l, l.metrics, err
}

// newAPI makes the API client (cloudsource.Client).
func (l *lister) newAPI(ctx context.Context) (cloudMapAPI, *http.Transport, error) {
	awsCfg, tr, err := awsapi.Load(ctx, awsapi.Options{
		Region: l.cfg.Region, Role: l.cfg.Role, SessionName: l.name, MaxAttempts: l.maxAttempts,
	})
	if err != nil {
		return nil, nil, err
	}
	return sd.NewFromConfig(awsCfg, func(o *sd.Options) {
		if l.cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(l.cfg.Endpoint)
			o.APIOptions = append(o.APIOptions, noEndpointHostPrefix)
		}
	}), tr, nil
}

// noEndpointHostPrefix is an API option that sends the data-plane calls
// (DiscoverInstancesRevision) to the endpoint's host
// rather than to "data-<host>": an endpoint override is the one host to use.
func noEndpointHostPrefix(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("NoEndpointHostPrefix",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (
			middleware.InitializeOutput, middleware.Metadata, error,
		) {
			return next.HandleInitialize(smithyhttp.DisableEndpointHostPrefix(ctx, true), in)
		}), middleware.Before)
}

// request counts one request in the metrics and classifies its error.
func (l *lister) request(op string, err error) error {
	if err == nil {
		l.metrics.Requests.WithLabelValues(op, "ok").Inc()
		return nil
	}
	err = awsapi.Classify(err)
	var throttled *poll.ThrottledError
	var notFound *types.ServiceNotFound
	switch {
	case errors.As(err, &throttled):
		l.metrics.Requests.WithLabelValues(op, "throttled").Inc()
	case errors.As(err, &notFound):
		l.metrics.Requests.WithLabelValues(op, "not-found").Inc()
	default:
		l.metrics.Requests.WithLabelValues(op, "error").Inc()
	}
	return fmt.Errorf("cloudmap %s: %w", op, err)
}

// serviceInfo is a service of the namespace.
type serviceInfo struct {
	name string
	// id is what ListInstances and GetInstancesHealthStatus take: the
	// service's ID, or its ARN for a namespace shared by another account
	// (ownerAccount), as those calls require.
	id string
	// healthChecked: the service has a Route 53 or custom health check.
	healthChecked bool
}

// services lists the namespace's services, restricted to cfg.Services when
// set.
func (l *lister) services(ctx context.Context, api cloudMapAPI) (svcs []serviceInfo, httpName string, err error) {
	var nsIDs []string
	// DiscoverInstancesRevision takes the namespace's HTTP name, which is its
	// name unless set otherwise: match either, on the client.
	nsIn := &sd.ListNamespacesInput{}
	if err := paginate(func(token *string) (*string, error) {
		nsIn.NextToken = token
		out, err := api.ListNamespaces(ctx, nsIn)
		if err := l.request("ListNamespaces", err); err != nil {
			return nil, err
		}
		for _, ns := range out.Namespaces {
			h := ""
			if ns.Properties != nil && ns.Properties.HttpProperties != nil {
				h = aws.ToString(ns.Properties.HttpProperties.HttpName)
			}
			if aws.ToString(ns.Name) == l.cfg.Namespace || h == l.cfg.Namespace {
				nsIDs = append(nsIDs, aws.ToString(ns.Id))
				if h != "" {
					httpName = h
				}
			}
		}
		return out.NextToken, nil
	}); err != nil {
		return nil, "", err
	}
	if httpName == "" {
		httpName = l.cfg.Namespace
	}
	if len(nsIDs) == 0 {
		return nil, "", fmt.Errorf("cloudmap: namespace %q not found in %s", l.cfg.Namespace, l.cfg.Region)
	}
	byName := map[string]serviceInfo{}
	for _, id := range nsIDs {
		in := &sd.ListServicesInput{Filters: []types.ServiceFilter{{
			Name: types.ServiceFilterNameNamespaceId, Values: []string{id}, Condition: types.FilterConditionEq,
		}}}
		if err := paginate(func(token *string) (*string, error) {
			in.NextToken = token
			out, err := api.ListServices(ctx, in)
			if err := l.request("ListServices", err); err != nil {
				return nil, err
			}
			for _, s := range out.Services {
				name := aws.ToString(s.Name)
				info := byName[name]
				info.name = name
				id := aws.ToString(s.Id)
				if l.cfg.OwnerAccount != "" && aws.ToString(s.Arn) != "" {
					id = aws.ToString(s.Arn)
				}
				// Two matched namespaces (by name and by HTTP name) with
				// a service of the same name: keep the lowest ID, so
				// that every refresh reads the same one.
				if info.id == "" || id < info.id {
					info.id = id
				}
				info.healthChecked = info.healthChecked || s.HealthCheckConfig != nil || s.HealthCheckCustomConfig != nil
				byName[name] = info
			}
			return out.NextToken, nil
		}); err != nil {
			return nil, "", err
		}
	}
	var out []serviceInfo
	if len(l.cfg.Services) == 0 {
		for _, s := range byName {
			out = append(out, s)
		}
	} else {
		for _, name := range l.cfg.Services {
			if s, ok := byName[name]; ok {
				out = append(out, s)
			}
		}
	}
	slices.SortFunc(out, func(a, b serviceInfo) int { return cmp.Compare(a.name, b.name) })
	return out, httpName, nil
}

// paginate calls page with each NextToken until there is none; a repeated
// token is an error (the list would be incomplete).
func paginate(page func(token *string) (*string, error)) error {
	seen := map[string]bool{}
	var token *string
	for {
		next, err := page(token)
		if err != nil {
			return err
		}
		if aws.ToString(next) == "" {
			return nil
		}
		if seen[*next] {
			return errors.New("cloudmap: NextToken repeated: the list is incomplete")
		}
		seen[*next] = true
		token = next
	}
}

// List returns one group per service with served instances. It fails,
// rather than return a smaller state, when any call fails.
func (l *lister) List(ctx context.Context) ([]model.Group, error) {
	api, err := l.API(ctx)
	if err != nil {
		return nil, err
	}
	svcs, httpName, err := l.services(ctx, api)
	if err != nil {
		return nil, err
	}
	results := make([]*cached, len(svcs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for i, s := range svcs {
		cloudsource.Go(g, fmt.Sprintf("reading Cloud Map service %q", s.name), func() error {
			c, err := l.readService(gctx, api, httpName, s)
			results[i] = c
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	next := make(map[string]cached, len(svcs))
	var groups []model.Group
	total := cloudsource.NewResult(0)
	for i, c := range results {
		if c == nil { // gone between ListServices and reading it
			continue
		}
		next[svcs[i].name] = *c
		if c.result.group != nil {
			groups = append(groups, *c.result.group)
		}
		total.Add(c.result.Result)
	}
	if len(l.cfg.Services) > 0 {
		for _, name := range l.cfg.Services {
			if _, ok := next[name]; !ok {
				total.Problems["service/"+name] = cloudsource.Problem{Reason: "not-found",
					Detail: fmt.Sprintf("service %q is not in namespace %q", name, l.cfg.Namespace)}
			}
		}
	}
	l.cache = next
	l.metrics.Observe(total.Seen, total.Skipped)
	l.problems.Log(total.Problems)
	return groups, nil
}

// readService reads one service: from the cache when its revision did not
// change, it has no health check (health changes do not move the
// revision), and it was read in full less than fullResync ago; else in full
// with ListInstances (and GetInstancesHealthStatus for a health-checked
// service), every page. It returns nil for a service that no longer exists.
func (l *lister) readService(ctx context.Context, api cloudMapAPI, namespace string, s serviceInfo) (*cached, error) {
	now := l.now()
	var revision int64
	if !s.healthChecked {
		// The revision is read before the instances: a registration
		// between the two moves it again, so the next refresh reads the
		// service once more rather than trust a stale list.
		var owner *string
		if l.cfg.OwnerAccount != "" {
			owner = aws.String(l.cfg.OwnerAccount)
		}
		out, err := api.DiscoverInstancesRevision(ctx, &sd.DiscoverInstancesRevisionInput{
			NamespaceName: aws.String(namespace), ServiceName: aws.String(s.name), OwnerAccount: owner,
		})
		if err := l.request("DiscoverInstancesRevision", err); err != nil {
			if isNotFound(err) {
				return nil, nil
			}
			return nil, fmt.Errorf("service %s: %w", s.name, err)
		}
		revision = aws.ToInt64(out.InstancesRevision)
		if c, ok := l.cache[s.name]; ok && now.Sub(c.read) < l.cfg.FullResync && revision == c.revision {
			l.metrics.unchanged.Inc()
			return &c, nil
		}
	}
	instances, err := l.listInstances(ctx, api, s)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("service %s: %w", s.name, err)
	}
	return &cached{
		revision: revision,
		read:     now,
		result:   l.mapper.mapService(s.name, instances),
	}, nil
}

func isNotFound(err error) bool {
	var notFound *types.ServiceNotFound
	return errors.As(err, &notFound)
}

// listInstances reads every instance of a service, page by page, keeps the
// ones that match queryParameters (what DiscoverInstances' QueryParameters
// did on the server), and gives them their health: from
// GetInstancesHealthStatus, every page, for a health-checked service;
// HEALTHY otherwise, as Cloud Map routes to every instance of a service
// without a health check (and DiscoverInstances reports them so). An
// instance GetInstancesHealthStatus does not list yet (Cloud Map reports
// health shortly after a registration) is UNKNOWN, which is served.
func (l *lister) listInstances(ctx context.Context, api cloudMapAPI, s serviceInfo) ([]types.HttpInstanceSummary, error) {
	var instances []types.HttpInstanceSummary
	in := &sd.ListInstancesInput{ServiceId: aws.String(s.id), MaxResults: aws.Int32(pageSize)}
	if err := paginate(func(token *string) (*string, error) {
		in.NextToken = token
		out, err := api.ListInstances(ctx, in)
		if err := l.request("ListInstances", err); err != nil {
			return nil, err
		}
		for _, inst := range out.Instances {
			if !matches(inst.Attributes, l.cfg.QueryParameters) {
				continue
			}
			instances = append(instances, types.HttpInstanceSummary{
				InstanceId: inst.Id, Attributes: inst.Attributes, HealthStatus: types.HealthStatusHealthy,
			})
		}
		return out.NextToken, nil
	}); err != nil {
		return nil, err
	}
	if !s.healthChecked || len(instances) == 0 {
		return instances, nil
	}
	health := make(map[string]types.HealthStatus, len(instances))
	hin := &sd.GetInstancesHealthStatusInput{ServiceId: aws.String(s.id), MaxResults: aws.Int32(pageSize)}
	if err := paginate(func(token *string) (*string, error) {
		hin.NextToken = token
		out, err := api.GetInstancesHealthStatus(ctx, hin)
		if err := l.request("GetInstancesHealthStatus", err); err != nil {
			return nil, err
		}
		for id, st := range out.Status {
			health[id] = st
		}
		return out.NextToken, nil
	}); err != nil {
		return nil, err
	}
	for i := range instances {
		st, ok := health[aws.ToString(instances[i].InstanceId)]
		if !ok {
			st = types.HealthStatusUnknown
		}
		instances[i].HealthStatus = st
	}
	return instances, nil
}

// matches reports whether attrs hold every key of want with its value.
func matches(attrs, want map[string]string) bool {
	for k, v := range want {
		if got, ok := attrs[k]; !ok || got != v {
			return false
		}
	}
	return true
}
