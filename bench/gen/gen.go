// Package gen makes the synthetic registries the benchmarks run on: services
// shaped like a typical Consul catalog (two ports, three instances, a few tags
// and meta), deterministic for a given size, and the changes applied to them.
package gen

import (
	"fmt"

	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
)

// InstancesPerService is the number of endpoints of every generated service.
const InstancesPerService = 3

// Service returns service i of a generated registry.
func Service(i int) model.Service {
	name := fmt.Sprintf("svc-%06d", i)
	svc := model.Service{
		Name: name,
		Host: name + ".service.consul",
		Ports: []model.Port{
			{Number: 8080, Protocol: model.ProtocolHTTP},
			{Number: 9090, Protocol: model.ProtocolGRPC},
		},
		Labels:      model.MakeLabels("team", fmt.Sprintf("team-%02d", i%40), "env", "prod", "app", name),
		Annotations: model.MakeLabels("consul.example.com/datacenter", "dc1"),
		Instances:   make([]model.Instance, 0, InstancesPerService),
	}
	for j := 0; j < InstancesPerService; j++ {
		svc.Instances = append(svc.Instances, model.Instance{
			ID:       fmt.Sprintf("node-%06d/%s-%d", i*InstancesPerService+j, name, j),
			Address:  Address(i*InstancesPerService + j),
			Labels:   model.MakeLabels("version", "v1", "zone", fmt.Sprintf("dc1-z%d", j), "rack", fmt.Sprintf("r%02d", i%50)),
			Locality: fmt.Sprintf("dc1/dc1-z%d", j),
			Health:   model.HealthPassing,
		})
	}
	return svc
}

// Address is a distinct IPv4 address for every k below 2^24.
func Address(k int) string {
	return fmt.Sprintf("10.%d.%d.%d", (k>>16)&0xff, (k>>8)&0xff, k&0xff)
}

// Services returns the first n services.
func Services(n int) []model.Service {
	out := make([]model.Service, n)
	for i := range out {
		out[i] = Service(i)
	}
	return out
}

// Groups returns one group per service, scoped by service name, as the
// Consul source reports them.
func Groups(svcs []model.Service) []model.Group {
	out := make([]model.Group, len(svcs))
	for i, s := range svcs {
		out[i] = model.Group{Scope: s.Name, Services: []model.Service{s}}
	}
	return out
}

// Registry is a mutable generated registry.
type Registry struct {
	Services []model.Service
	moves    int
}

// NewRegistry makes a registry of n services.
func NewRegistry(n int) *Registry { return &Registry{Services: Services(n)} }

// MoveEndpoint gives one instance of service i a new address, never used
// before, and returns the service's new group and the instance's index. The
// instance moved rotates, so consecutive moves of one service touch
// different instances.
func (r *Registry) MoveEndpoint(i int) (model.Group, int) {
	r.moves++
	svc := r.Services[i]
	insts := append([]model.Instance(nil), svc.Instances...)
	j := r.moves % len(insts)
	insts[j].Address = fmt.Sprintf("172.%d.%d.%d", 16+(r.moves>>16)&0x0f, (r.moves>>8)&0xff, r.moves&0xff)
	if r.moves >= 1<<20 {
		insts[j].Address = fmt.Sprintf("100.%d.%d.%d", 64+(r.moves>>16)&0x3f, (r.moves>>8)&0xff, r.moves&0xff)
	}
	svc.Instances = insts
	r.Services[i] = svc
	return model.Group{Scope: svc.Name, Services: []model.Service{svc}}, j
}

// Group returns service i's current group.
func (r *Registry) Group(i int) model.Group {
	return model.Group{Scope: r.Services[i].Name, Services: []model.Service{r.Services[i]}}
}

// Options are the conversion options of a mode, as a default config gives.
func Options(mode convert.Mode) convert.Options {
	o := convert.Options{Mode: mode}
	o.SetDefaults()
	return o
}

// Resources converts every service, in order.
func Resources(svcs []model.Service, opts convert.Options) []*served.Resource {
	var out []*served.Resource
	for _, s := range svcs {
		rs, rej := convert.Service(s.Host, []convert.Contribution{{Source: "bench", Service: s}}, opts)
		if len(rej) > 0 {
			panic(fmt.Sprintf("generated service %s rejected: %v", s.Name, rej))
		}
		out = append(out, rs...)
	}
	return out
}

// ServicesFor returns how many services make n resources in mode: n
// ServiceEntries inline, or n instances (WorkloadEntries) in workloadentry
// mode.
func ServicesFor(n int, mode convert.Mode) int {
	if mode == convert.ModeWorkloadEntry {
		return (n + InstancesPerService - 1) / InstancesPerService
	}
	return n
}
