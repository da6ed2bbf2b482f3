package cloudmap

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sd "github.com/aws/aws-sdk-go-v2/service/servicediscovery"
	"github.com/aws/aws-sdk-go-v2/service/servicediscovery/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources/awsapi"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

// cloudMapAPI is the Cloud Map calls the source makes.
type cloudMapAPI interface {
	ListNamespaces(ctx context.Context, in *sd.ListNamespacesInput, optFns ...func(*sd.Options)) (*sd.ListNamespacesOutput, error)
	ListServices(ctx context.Context, in *sd.ListServicesInput, optFns ...func(*sd.Options)) (*sd.ListServicesOutput, error)
	DiscoverInstances(ctx context.Context, in *sd.DiscoverInstancesInput, optFns ...func(*sd.Options)) (*sd.DiscoverInstancesOutput, error)
	DiscoverInstancesRevision(ctx context.Context, in *sd.DiscoverInstancesRevisionInput, optFns ...func(*sd.Options)) (*sd.DiscoverInstancesRevisionOutput, error)
}

// maxInstances is DiscoverInstances' largest page; it has no pagination, so
// a reply that is full may be truncated.
const maxInstances = 1000

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

	mu        sync.Mutex
	api       cloudMapAPI
	transport *http.Transport

	// cache and logged are only used by List, which poll never runs
	// concurrently with itself.
	cache    map[string]cached
	problems *cloudsource.ProblemLog
}

var _ poll.Lister = (*lister)(nil)

// client makes the API client on first use.
func (l *lister) client(ctx context.Context) (cloudMapAPI, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.api != nil {
		return l.api, nil
	}
	awsCfg, tr, err := awsapi.Load(ctx, awsapi.Options{
		Region: l.cfg.Region, Role: l.cfg.Role, SessionName: l.name, MaxAttempts: l.maxAttempts,
	})
	if err != nil {
		return nil, err
	}
	l.api = sd.NewFromConfig(awsCfg, func(o *sd.Options) {
		if l.cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(l.cfg.Endpoint)
			o.APIOptions = append(o.APIOptions, noEndpointHostPrefix)
		}
	})
	l.transport = tr
	return l.api, nil
}

// noEndpointHostPrefix is an API option that sends the data-plane calls
// (DiscoverInstances, DiscoverInstancesRevision) to the endpoint's host
// rather than to "data-<host>": an endpoint override is the one host to use.
func noEndpointHostPrefix(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("NoEndpointHostPrefix",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (
			middleware.InitializeOutput, middleware.Metadata, error,
		) {
			return next.HandleInitialize(smithyhttp.DisableEndpointHostPrefix(ctx, true), in)
		}), middleware.Before)
}

// CloseIdleConnections releases idle connections; the client stays usable.
func (l *lister) CloseIdleConnections() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.transport != nil {
		l.transport.CloseIdleConnections()
	}
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
	// healthChecked: the service has a Route 53 or custom health check.
	healthChecked bool
}

// services lists the namespace's services, restricted to cfg.Services when
// set.
func (l *lister) services(ctx context.Context, api cloudMapAPI) (svcs []serviceInfo, httpName string, err error) {
	var nsIDs []string
	// DiscoverInstances takes the namespace's HTTP name, which is its
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
	api, err := l.client(ctx)
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
		g.Go(func() error {
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
		if c == nil { // gone between ListServices and DiscoverInstances
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
// revision), and it was read in full less than fullResync ago; else with
// DiscoverInstances. It returns nil for a service that no longer exists.
func (l *lister) readService(ctx context.Context, api cloudMapAPI, namespace string, s serviceInfo) (*cached, error) {
	var owner *string
	if l.cfg.OwnerAccount != "" {
		owner = aws.String(l.cfg.OwnerAccount)
	}
	now := l.now()
	if c, ok := l.cache[s.name]; ok && !s.healthChecked && now.Sub(c.read) < l.cfg.FullResync {
		out, err := api.DiscoverInstancesRevision(ctx, &sd.DiscoverInstancesRevisionInput{
			NamespaceName: aws.String(namespace), ServiceName: aws.String(s.name), OwnerAccount: owner,
		})
		if err := l.request("DiscoverInstancesRevision", err); err != nil {
			var notFound *types.ServiceNotFound
			if errors.As(err, &notFound) {
				return nil, nil
			}
			return nil, fmt.Errorf("service %s: %w", s.name, err)
		}
		if aws.ToInt64(out.InstancesRevision) == c.revision {
			l.metrics.unchanged.Inc()
			return &c, nil
		}
	}
	out, err := api.DiscoverInstances(ctx, &sd.DiscoverInstancesInput{
		NamespaceName:   aws.String(namespace),
		ServiceName:     aws.String(s.name),
		OwnerAccount:    owner,
		HealthStatus:    types.HealthStatusFilterAll,
		QueryParameters: l.cfg.QueryParameters,
		MaxResults:      aws.Int32(maxInstances),
	})
	if err := l.request("DiscoverInstances", err); err != nil {
		var notFound *types.ServiceNotFound
		if errors.As(err, &notFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("service %s: %w", s.name, err)
	}
	if len(out.Instances) >= maxInstances {
		return nil, fmt.Errorf("cloudmap DiscoverInstances service %s: %d instances, the API's maximum: the list may be incomplete",
			s.name, len(out.Instances))
	}
	return &cached{
		revision: aws.ToInt64(out.InstancesRevision),
		read:     now,
		result:   l.mapper.mapService(s.name, out.Instances),
	}, nil
}
