package gce

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.uber.org/zap"
	compute "google.golang.org/api/compute/v1"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

// backendService names one backend service of health.backendServices:
// global ("web-bs") or regional ("regions/us-central1/web-bs").
type backendService struct{ region, name string }

func (b backendService) String() string {
	if b.region == "" {
		return b.name
	}
	return "regions/" + b.region + "/" + b.name
}

// parseBackendService splits a health.backendServices entry; ok is false
// when it is neither form.
func parseBackendService(s string) (backendService, bool) {
	if rest, found := strings.CutPrefix(s, "regions/"); found {
		region, name, found := strings.Cut(rest, "/")
		if !found || !regionRE.MatchString(region) || !resourceNameRE.MatchString(name) {
			return backendService{}, false
		}
		return backendService{region: region, name: name}, true
	}
	return backendService{name: s}, resourceNameRE.MatchString(s)
}

// backendGroups is backendServices.get (or regionBackendServices.get): the
// instance groups (or network endpoint groups) of a backend service.
func (c computeAPI) backendGroups(ctx context.Context, project string, bs backendService) ([]string, error) {
	var svc *compute.BackendService
	var err error
	if bs.region == "" {
		svc, err = c.svc.BackendServices.Get(project, bs.name).Context(ctx).Do()
	} else {
		svc, err = c.svc.RegionBackendServices.Get(project, bs.region, bs.name).Context(ctx).Do()
	}
	if err != nil {
		return nil, err
	}
	var groups []string
	for _, b := range svc.Backends {
		if b != nil && b.Group != "" {
			groups = append(groups, b.Group)
		}
	}
	return groups, nil
}

// groupHealth is backendServices.getHealth (or the regional one) for one
// group of a backend service: the health of each of its instances, on each
// port the backend service checks.
func (c computeAPI) groupHealth(ctx context.Context, project string, bs backendService, group string) ([]*compute.HealthStatus, error) {
	ref := &compute.ResourceGroupReference{Group: group}
	var out *compute.BackendServiceGroupHealth
	var err error
	if bs.region == "" {
		out, err = c.svc.BackendServices.GetHealth(project, bs.name, ref).Context(ctx).Do()
	} else {
		out, err = c.svc.RegionBackendServices.GetHealth(project, bs.region, bs.name, ref).Context(ctx).Do()
	}
	if err != nil {
		return nil, err
	}
	return out.HealthStatus, nil
}

// instanceKey is how getHealth's instance URLs and listed instances meet:
// "zones/<zone>/instances/<name>" (the URLs' host and project prefix may
// differ).
func instanceKey(url string) string {
	i := strings.LastIndex(url, "zones/")
	if i < 0 {
		return ""
	}
	return url[i:]
}

// readHealth asks each backend service of health.backendServices for the
// health of its groups' instances (one backendServices.get, then one
// getHealth per group) and records a verdict per listed instance in the
// book: critical when any backend service reports it UNHEALTHY on any port,
// passing when every report of it is HEALTHY. An instance no backend
// service reports on gets no answer (it keeps its last one). When a call
// fails, a passing verdict is not recorded (the failed call might have
// said otherwise): each instance keeps its last known health, except those
// a call that did answer reports unhealthy. A throttled call ends this
// refresh's health calls. Errors are logged, never returned: they do not
// fail the list.
func (l *lister) readHealth(ctx context.Context, api instancesAPI, instances []*compute.Instance) {
	ids := make(map[string]string, len(instances)) // instanceKey -> instance ID
	listed := make(map[string]bool, len(instances))
	for _, in := range instances {
		if in == nil || in.Status != "RUNNING" {
			continue
		}
		id := strconv.FormatUint(in.Id, 10)
		listed[id] = true
		ids[instanceKey(in.Zone)+"/instances/"+in.Name] = id
	}
	l.health.Retain(listed)

	verdicts := map[string]cloudsource.Verdict{}
	var failed []error
	call := func(what string, err error) bool {
		if err == nil {
			l.metrics.HealthRequests.WithLabelValues("ok").Inc()
			return true
		}
		err = classify(err)
		l.metrics.HealthRequests.WithLabelValues(cloudsource.RequestResult(err)).Inc()
		failed = append(failed, fmt.Errorf("%s: %w", what, err))
		return false
	}
	stop := func() bool {
		var throttled *poll.ThrottledError
		return ctx.Err() != nil || (len(failed) > 0 && errors.As(failed[len(failed)-1], &throttled))
	}
services:
	for _, bs := range l.backendServices {
		groups, err := api.backendGroups(ctx, l.cfg.Project, bs)
		if !call("backendServices.get "+bs.String(), err) {
			if stop() {
				break
			}
			continue
		}
		for _, g := range groups {
			statuses, err := api.groupHealth(ctx, l.cfg.Project, bs, g)
			if !call(fmt.Sprintf("backendServices.getHealth %s group %s", bs, g), err) {
				if stop() {
					break services
				}
				continue
			}
			for _, st := range statuses {
				if st == nil {
					continue
				}
				id, ok := ids[instanceKey(st.Instance)]
				if !ok {
					continue
				}
				v := verdicts[id]
				switch st.HealthState {
				case "UNHEALTHY":
					detail := fmt.Sprintf("backend service %s: UNHEALTHY on port %d", bs, st.Port)
					if v.Health == model.HealthCritical {
						detail = v.Detail + "; " + detail
					}
					v = cloudsource.Verdict{Health: model.HealthCritical, Detail: detail}
				case "HEALTHY":
					if v.Health != model.HealthCritical {
						v = cloudsource.Verdict{Health: model.HealthPassing}
					}
				}
				verdicts[id] = v
			}
		}
	}
	for id, v := range verdicts {
		if v.Health == model.HealthPassing && len(failed) > 0 {
			continue
		}
		l.health.Record(id, v)
	}
	if len(failed) > 0 {
		l.log.Warn("GCE backend service health failed; keeping the last known health of the instances it did not answer for",
			zap.Error(errors.Join(failed...)))
	}
}
