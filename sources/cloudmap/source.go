// Package cloudmap is the AWS Cloud Map source: every refreshInterval
// (through the shared poll helper) it reads the instances of the services
// of one namespace with DiscoverInstances, skipping a service whose
// DiscoverInstancesRevision did not change, and maps each service to a
// model.Service under a scope named after it. See README.md for the mapping
// rules and the options.
package cloudmap

import (
	"context"
	"time"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

// Source polls Cloud Map.
type Source struct {
	poll    *poll.Source
	lister  *lister
	metrics *metrics
}

var _ sources.Source = (*Source)(nil)

// New makes a Cloud Map source. It does no I/O: the credential chain is
// read on the first list.
func New(cfg Config, opts sources.Options) (*Source, error) {
	if err := cloudsource.Prepare(&cfg, &opts); err != nil {
		return nil, err
	}
	m, err := newMapper(&cfg)
	if err != nil {
		return nil, err
	}
	met := newMetrics(opts.Name)
	if err := opts.Register(met); err != nil {
		return nil, err
	}
	l := &lister{cfg: &cfg, name: opts.Name, mapper: m, metrics: met, log: opts.Logger, now: time.Now}
	return &Source{poll: poll.New(cfg.Config, l, opts), lister: l, metrics: met}, nil
}

// Run polls until ctx is done; see sources.Source.
func (s *Source) Run(ctx context.Context, out chan<- []model.Group) error {
	defer s.lister.close()
	return s.poll.Run(ctx, out)
}
