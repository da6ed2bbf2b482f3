package adapter

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

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

// Guard is the mass-deletion guard at work: it stages what each source sent
// during a debounce window, and at each flush decides which staged changes go
// into the store and which it holds. It owns everything the decision needs:
// the staged changes, the operator's releases, the windows over which
// removals add up, and the list of held changes shown to operators.
//
// Everything but that list is owned by the adapter loop (Stage, Commit,
// Allow, NextRelease); Held may be called from any goroutine.
type Guard struct {
	cfg     GuardConfig
	log     *zap.Logger
	metrics *Metrics
	now     func() time.Time

	staging map[string]*staged
	allowed map[string]bool
	windows map[string]*guardWindow

	mu   sync.Mutex
	held map[string]HeldChange
}

// HeldChange describes a change the mass-deletion guard holds.
type HeldChange struct {
	Source    string    `json:"source"`
	Since     time.Time `json:"since"`
	Removes   int       `json:"removesInstances"`
	Of        int       `json:"ofInstances"`
	ReleaseAt time.Time `json:"releaseAt,omitzero"`
}

// NewGuard returns a guard with cfg, which must have its defaults set.
// metrics may be nil.
func NewGuard(cfg GuardConfig, metrics *Metrics, log *zap.Logger) *Guard {
	return &Guard{
		cfg: cfg, log: log, metrics: metrics, now: time.Now,
		staging: make(map[string]*staged),
		allowed: make(map[string]bool),
		windows: make(map[string]*guardWindow),
		held:    make(map[string]HeldChange),
	}
}

// Stage adds a batch of source to what the next Commit judges. full marks a
// complete state, which replaces whatever was staged before it.
func (g *Guard) Stage(source string, groups []model.Group, full bool) {
	st := g.staging[source]
	if st == nil {
		st = &staged{groups: make(map[string]model.Group)}
		g.staging[source] = st
	}
	st.add(groups, full)
}

// Allow records an operator's release of the change held for source; the
// next Commit applies it. It fails when nothing is held for source.
func (g *Guard) Allow(source string) error {
	if st, ok := g.staging[source]; !ok || st.heldSince.IsZero() {
		return fmt.Errorf("source %q has no held change", source)
	}
	g.allowed[source] = true
	return nil
}

// NextRelease is when the earliest held change's hold time ends.
func (g *Guard) NextRelease() (time.Time, bool) {
	var next time.Time
	for _, st := range g.staging {
		if st.heldSince.IsZero() || g.cfg.Manual {
			continue
		}
		if due := st.heldSince.Add(g.cfg.HoldFor); next.IsZero() || due.Before(next) {
			next = due
		}
	}
	return next, !next.IsZero()
}

// Held returns the changes held now, by source.
func (g *Guard) Held() []HeldChange {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]HeldChange, 0, len(g.held))
	for _, h := range g.held {
		out = append(out, h)
	}
	slices.SortFunc(out, func(x, y HeldChange) int { return strings.Compare(x.Source, y.Source) })
	return out
}

// Commit moves the staged changes into store, except those the guard holds.
func (g *Guard) Commit(store *Store) {
	now := g.now()
	for source, st := range g.staging {
		removed, before := store.removals(source, st)
		// The guard window opens at the first removal, with the instances the
		// source had then as its baseline.
		gw := g.windows[source]
		if gw != nil && now.Sub(gw.start) >= g.cfg.Window {
			gw = nil
			delete(g.windows, source)
		}
		inWindow, baseline := removed, before
		if gw != nil {
			inWindow, baseline = gw.removed+removed, gw.baseline
		}
		verdict := g.cfg.judge(st, removed, inWindow, baseline, now, g.allowed[source])
		log := g.log.With(zap.String("source", source), zap.Int("removes", removed),
			zap.Int("removedInWindow", inWindow), zap.Int("of", baseline))
		switch verdict {
		case guardHold:
			if st.heldSince.IsZero() {
				st.heldSince = now
				log.Warn("holding a change that removes most of the source's instances; it is applied if it persists or an operator allows it",
					zap.Float64("maxDeletionShare", g.cfg.MaxDeletionShare), zap.Duration("holdFor", g.cfg.HoldFor),
					zap.Bool("manual", g.cfg.Manual))
				if g.metrics != nil {
					g.metrics.heldTotal.WithLabelValues(source).Inc()
				}
			}
			st.removed, st.before = removed, baseline
			g.setHeld(source, st)
			continue
		case guardRelease:
			log.Warn("applying a held mass deletion", zap.Bool("operatorAllowed", g.allowed[source]),
				zap.Duration("heldFor", now.Sub(st.heldSince)))
			// A decided deletion starts a fresh window from what is left.
			delete(g.windows, source)
		case guardApply:
			if removed > 0 {
				if gw == nil {
					gw = &guardWindow{start: now, baseline: before}
					g.windows[source] = gw
				}
				gw.removed += removed
			}
		}
		if st.full {
			store.Replace(source, st.list())
		} else {
			store.Update(source, st.list())
		}
		delete(g.staging, source)
		delete(g.allowed, source)
		g.setHeld(source, nil)
	}
}

func (g *Guard) setHeld(source string, st *staged) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if st == nil {
		delete(g.held, source)
	} else {
		h := HeldChange{Source: source, Since: st.heldSince, Removes: st.removed, Of: st.before}
		if !g.cfg.Manual {
			h.ReleaseAt = st.heldSince.Add(g.cfg.HoldFor)
		}
		g.held[source] = h
	}
	if g.metrics != nil {
		v := 0.0
		if st != nil {
			v = 1
		}
		g.metrics.held.WithLabelValues(source).Set(v)
	}
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
