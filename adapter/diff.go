package adapter

import (
	"cmp"
	"slices"
	"strings"

	"github.com/registry-adapter/registry-adapter/served"
)

// Published is what was last handed to the server: per host, the resources
// it produced and their versions. It is the "before" of every diff.
type Published struct {
	// A sorted slice per host rather than a map: a host has one resource in
	// inline mode and 1+instances in workloadentry mode, and a map of one
	// entry cost 580 bytes per host at 50k hosts (measured).
	byHost map[string][]publishedResource
	// perKind counts the published resources of each kind.
	perKind map[served.Kind]int
}

type publishedResource struct {
	kind    served.Kind
	key     string // namespace/name
	version string
}

func comparePublished(a, b publishedResource) int {
	return cmp.Or(strings.Compare(string(a.kind), string(b.kind)), strings.Compare(a.key, b.key))
}

// NewPublished returns an empty published state.
func NewPublished() *Published {
	return &Published{byHost: make(map[string][]publishedResource), perKind: make(map[served.Kind]int)}
}

// Change is the difference between the published and desired resources of
// one kind.
type Change struct {
	Upserts []*served.Resource
	Deletes []string // namespace/name
}

// Empty reports whether the change does nothing.
func (c Change) Empty() bool { return len(c.Upserts) == 0 && len(c.Deletes) == 0 }

// Diff compares the desired resources of host with what was published for it
// and returns the changes per kind. A resource whose version is unchanged is
// not in the result, so a refresh that changes nothing publishes nothing.
// Diff does not modify p (it is safe to call from several goroutines while
// nobody commits); Commit does.
func (p *Published) Diff(host string, desired []*served.Resource) map[served.Kind]Change {
	var out map[served.Kind]Change
	p.diff(host, desired, func(kind served.Kind, upsert *served.Resource, del string) {
		if out == nil {
			out = make(map[served.Kind]Change, len(served.Kinds))
		}
		c := out[kind]
		if upsert != nil {
			c.Upserts = append(c.Upserts, upsert)
		} else {
			c.Deletes = append(c.Deletes, del)
		}
		out[kind] = c
	})
	return out
}

// diff calls change for every difference Diff reports, one resource at a
// time: the pipeline's conversion of a host needs no map of them (a map per
// host was a twentieth of a cold sync's garbage, measured).
func (p *Published) diff(host string, desired []*served.Resource, change func(kind served.Kind, upsert *served.Resource, del string)) {
	before := p.byHost[host]
	// kept marks the published resources still desired; most hosts have a
	// handful, so a few on the stack cover them.
	var small [4]bool
	kept := small[:0]
	if len(before) > len(small) {
		kept = make([]bool, len(before))
	} else {
		kept = small[:len(before)]
	}
	for _, r := range desired {
		i, found := slices.BinarySearchFunc(before, publishedResource{kind: r.Kind, key: r.Key()}, comparePublished)
		if found {
			kept[i] = true
			if before[i].version == r.Version {
				continue
			}
		}
		change(r.Kind, r, "")
	}
	for i, pr := range before {
		if !kept[i] {
			change(pr.kind, nil, pr.key)
		}
	}
}

// Commit records desired as what is now published for host.
func (p *Published) Commit(host string, desired []*served.Resource) {
	p.commit(host, publishedList(desired))
}

// commit records a list made by publishedList.
func (p *Published) commit(host string, list []publishedResource) {
	for _, r := range p.byHost[host] {
		p.perKind[r.kind]--
	}
	for _, r := range list {
		p.perKind[r.kind]++
	}
	if len(list) == 0 {
		delete(p.byHost, host)
		return
	}
	p.byHost[host] = list
}

// reserve sizes an empty published state for n hosts: a cold sync's first
// flush commits them all at once.
func (p *Published) reserve(n int) {
	if len(p.byHost) == 0 && n > 64 {
		p.byHost = make(map[string][]publishedResource, n)
	}
}

// Count is the number of published resources of kind.
func (p *Published) Count(kind served.Kind) int { return p.perKind[kind] }

// publishedList is what Published keeps of desired: names and versions,
// sorted.
func publishedList(desired []*served.Resource) []publishedResource {
	if len(desired) == 0 {
		return nil
	}
	list := make([]publishedResource, len(desired))
	for i, r := range desired {
		list[i] = publishedResource{kind: r.Kind, key: r.Key(), version: r.Version}
	}
	slices.SortFunc(list, comparePublished)
	return list
}
