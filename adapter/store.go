package adapter

import (
	"cmp"
	"slices"

	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/model"
)

// Store holds what every source last reported, per source and scope, and
// remembers which hosts changed since they were last converted. Only those
// hosts are converted again: with 50k services, one change must not cost a
// conversion of all of them.
//
// A Store is not safe for concurrent use; the adapter loop owns it.
type Store struct {
	order  map[string]int // source name -> position in the configuration
	scopes map[string]map[string][]model.Service
	// hosts indexes which (source, scope) pairs contribute to a host, in
	// contribution order. Almost every host has exactly one: a slice costs a
	// tenth of a map (measured: 25 MB of maps at 50k hosts).
	hosts map[string][]scopeKey
	dirty map[string]struct{}
	// instances counts each source's instances, kept current by Update so
	// the mass-deletion guard never walks a whole source.
	instances map[string]int
}

type scopeKey struct{ source, scope string }

// NewStore returns a store for the named sources, in configuration order:
// the order decides which source wins when two disagree about a service.
func NewStore(sources []string) *Store {
	s := &Store{
		order:     make(map[string]int, len(sources)),
		scopes:    make(map[string]map[string][]model.Service, len(sources)),
		hosts:     make(map[string][]scopeKey),
		dirty:     make(map[string]struct{}),
		instances: make(map[string]int),
	}
	for i, name := range sources {
		s.order[name] = i
		s.scopes[name] = make(map[string][]model.Service)
	}
	return s
}

// Update replaces the scopes named in groups with their new content (an empty
// group removes its scope) and marks every host they touched, before or
// after, as dirty.
func (s *Store) Update(source string, groups []model.Group) {
	scopes, ok := s.scopes[source]
	if !ok {
		return
	}
	for _, g := range groups {
		old, existed := scopes[g.Scope]
		if existed && slices.EqualFunc(old, g.Services, model.Service.Equal) {
			// A saving, not the guarantee (which is the content version of
			// what is served): a refresh that repeats a scope changes
			// nothing, and leaving its hosts clean spares their conversion,
			// which at tens of thousands of services is most of a no-op
			// refresh's cost.
			continue
		}
		key := scopeKey{source, g.Scope}
		for _, svc := range old {
			s.unindex(svc.Host, key)
		}
		s.instances[source] -= countInstances(old)
		if len(g.Services) == 0 {
			delete(scopes, g.Scope)
			continue
		}
		scopes[g.Scope] = g.Services
		s.instances[source] += countInstances(g.Services)
		for _, svc := range g.Services {
			s.index(svc.Host, key)
		}
	}
}

func countInstances(services []model.Service) int {
	n := 0
	for _, svc := range services {
		n += len(svc.Instances)
	}
	return n
}

// Replace sets the source's whole state: scopes that groups do not name are
// removed. Sources send their complete state as the first batch of every run.
func (s *Store) Replace(source string, groups []model.Group) {
	scopes, ok := s.scopes[source]
	if !ok {
		return
	}
	if len(scopes) == 0 && len(groups) > 0 {
		// A source's first state: its scopes and hosts sized once rather
		// than grown through every doubling (a cold sync's garbage).
		s.scopes[source] = make(map[string][]model.Service, len(groups))
		if len(s.hosts) == 0 {
			s.hosts = make(map[string][]scopeKey, len(groups))
		}
		if len(s.dirty) == 0 {
			s.dirty = make(map[string]struct{}, len(groups))
		}
	}
	named := make(map[string]struct{}, len(groups))
	for _, g := range groups {
		named[g.Scope] = struct{}{}
	}
	var gone []model.Group
	for scope := range scopes {
		if _, ok := named[scope]; !ok {
			gone = append(gone, model.Group{Scope: scope})
		}
	}
	s.Update(source, append(gone, groups...))
}

func (s *Store) index(host string, key scopeKey) {
	keys := s.hosts[host]
	i, found := slices.BinarySearchFunc(keys, key, s.compareKeys)
	if !found {
		s.hosts[host] = slices.Insert(keys, i, key)
	}
	s.dirty[host] = struct{}{}
}

func (s *Store) unindex(host string, key scopeKey) {
	keys := s.hosts[host]
	if i, found := slices.BinarySearchFunc(keys, key, s.compareKeys); found {
		if len(keys) == 1 {
			delete(s.hosts, host)
		} else {
			s.hosts[host] = slices.Delete(keys, i, i+1)
		}
	}
	s.dirty[host] = struct{}{}
}

// compareKeys orders contributions: configuration order of the source, then
// scope, so that conversion is deterministic whatever order updates came in.
func (s *Store) compareKeys(a, b scopeKey) int {
	return cmp.Or(cmp.Compare(s.order[a.source], s.order[b.source]), cmp.Compare(a.scope, b.scope))
}

// TakeDirty returns the hosts changed since the last call, sorted, and
// forgets them.
func (s *Store) TakeDirty() []string {
	out := make([]string, 0, len(s.dirty))
	for h := range s.dirty {
		out = append(out, h)
	}
	clear(s.dirty)
	slices.Sort(out)
	return out
}

// Has reports whether any source currently has host.
func (s *Store) Has(host string) bool { return len(s.hosts[host]) > 0 }

// Hosts returns every host currently known, sorted.
func (s *Store) Hosts() []string {
	out := make([]string, 0, len(s.hosts))
	for h := range s.hosts {
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}

// Contributions returns every source's view of host, in configuration order
// (then by scope), so that conversion is deterministic whatever order the
// updates arrived in.
func (s *Store) Contributions(host string) []convert.Contribution {
	return s.contributionsInto(nil, host)
}

// contributionsInto is Contributions appended to dst: the pipeline reuses
// one buffer per worker, a cold sync of 50k hosts asks twice per host.
func (s *Store) contributionsInto(dst []convert.Contribution, host string) []convert.Contribution {
	out := dst
	for _, k := range s.hosts[host] {
		for _, svc := range s.scopes[k.source][k.scope] {
			if svc.Host == host {
				out = append(out, convert.Contribution{Source: k.source, Service: svc})
			}
		}
	}
	return out
}
