package cloudsource

import (
	"cmp"
	"slices"

	"github.com/registry-adapter/registry-adapter/model"
)

// Services gathers the instances of one complete list by service name, for
// a source whose service names and ports come with each instance: a
// service's ports are all those of its instances.
type Services map[string]*service

type service struct {
	ports     map[model.Port]bool
	instances []model.Instance
}

// Add adds inst, which listens on ports, to each service of names.
func (s Services) Add(names []string, inst model.Instance, ports []model.Port) {
	for _, n := range names {
		acc := s[n]
		if acc == nil {
			acc = &service{ports: map[model.Port]bool{}}
			s[n] = acc
		}
		for _, p := range ports {
			acc.ports[p] = true
		}
		acc.instances = append(acc.instances, inst)
	}
}

// Groups returns a group per service, scoped by its name, sorted by scope;
// a service's ports are sorted by number then protocol, its instances by
// ID. host makes a service's host: a service it fails for is left out, and
// reported to failed with the number of its instances.
func (s Services) Groups(host func(service string) (string, error), failed func(service string, instances int, err error)) []model.Group {
	var groups []model.Group
	for name, acc := range s {
		h, err := host(name)
		if err != nil {
			failed(name, len(acc.instances), err)
			continue
		}
		svc := model.Service{Name: name, Host: h}
		for p := range acc.ports {
			svc.Ports = append(svc.Ports, p)
		}
		slices.SortFunc(svc.Ports, func(a, b model.Port) int {
			return cmp.Or(cmp.Compare(a.Number, b.Number), cmp.Compare(a.Protocol, b.Protocol))
		})
		slices.SortFunc(acc.instances, func(a, b model.Instance) int { return cmp.Compare(a.ID, b.ID) })
		svc.Instances = acc.instances
		groups = append(groups, model.Group{Scope: name, Services: []model.Service{svc}})
	}
	slices.SortFunc(groups, func(a, b model.Group) int { return cmp.Compare(a.Scope, b.Scope) })
	return groups
}
