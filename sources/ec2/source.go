// Package ec2 is the AWS EC2 source: it lists the running instances of one
// region with DescribeInstances every refreshInterval (through the shared
// poll helper) and maps each service name found in an instance tag to a
// model.Service under a scope named after the service. See README.md for
// the mapping rules and the options.
package ec2

import (
	"context"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

// Source polls EC2.
type Source struct {
	poll    *poll.Source
	lister  *lister
	metrics *cloudsource.Metrics
}

var _ sources.Source = (*Source)(nil)

// New makes an EC2 source. It does no I/O: the credential chain is read on
// the first list.
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
	l := &lister{
		cfg: &cfg, name: opts.Name, mapper: m, metrics: met, log: opts.Logger,
		filters: requestFilters(&cfg),
	}
	return &Source{poll: poll.New(cfg.Config, l, opts), lister: l, metrics: met}, nil
}

// Run polls until ctx is done; see sources.Source.
func (s *Source) Run(ctx context.Context, out chan<- []model.Group) error {
	defer s.lister.close()
	return s.poll.Run(ctx, out)
}
