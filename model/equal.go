package model

import (
	"reflect"
	"slices"
)

// Equal reports whether g and o hold the same scope and the same services,
// in the same order.
//
// It is what the no-op layers before conversion compare with (the adapter's
// store, list-and-diff polling, the Consul source's loop). Each of them is a
// saving, never the guarantee: what istiod receives is deduplicated by the
// content version of each served resource (served.New; docs/ARCHITECTURE.md,
// "No-op suppression"). So Equal may call two groups different when their
// output is the same (a field convert ignores), but must never call them
// equal when anything differs: every field is compared, as
// TestEqualSeesEveryField checks for each field, present and future. A nil
// and an empty slice are equal; conversion reads them alike.
func (g Group) Equal(o Group) bool {
	return g.Scope == o.Scope && slices.EqualFunc(g.Services, o.Services, Service.Equal)
}

// Equal reports whether s and o are the same service, every field compared
// (see Group.Equal).
func (s Service) Equal(o Service) bool {
	return s.Name == o.Name && s.Host == o.Host &&
		slices.Equal(s.Ports, o.Ports) && slices.Equal(s.Addresses, o.Addresses) &&
		s.Labels.Equal(o.Labels) && s.Annotations.Equal(o.Annotations) &&
		slices.EqualFunc(s.Instances, o.Instances, Instance.Equal) &&
		s.Traffic.Equal(o.Traffic)
}

// Equal reports whether i and o are the same instance, every field compared
// (see Group.Equal).
func (i Instance) Equal(o Instance) bool {
	return i.ID == o.ID && i.Address == o.Address && i.Ports.Equal(o.Ports) && i.Labels.Equal(o.Labels) &&
		i.Locality == o.Locality && i.Network == o.Network && i.Weight == o.Weight && i.Health == o.Health &&
		i.Identity == o.Identity && i.ServiceAccount == o.ServiceAccount && i.Annotations.Equal(o.Annotations)
}

// Equal reports whether t and o state the same traffic policy. A service
// rarely has one and it is small and nested, so it is compared whole, by
// reflection: strictly (a nil slice differs from an empty one), which is
// the safe side for a saving.
func (t *Traffic) Equal(o *Traffic) bool {
	if t == nil || o == nil {
		return t == o
	}
	return reflect.DeepEqual(t, o)
}
