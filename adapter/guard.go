package adapter

import (
	"crypto/rand"
	"encoding/hex"
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
	// window may remove without being held (default 0.5). 1 disables the
	// guard; 0 holds every removal.
	MaxDeletionShare float64 `yaml:"maxDeletionShare"`
	// MinInstances: the share rule applies to sources with at least this
	// many instances (default 10; 0: every source), so that removing one of
	// two instances is not an incident. Emptying a source, or shrinking it
	// after a registry reset, is held whatever its size.
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

// DefaultGuardConfig is the guard a configuration starts from. A parsed
// configuration is decoded onto it, so that a key set to zero stays zero:
// minInstances: 0 guards every source, maxDeletionShare: 0 holds every
// removal, window: 0 judges each debounce window alone.
func DefaultGuardConfig() GuardConfig {
	return GuardConfig{MaxDeletionShare: 0.5, MinInstances: 10, HoldFor: 10 * time.Minute, Window: time.Minute}
}

// SetDefaults fills the fields left at zero, for a configuration built in
// Go (tests, render); config.Parse does not use it, see DefaultGuardConfig.
func (c *GuardConfig) SetDefaults() {
	d := DefaultGuardConfig()
	if c.MaxDeletionShare == 0 {
		c.MaxDeletionShare = d.MaxDeletionShare
	}
	if c.MinInstances == 0 {
		c.MinInstances = d.MinInstances
	}
	if c.HoldFor == 0 && !c.Manual {
		c.HoldFor = d.HoldFor
	}
	if c.Window == 0 {
		c.Window = d.Window
	}
}

// Validate reports an invalid guard configuration.
func (c *GuardConfig) Validate() error {
	if c.MaxDeletionShare < 0 || c.MaxDeletionShare > 1 {
		return fmt.Errorf("guard.maxDeletionShare %v: must be between 0 and 1", c.MaxDeletionShare)
	}
	if c.MinInstances < 0 || c.HoldFor < 0 || c.Window < 0 {
		return fmt.Errorf("guard: minInstances, holdFor and window must not be negative")
	}
	if c.HoldFor == 0 && !c.Manual && c.MaxDeletionShare < 1 {
		return fmt.Errorf("guard.holdFor 0 would apply every held change at once: set guard.manual to hold until an operator allows it, or guard.maxDeletionShare: 1 to turn the guard off")
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
	// resets is when each source last reported a registry reset.
	resets map[string]time.Time

	mu   sync.Mutex
	held map[string]HeldChange
}

// HeldChange describes a change the mass-deletion guard holds.
type HeldChange struct {
	// ID names this held change, as it is now: it changes whenever more of
	// the source's changes join it, so that a release names what the
	// operator saw (POST /debug/allow-deletions).
	ID        string    `json:"id"`
	Source    string    `json:"source"`
	Since     time.Time `json:"since"`
	Removes   int       `json:"removesInstances"`
	Of        int       `json:"ofInstances"`
	ReleaseAt time.Time `json:"releaseAt,omitzero"`
}

// NewGuard returns a guard with cfg, which must have its defaults set.
// metrics may be nil: it then records into metrics registered nowhere.
func NewGuard(cfg GuardConfig, metrics *Metrics, log *zap.Logger) *Guard {
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	return &Guard{
		cfg: cfg, log: log, metrics: metrics, now: time.Now,
		staging: make(map[string]*staged),
		allowed: make(map[string]bool),
		windows: make(map[string]*guardWindow),
		resets:  make(map[string]time.Time),
		held:    make(map[string]HeldChange),
	}
}

// Stage adds a batch of source to what the next Commit judges. full marks a
// complete state, which replaces whatever was staged before it; reset marks
// a batch sent after the registry was reset (its index went backwards).
func (g *Guard) Stage(source string, groups []model.Group, full, reset bool) {
	if reset {
		g.resets[source] = g.now()
	}
	st := g.staging[source]
	if st == nil {
		st = &staged{groups: make(map[string]model.Group)}
		g.staging[source] = st
	}
	st.add(groups, full, reset)
}

// Allow records an operator's release of the change held for source under
// id; the next Commit applies it. It fails when nothing is held for source,
// or when the held change is no longer the one named.
func (g *Guard) Allow(source, id string) error {
	st, ok := g.staging[source]
	if !ok || st.heldSince.IsZero() {
		return fmt.Errorf("source %q has no held change", source)
	}
	if st.id != id {
		return fmt.Errorf("the held change of %q is now %s, not %s: read /debug/held again", source, st.id, id)
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
		removed, before, after := store.removals(source, st)
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
		// A reset keeps counting for one guard window: Consul re-reads the
		// catalog first and each service's instances after, in later
		// batches.
		reset := st.reset
		if at, ok := g.resets[source]; ok {
			if now.Sub(at) < g.cfg.Window {
				reset = true
			} else {
				delete(g.resets, source)
			}
		}
		verdict := g.cfg.judge(st, change{removed: removed, inWindow: inWindow, baseline: baseline,
			before: before, after: after, reset: reset}, now, g.allowed[source])
		log := g.log.With(zap.String("source", source), zap.Int("removes", removed),
			zap.Int("removedInWindow", inWindow), zap.Int("of", baseline))
		switch verdict {
		case guardHold:
			if st.heldSince.IsZero() {
				st.heldSince = now
				log.Warn("holding the removals of a change that removes most of the source's instances, empties it, or shrinks it after a registry reset; they are applied if they persist or an operator allows them, and the rest of the change is applied now",
					zap.Bool("registryReset", reset), zap.Int("leaves", after),
					zap.Float64("maxDeletionShare", g.cfg.MaxDeletionShare), zap.Duration("holdFor", g.cfg.HoldFor),
					zap.Bool("manual", g.cfg.Manual))
				g.metrics.heldTotal.WithLabelValues(source).Inc()
			}
			if st.id == "" || st.grew {
				st.id = newChangeID()
				// Only the removals wait: whatever the change adds or
				// updates goes in now (docs/operations.md). The staged
				// change stays whole, to be applied when released.
				store.Update(source, store.withoutRemovals(source, st))
			}
			st.grew = false
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
		h := HeldChange{ID: st.id, Source: source, Since: st.heldSince, Removes: st.removed, Of: st.before}
		if !g.cfg.Manual {
			h.ReleaseAt = st.heldSince.Add(g.cfg.HoldFor)
		}
		g.held[source] = h
	}
	v := 0.0
	if st != nil {
		v = 1
	}
	g.metrics.held.WithLabelValues(source).Set(v)
}

// staged is what a source sent during the current window, not yet in the
// store.
type staged struct {
	full   bool
	groups map[string]model.Group
	// reset: a batch of this change came after the registry reported a
	// reset.
	reset bool
	// heldSince is set while the guard holds this change.
	heldSince time.Time
	// id names the held change; grew marks batches added since it was set.
	id      string
	grew    bool
	removed int
	before  int
}

func (s *staged) add(groups []model.Group, full, reset bool) {
	s.reset = s.reset || reset
	s.grew = true
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

// removals counts the instances of source that applying s would remove, the
// instances the source holds now, and those it would hold after. An instance is identified by its scope,
// host and id, so replacing instances is not counted as removing them. Only
// the scopes s touches are read, except for a complete state, which touches
// them all.
func (st *Store) removals(source string, s *staged) (removed, before, after int) {
	scopes := st.scopes[source]
	before = st.instances[source]
	after = before
	if s.full {
		for scope, services := range scopes {
			if _, touched := s.groups[scope]; !touched {
				removed += countInstances(services)
				after -= countInstances(services)
			}
		}
	}
	for scope, g := range s.groups {
		after += countInstances(g.Services)
		services, ok := scopes[scope]
		if !ok {
			continue
		}
		after -= countInstances(services)
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
	return removed, before, after
}

// withoutRemovals is the staged change s less what it removes: each scope
// it touches gets the new services plus whatever of the old ones they leave
// out (whole services, or instances by id), and scopes a complete state
// leaves out are not named, so they stay as they are. Applied while the
// guard holds s, it lets additions and changes through and keeps every
// instance the registry stopped listing. s itself is not modified.
func (st *Store) withoutRemovals(source string, s *staged) []model.Group {
	scopes := st.scopes[source]
	out := make([]model.Group, 0, len(s.groups))
	for scope, g := range s.groups {
		old, ok := scopes[scope]
		if !ok {
			out = append(out, g)
			continue
		}
		out = append(out, model.Group{Scope: scope, Services: keepRemoved(old, g.Services)})
	}
	return out
}

// keepRemoved returns next plus the services and instances of prev that
// next leaves out. A service in both has next's ports, labels and
// instances, with prev's other instances after them, ordered by id like a
// source orders them.
func keepRemoved(prev, next []model.Service) []model.Service {
	out := slices.Clone(next)
	at := make(map[string]int, len(next))
	for i, svc := range next {
		at[svc.Host] = i
	}
	for _, svc := range prev {
		i, ok := at[svc.Host]
		if !ok {
			out = append(out, svc)
			continue
		}
		has := make(map[string]bool, len(out[i].Instances))
		for _, in := range out[i].Instances {
			has[in.ID] = true
		}
		var kept []model.Instance
		for _, in := range svc.Instances {
			if !has[in.ID] {
				kept = append(kept, in)
			}
		}
		if len(kept) == 0 {
			continue
		}
		merged := make([]model.Instance, 0, len(out[i].Instances)+len(kept))
		merged = append(append(merged, out[i].Instances...), kept...)
		slices.SortStableFunc(merged, func(a, b model.Instance) int { return strings.Compare(a.ID, b.ID) })
		out[i].Instances = merged
	}
	return out
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

// change is what the guard knows of one staged change when it judges it.
type change struct {
	removed  int // instances it removes
	inWindow int // removals in the current guard window, this change included
	baseline int // instances at the window's start
	before   int // instances the source has now
	after    int // instances it would have
	// reset: the registry reported a reset (its index went backwards) in
	// this change or within the guard window before it.
	reset bool
}

// judge decides on a staged change.
func (c GuardConfig) judge(s *staged, ch change, now time.Time, allowed bool) guardVerdict {
	risky := ch.removed > 0 && ch.baseline >= c.MinInstances &&
		float64(ch.inWindow) > c.MaxDeletionShare*float64(ch.baseline)
	if c.MaxDeletionShare < 1 {
		// Whatever the source's size: emptying it is never normal churn
		// (Slime and Higress keep the last endpoints when a registry turns
		// empty too), and neither is shrinking it right after the registry
		// was reset or replaced. maxDeletionShare: 1 turns the guard off.
		risky = risky || (ch.before > 0 && ch.after == 0) || (ch.reset && ch.removed > 0)
	}
	if !s.heldSince.IsZero() {
		// Once held, a change stays held while it removes anything at all. A
		// registry re-populates piecemeal (Consul answers one service watch
		// at a time), and judging each piece against the threshold again
		// would let the rest of the deletion through unasked.
		risky = ch.removed > 0
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

// newChangeID is a random name for a held change: unique across restarts and
// replicas, so that a release meant for one hold never applies another.
func newChangeID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
