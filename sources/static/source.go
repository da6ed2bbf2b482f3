// Package static is a source whose services are written in the configuration
// file itself.
package static

import (
	"context"
	"time"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// Source serves a fixed set of services.
type Source struct {
	groups   []model.Group
	reporter *sources.Reporter
}

var _ sources.Source = (*Source)(nil)

// New builds the source from a validated config.
func New(cfg Config, opts sources.Options) (*Source, error) {
	return &Source{reporter: opts.Reporter, groups: groups(cfg)}, nil
}

// Run sends the configured services once and waits for ctx.
func (s *Source) Run(ctx context.Context, out chan<- []model.Group) error {
	start := time.Now()
	select {
	case out <- s.groups:
	case <-ctx.Done():
		return nil
	}
	if s.reporter != nil {
		instances := 0
		for _, g := range s.groups {
			for _, svc := range g.Services {
				instances += len(svc.Instances)
			}
		}
		s.reporter.Synced(time.Since(start), len(s.groups), instances)
	}
	<-ctx.Done()
	return nil
}
