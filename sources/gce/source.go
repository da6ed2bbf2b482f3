// Package gce is the Google Compute Engine source: it lists the instances of
// one project with instances.aggregatedList every refreshInterval (through
// the shared poll helper) and maps each service name found in an instance
// label to a model.Service under a scope named after the service. See
// README.md for the mapping rules and the options.
package gce

import (
	"strings"

	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

// Source polls Compute Engine: the shared cloud source over this package's lister.
type Source = cloudsource.Source[*lister]

var _ sources.Source = (*Source)(nil)

// New makes a GCE source. It does no I/O: credentials are looked up on the
// first list.
func New(cfg Config, opts sources.Options) (*Source, error) {
	if err := cloudsource.Prepare(&cfg, &opts); err != nil {
		return nil, err
	}
	m, err := newMapper(&cfg)
	if err != nil {
		return nil, err
	}
	if u := cfg.Endpoint; strings.HasPrefix(u, "http://") {
		opts.Logger.Warn("endpoint is plain http: access tokens are sent in clear text", zap.String("endpoint", u))
	}
	met := newMetrics(opts.Name)
	l := &lister{problems: cloudsource.NewProblemLog(opts.Logger, "instance left out of the mesh"), cfg: &cfg, mapper: m, metrics: met, log: opts.Logger,
		health: cloudsource.NewHealthBook()}
	for _, b := range cfg.Health.BackendServices {
		bs, _ := parseBackendService(b) // valid: Prepare validated cfg
		l.backendServices = append(l.backendServices, bs)
	}
	return cloudsource.NewSource(cfg.Config, l, met, opts)
}
