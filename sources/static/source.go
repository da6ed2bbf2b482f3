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
	s := &Source{reporter: opts.Reporter}
	for _, svc := range cfg.Services {
		ms := model.Service{
			Name: svc.Name, Host: svc.Host, Labels: svc.Labels, Annotations: svc.Annotations,
		}
		for _, p := range svc.Ports {
			proto, ok := model.ParseProtocol(p.Protocol)
			if !ok {
				proto = model.ProtocolTCP
			}
			ms.Ports = append(ms.Ports, model.Port{Number: p.Number, Protocol: proto})
		}
		for _, in := range svc.Instances {
			ms.Instances = append(ms.Instances, model.Instance{
				ID: in.ID, Address: in.Address, Ports: in.Ports, Labels: in.Labels, Locality: in.Locality,
				Network: in.Network, Weight: in.Weight, Identity: in.Identity, ServiceAccount: in.ServiceAccount,
				Health: model.HealthUnknown,
			})
		}
		s.groups = append(s.groups, model.Group{Scope: svc.Name, Services: []model.Service{ms}})
	}
	return s, nil
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
