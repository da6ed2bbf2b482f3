package adapter

import (
	"fmt"
	"time"

	"github.com/registry-adapter/registry-adapter/model"
)

// GuardConfig configures the mass-deletion guard. istiod deletes whatever a
// reply leaves out, so a registry that suddenly reports most of its instances
// gone (a Consul restored from an old snapshot, an ACL change hiding the
// catalog, a cloud API answering an empty page) would drop those workloads
// from the mesh at once. The guard holds such a change until it has
// persisted, or an operator allows it.
type GuardConfig struct {
	// MaxDeletionShare is the share of a source's instances one debounce
	// window may remove without being held (default 0.5). 1 disables the guard.
	MaxDeletionShare float64 `yaml:"maxDeletionShare"`
	// MinInstances: sources with fewer instances are not guarded (default 10),
	// so that removing one of two instances is not an incident.
	MinInstances int `yaml:"minInstances"`
	// HoldFor is how long a held change must persist before it is applied
	// anyway (default 10m). Zero with Manual set means only an operator can
	// release it.
	HoldFor time.Duration `yaml:"holdFor"`
	// Manual holds deletions until an operator allows them
	// (POST /debug/allow-deletions?source=NAME), however long they persist.
	Manual bool `yaml:"manual"`
	// Window over which removals add up (default 1m). A registry that empties
	// piecemeal (Consul answers one service watch at a time, each in its own
	// debounce window) must not slip a mass deletion through in slices that
	// are each under the share.
	Window time.Duration `yaml:"window"`
}

// SetDefaults fills unset fields.
func (c *GuardConfig) SetDefaults() {
	if c.MaxDeletionShare == 0 {
		c.MaxDeletionShare = 0.5
	}
	if c.MinInstances == 0 {
		c.MinInstances = 10
	}
	if c.HoldFor == 0 && !c.Manual {
		c.HoldFor = 10 * time.Minute
	}
	if c.Window == 0 {
		c.Window = time.Minute
	}
}

// Validate reports an invalid guard configuration.
func (c *GuardConfig) Validate() error {
	if c.MaxDeletionShare <= 0 || c.MaxDeletionShare > 1 {
		return fmt.Errorf("guard.maxDeletionShare %v: must be in (0, 1]", c.MaxDeletionShare)
	}
	if c.MinInstances < 0 || c.HoldFor < 0 || c.Window < 0 {
		return fmt.Errorf("guard: minInstances, holdFor and window must not be negative")
	}
	return nil
}

// staged is what a source sent during the current window, not yet in the
// store.
type staged struct {
	full   bool
	groups map[string]model.Group
	// heldSince is set while the guard holds this change.
	heldSince time.Time
	removed   int
	before    int
}

func (s *staged) add(groups []model.Group, full bool) {
	if full {
		// A complete state replaces whatever was staged before it.
		s.full = true
		s.groups = make(map[string]model.Group, len(groups))
	}
	for _, g := range groups {
		s.groups[g.Scope] = g
	}
}

func (s *staged) list() []model.Group {
	out := make([]model.Group, 0, len(s.groups))
	for _, g := range s.groups {
		out = append(out, g)
	}
	return out
}

// removals counts the instances of source that applying s would remove, and
// the instances the source holds now. An instance is identified by its scope,
// host and id, so replacing instances is not counted as removing them. Only
// the scopes s touches are read, except for a complete state, which touches
// them all.
func (st *Store) removals(source string, s *staged) (removed, before int) {
	scopes := st.scopes[source]
	before = st.instances[source]
	if s.full {
		for scope, services := range scopes {
			if _, touched := s.groups[scope]; !touched {
				removed += countInstances(services)
			}
		}
	}
	for scope, g := range s.groups {
		services, ok := scopes[scope]
		if !ok {
			continue
		}
		keep := make(map[string]struct{})
		for _, svc := range g.Services {
			for _, in := range svc.Instances {
				keep[svc.Host+"\x00"+in.ID] = struct{}{}
			}
		}
		for _, svc := range services {
			for _, in := range svc.Instances {
				if _, ok := keep[svc.Host+"\x00"+in.ID]; !ok {
					removed++
				}
			}
		}
	}
	return removed, before
}

// guardVerdict decides whether a staged change goes in now.
type guardVerdict int

const (
	guardApply guardVerdict = iota
	guardHold
	guardRelease // held before, released now (persisted or allowed)
)

// guardWindow adds up one source's removals since start.
type guardWindow struct {
	start    time.Time
	baseline int // instances at the window's start
	removed  int // removals applied since
}

// judge decides on a staged change that removes `removed` instances, given
// `inWindow` removals in the current guard window (this change included) out
// of `baseline` instances at the window's start.
func (c GuardConfig) judge(s *staged, removed, inWindow, baseline int, now time.Time, allowed bool) guardVerdict {
	risky := removed > 0 && baseline >= c.MinInstances && float64(inWindow) > c.MaxDeletionShare*float64(baseline)
	if !s.heldSince.IsZero() {
		// Once held, a change stays held while it removes anything at all. A
		// registry re-populates piecemeal (Consul answers one service watch
		// at a time), and judging each piece against the threshold again
		// would let the rest of the deletion through unasked.
		risky = removed > 0
	}
	switch {
	case !risky:
		return guardApply
	case allowed:
		return guardRelease
	case s.heldSince.IsZero():
		return guardHold
	case !c.Manual && now.Sub(s.heldSince) >= c.HoldFor:
		return guardRelease
	default:
		return guardHold
	}
}
