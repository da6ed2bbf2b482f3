package gce

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	htransport "google.golang.org/api/transport/http"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

// instancesAPI is the Compute Engine calls the source makes.
type instancesAPI interface {
	// aggregatedList calls page for each page of instances.aggregatedList,
	// following nextPageToken to the end.
	aggregatedList(ctx context.Context, project, filter string, page func(*compute.InstanceAggregatedList) error) error
	// backendGroups and groupHealth read a backend service's health (with
	// health enabled; health.go).
	backendGroups(ctx context.Context, project string, bs backendService) ([]string, error)
	groupHealth(ctx context.Context, project string, bs backendService, group string) ([]*compute.HealthStatus, error)
}

// computeAPI is instancesAPI over the REST client.
type computeAPI struct{ svc *compute.Service }

func (c computeAPI) aggregatedList(ctx context.Context, project, filter string, page func(*compute.InstanceAggregatedList) error) error {
	call := c.svc.Instances.AggregatedList(project)
	if filter != "" {
		call = call.Filter(filter)
	}
	return call.Pages(ctx, page)
}

// lister lists the instances of a project; it implements poll.Lister.
type lister struct {
	cfg     *Config
	mapper  *mapper
	metrics *cloudsource.Metrics
	log     *zap.Logger
	// clientOptions are added to the client's options (tests).
	clientOptions []option.ClientOption

	*cloudsource.Client[instancesAPI]
	problems *cloudsource.ProblemLog
	// backendServices are health.backendServices, parsed; health is the
	// last known health of each instance (only List uses it).
	backendServices []backendService
	health          *cloudsource.HealthBook
}

var _ poll.Lister = (*lister)(nil)

// newLister makes the lister of a prepared configuration (cloudsource.New).
func newLister(cfg *Config, opts sources.Options) (*lister, prometheus.Collector, error) {
	m, err := newMapper(cfg)
	if u := cfg.Endpoint; strings.HasPrefix(u, "http://") {
		opts.Logger.Warn("endpoint is plain http: access tokens are sent in clear text", zap.String("endpoint", u))
	}
	l := &lister{cfg: cfg, mapper: m, metrics: newMetrics(opts.Name), log: opts.Logger,
		problems: cloudsource.NewProblemLog(opts.Logger, "instance left out of the mesh"), health: cloudsource.NewHealthBook()}
	l.Client = cloudsource.NewClient(l.newAPI)
	for _, b := range cfg.Health.BackendServices {
		bs, _ := parseBackendService(b) // valid: Prepare validated cfg
		l.backendServices = append(l.backendServices, bs)
	}
	return l, l.metrics, err
}

// newAPI makes the API client (cloudsource.Client): Application Default
// Credentials are looked up then, not at start. The transport is the
// client's own, under the credentials.
func (l *lister) newAPI(ctx context.Context) (instancesAPI, *http.Transport, error) {
	opts := []option.ClientOption{
		option.WithScopes(compute.ComputeReadonlyScope),
		option.WithUserAgent("registry-adapter"),
	}
	if l.cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(endpointURL(l.cfg.Endpoint)))
	}
	opts = append(opts, l.clientOptions...)
	// The client keeps ctx for token refreshes: give it one that outlives
	// this list.
	ctx = context.WithoutCancel(ctx)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	rt, err := htransport.NewTransport(ctx, tr, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("compute client: %w", err)
	}
	svc, err := compute.NewService(ctx, append(opts, option.WithHTTPClient(&http.Client{Transport: rt}))...)
	if err != nil {
		return nil, nil, fmt.Errorf("compute client: %w", err)
	}
	return computeAPI{svc: svc}, tr, nil
}

// endpointURL completes an endpoint without a path with the API's base path.
func endpointURL(ep string) string {
	u, err := url.Parse(ep)
	if err != nil {
		return ep
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/compute/v1/"
	} else if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return u.String()
}

// List returns one group per service name. It fails, rather than return a
// smaller state, when a page fails or a zone the source reads is
// unreachable.
func (l *lister) List(ctx context.Context) ([]model.Group, error) {
	api, err := l.API(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[uint64]*compute.Instance{}
	var unreachable []string
	tokens := map[string]bool{}
	err = api.aggregatedList(ctx, l.cfg.Project, l.cfg.Filter, func(page *compute.InstanceAggregatedList) error {
		l.metrics.Requests.WithLabelValues("ok").Inc()
		unreachable = append(unreachable, page.Unreachables...)
		if w := page.Warning; w != nil && w.Code == "UNREACHABLE" {
			unreachable = append(unreachable, warningScopes(w.Data)...)
		}
		for scope, sl := range page.Items {
			if sl.Warning != nil && sl.Warning.Code == "UNREACHABLE" {
				unreachable = append(unreachable, scope)
			}
			for _, in := range sl.Instances {
				if in != nil {
					byID[in.Id] = in
				}
			}
		}
		if page.NextPageToken != "" {
			if tokens[page.NextPageToken] {
				return errors.New("aggregatedList returned the same nextPageToken twice")
			}
			tokens[page.NextPageToken] = true
		}
		return nil
	})
	if err != nil {
		err = classify(err)
		l.metrics.Requests.WithLabelValues(cloudsource.RequestResult(err)).Inc()
		return nil, fmt.Errorf("gce instances.aggregatedList project %s: %w", l.cfg.Project, err)
	}
	if scopes := l.relevant(unreachable); len(scopes) > 0 {
		return nil, fmt.Errorf("gce instances.aggregatedList project %s: unreachable %s: the list is incomplete",
			l.cfg.Project, strings.Join(scopes, ", "))
	}

	instances := make([]*compute.Instance, 0, len(byID))
	for _, in := range byID {
		instances = append(instances, in)
	}
	var health func(id string) cloudsource.Verdict
	if l.cfg.Health.Enabled {
		l.readHealth(ctx, api, instances)
		health = l.health.Get
	}
	res := l.mapper.mapInstances(instances, health)
	l.metrics.ObserveResult(res)
	l.problems.Log(res.Problems)
	return res.Groups, nil
}

// warningScopes returns the "scope" values of a warning's data.
func warningScopes(data []*compute.InstanceAggregatedListWarningData) []string {
	var out []string
	for _, d := range data {
		if d != nil && d.Key == "scope" {
			out = append(out, d.Value)
		}
	}
	if len(out) == 0 {
		out = append(out, "(unnamed scope)")
	}
	return out
}

// relevant returns the unreachable scopes that can hold instances this
// source reads: all of them, unless zones restricts the source and the
// scope is another zone.
func (l *lister) relevant(scopes []string) []string {
	var out []string
	for _, s := range scopes {
		if l.mapper.zones != nil {
			if i := strings.LastIndex(s, "zones/"); i >= 0 && !l.mapper.zones[lastSegment(s[i:])] {
				continue
			}
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// classify marks Compute Engine throttling (403 or 429 with reason
// rateLimitExceeded or userRateLimitExceeded, or any 429) as a
// *poll.ThrottledError, with the Retry-After hint when there is one.
func classify(err error) error {
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) {
		return err
	}
	throttled := gerr.Code == http.StatusTooManyRequests
	if gerr.Code == http.StatusForbidden || gerr.Code == http.StatusTooManyRequests {
		for _, it := range gerr.Errors {
			if strings.EqualFold(it.Reason, "rateLimitExceeded") || strings.EqualFold(it.Reason, "userRateLimitExceeded") {
				throttled = true
			}
		}
	}
	if !throttled {
		return err
	}
	return &poll.ThrottledError{Err: err, RetryAfter: cloudsource.RetryAfterHeader(gerr.Header, time.Now())}
}
