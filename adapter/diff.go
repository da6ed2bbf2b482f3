package adapter

import (
	"github.com/registry-adapter/registry-adapter/convert"
)

// Published is what was last handed to the server: per host, the resources
// it produced and their versions. It is the "before" of every diff.
type Published struct {
	byHost map[string]map[resourceID]string // host -> resource -> version
}

type resourceID struct {
	kind convert.Kind
	key  string // namespace/name
}

// NewPublished returns an empty published state.
func NewPublished() *Published {
	return &Published{byHost: make(map[string]map[resourceID]string)}
}

// Change is the difference between the published and desired resources of
// one kind.
type Change struct {
	Upserts []*convert.Resource
	Deletes []string // namespace/name
}

// Empty reports whether the change does nothing.
func (c Change) Empty() bool { return len(c.Upserts) == 0 && len(c.Deletes) == 0 }

// Diff compares the desired resources of host with what was published for it
// and returns the changes per kind. A resource whose version is unchanged is
// not in the result, so a refresh that changes nothing publishes nothing.
// Diff does not modify p; Commit does.
func (p *Published) Diff(host string, desired []*convert.Resource) map[convert.Kind]Change {
	before := p.byHost[host]
	out := make(map[convert.Kind]Change)
	seen := make(map[resourceID]struct{}, len(desired))
	for _, r := range desired {
		id := resourceID{r.Kind, r.Key()}
		seen[id] = struct{}{}
		if v, ok := before[id]; ok && v == r.Version {
			continue
		}
		c := out[r.Kind]
		c.Upserts = append(c.Upserts, r)
		out[r.Kind] = c
	}
	for id := range before {
		if _, ok := seen[id]; ok {
			continue
		}
		c := out[id.kind]
		c.Deletes = append(c.Deletes, id.key)
		out[id.kind] = c
	}
	for k, c := range out {
		if c.Empty() {
			delete(out, k)
		}
	}
	return out
}

// Commit records desired as what is now published for host.
func (p *Published) Commit(host string, desired []*convert.Resource) {
	if len(desired) == 0 {
		delete(p.byHost, host)
		return
	}
	m := make(map[resourceID]string, len(desired))
	for _, r := range desired {
		m[resourceID{r.Kind, r.Key()}] = r.Version
	}
	p.byHost[host] = m
}
