// Package adapter wires sources to the server: it keeps what every source
// reported (the store), converts the hosts that changed, diffs them against
// what was published, and hands only the differences to the server's cache,
// once per debounce window.
package adapter

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/server"
	"github.com/registry-adapter/registry-adapter/sources"
)

// Publisher receives the changes to serve. *server.Cache is one.
type Publisher interface {
	Apply(kind convert.Kind, upserts []server.Entry, deletes []string) bool
	MarkReady()
}

// NamedSource is a configured source.
type NamedSource struct {
	Name     string
	Source   sources.Source
	Reporter *sources.Reporter
}

// Settings are the adapter loop's configuration.
type Settings struct {
	Output    convert.Options
	Debounce  DebounceConfig
	Guard     GuardConfig
	StateFile StateFileConfig
}

// Adapter is the loop between sources and the server.
type Adapter struct {
	log      *zap.Logger
	opts     convert.Options
	debounce DebounceConfig
	guard    GuardConfig
	state    StateFileConfig
	sources  []NamedSource
	// shards are the publishers hosts are spread over; usually one.
	shards  []Publisher
	metrics *Metrics
	// restartBackoff bounds how fast a crashed source is restarted.
	restartBackoff time.Duration
	now            func() time.Time

	ready atomic.Bool
	// allow carries operator releases of held deletions to the loop.
	allow chan allowRequest

	heldMu sync.Mutex
	held   map[string]HeldChange

	// Owned by Run.
	store     *Store
	published *Published
	staging   map[string]*staged
	allowed   map[string]bool
	windows   map[string]*guardWindow
	writer    *stateWriter
}

// HeldChange describes a change the mass-deletion guard holds.
type HeldChange struct {
	Source    string    `json:"source"`
	Since     time.Time `json:"since"`
	Removes   int       `json:"removesInstances"`
	Of        int       `json:"ofInstances"`
	ReleaseAt time.Time `json:"releaseAt,omitzero"`
}

type allowRequest struct {
	source string
	done   chan error
}

// New returns an adapter that publishes to pub. metrics may be nil.
func New(srcs []NamedSource, settings Settings, pub Publisher, m *Metrics, log *zap.Logger) *Adapter {
	return NewSharded(srcs, settings, []Publisher{pub}, m, log)
}

// NewSharded returns an adapter that spreads hosts over shards by ShardOf, so
// that each shard (one istiod config source) carries about 1/K of the
// resources and a push costs istiod the decode of that share only. A host's
// ServiceEntry and WorkloadEntries always go to the same shard.
func NewSharded(srcs []NamedSource, settings Settings, shards []Publisher, m *Metrics, log *zap.Logger) *Adapter {
	names := make([]string, len(srcs))
	for i, s := range srcs {
		names[i] = s.Name
	}
	// SetDefaults keeps what is set: render's share of 1 stays, its window
	// gets the default like everyone else's.
	guard := settings.Guard
	guard.SetDefaults()
	return &Adapter{
		log: log, opts: settings.Output, debounce: settings.Debounce, guard: guard, state: settings.StateFile,
		sources: srcs, shards: shards, metrics: m,
		restartBackoff: time.Second,
		now:            time.Now,
		allow:          make(chan allowRequest),
		held:           make(map[string]HeldChange),
		store:          NewStore(names),
		published:      NewPublished(),
		staging:        make(map[string]*staged),
		allowed:        make(map[string]bool),
		windows:        make(map[string]*guardWindow),
	}
}

// Ready reports whether every source delivered its first state and that
// state was published.
func (a *Adapter) Ready() bool { return a.ready.Load() }

// update is one batch from one source. full marks the first batch of a
// source run: the complete state, so scopes it does not name are gone.
type update struct {
	source string
	groups []model.Group
	full   bool
}

// Run feeds the publisher until ctx is done.
func (a *Adapter) Run(ctx context.Context) error {
	updates := make(chan update)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, s := range a.sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.runSource(ctx, s, updates)
		}()
	}

	synced := make(map[string]bool, len(a.sources))
	deb := debouncer{cfg: a.debounce}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	// holdTimer re-judges held deletions when their hold time is up.
	holdTimer := time.NewTimer(time.Hour)
	holdTimer.Stop()
	defer holdTimer.Stop()
	flush := func() {
		a.flush()
		if due, ok := a.nextRelease(); ok {
			holdTimer.Reset(time.Until(due))
		}
	}

	// serveSaved fires when a restored state should be served because the
	// sources have not synced in time; it stays stopped otherwise.
	serveSaved := time.NewTimer(time.Hour)
	serveSaved.Stop()
	defer serveSaved.Stop()
	if a.state.Path != "" {
		if a.restoreState() {
			serveSaved.Reset(a.state.ServeAfter)
		}
		a.writer = newStateWriter(a.state.Path, a.state.MinInterval, a.log)
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.writer.run(ctx)
		}()
	}

	if len(a.sources) == 0 {
		flush()
		a.markReady()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u := <-updates:
			a.apply(u)
			if !a.ready.Load() {
				synced[u.source] = true
				if len(synced) == len(a.sources) {
					// The first publication goes out at once: istiod is
					// waiting, unready, for its first reply.
					flush()
					a.markReady()
				}
				continue
			}
			due := deb.change(a.now())
			timer.Reset(time.Until(due))
		case <-timer.C:
			if deb.open() {
				deb.close()
				flush()
			}
		case <-holdTimer.C:
			flush()
		case <-serveSaved.C:
			if !a.ready.Load() {
				var waiting []string
				for _, s := range a.sources {
					if !synced[s.Name] {
						waiting = append(waiting, s.Name)
					}
				}
				a.log.Warn("sources have not synced in time; serving the saved state",
					zap.Strings("waitingFor", waiting), zap.Duration("serveAfter", a.state.ServeAfter))
				flush()
				a.markReady()
			}
		case req := <-a.allow:
			if _, ok := a.staging[req.source]; !ok || a.staging[req.source].heldSince.IsZero() {
				req.done <- fmt.Errorf("source %q has no held change", req.source)
				continue
			}
			a.allowed[req.source] = true
			flush()
			req.done <- nil
		}
	}
}

// restoreState loads the state file into the store, for the sources still
// configured, and reports whether there was anything to restore.
func (a *Adapter) restoreState() bool {
	saved, err := loadState(a.state.Path)
	if err != nil {
		a.log.Error("ignoring the state file", zap.Error(err))
		return false
	}
	if saved == nil {
		return false
	}
	restored := false
	for _, src := range a.sources {
		scopes, ok := saved.Sources[src.Name]
		if !ok {
			continue
		}
		groups := make([]model.Group, 0, len(scopes))
		for scope, svcs := range scopes {
			groups = append(groups, model.Group{Scope: scope, Services: svcs})
		}
		a.store.Replace(src.Name, groups)
		restored = true
	}
	a.log.Info("loaded the saved state", zap.String("path", a.state.Path), zap.Time("savedAt", saved.SavedAt),
		zap.Int("hosts", len(a.store.hosts)))
	return restored
}

// AllowDeletions releases the change the mass-deletion guard holds for
// source, as an operator decision.
func (a *Adapter) AllowDeletions(ctx context.Context, source string) error {
	req := allowRequest{source: source, done: make(chan error, 1)}
	select {
	case a.allow <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Held returns the changes the guard holds now, by source.
func (a *Adapter) Held() []HeldChange {
	a.heldMu.Lock()
	defer a.heldMu.Unlock()
	out := make([]HeldChange, 0, len(a.held))
	for _, h := range a.held {
		out = append(out, h)
	}
	slices.SortFunc(out, func(x, y HeldChange) int { return strings.Compare(x.Source, y.Source) })
	return out
}

// nextRelease is when the earliest held change's hold time ends.
func (a *Adapter) nextRelease() (time.Time, bool) {
	var next time.Time
	for _, st := range a.staging {
		if st.heldSince.IsZero() || a.guard.Manual {
			continue
		}
		if due := st.heldSince.Add(a.guard.HoldFor); next.IsZero() || due.Before(next) {
			next = due
		}
	}
	return next, !next.IsZero()
}

// commitStaged moves staged changes into the store, except those the
// mass-deletion guard holds.
func (a *Adapter) commitStaged() {
	now := a.now()
	for source, st := range a.staging {
		removed, before := a.store.removals(source, st)
		// The guard window opens at the first removal, with the instances the
		// source had then as its baseline.
		gw := a.windows[source]
		if gw != nil && now.Sub(gw.start) >= a.guard.Window {
			gw = nil
			delete(a.windows, source)
		}
		inWindow, baseline := removed, before
		if gw != nil {
			inWindow, baseline = gw.removed+removed, gw.baseline
		}
		verdict := a.guard.judge(st, removed, inWindow, baseline, now, a.allowed[source])
		log := a.log.With(zap.String("source", source), zap.Int("removes", removed),
			zap.Int("removedInWindow", inWindow), zap.Int("of", baseline))
		switch verdict {
		case guardHold:
			if st.heldSince.IsZero() {
				st.heldSince = now
				log.Warn("holding a change that removes most of the source's instances; it is applied if it persists or an operator allows it",
					zap.Float64("maxDeletionShare", a.guard.MaxDeletionShare), zap.Duration("holdFor", a.guard.HoldFor),
					zap.Bool("manual", a.guard.Manual))
				if a.metrics != nil {
					a.metrics.heldTotal.WithLabelValues(source).Inc()
				}
			}
			st.removed, st.before = removed, baseline
			a.setHeld(source, st)
			continue
		case guardRelease:
			log.Warn("applying a held mass deletion", zap.Bool("operatorAllowed", a.allowed[source]),
				zap.Duration("heldFor", now.Sub(st.heldSince)))
			// A decided deletion starts a fresh window from what is left.
			delete(a.windows, source)
		case guardApply:
			if removed > 0 {
				if gw == nil {
					gw = &guardWindow{start: now, baseline: before}
					a.windows[source] = gw
				}
				gw.removed += removed
			}
		}
		if st.full {
			a.store.Replace(source, st.list())
		} else {
			a.store.Update(source, st.list())
		}
		delete(a.staging, source)
		delete(a.allowed, source)
		a.setHeld(source, nil)
	}
}

func (a *Adapter) setHeld(source string, st *staged) {
	a.heldMu.Lock()
	defer a.heldMu.Unlock()
	if st == nil {
		delete(a.held, source)
	} else {
		h := HeldChange{Source: source, Since: st.heldSince, Removes: st.removed, Of: st.before}
		if !a.guard.Manual {
			h.ReleaseAt = st.heldSince.Add(a.guard.HoldFor)
		}
		a.held[source] = h
	}
	if a.metrics != nil {
		v := 0.0
		if st != nil {
			v = 1
		}
		a.metrics.held.WithLabelValues(source).Set(v)
	}
}

func (a *Adapter) markReady() {
	for _, p := range a.shards {
		p.MarkReady()
	}
	a.ready.Store(true)
	a.log.Info("every source synced; serving")
}

// apply stages a batch; flush commits it.
func (a *Adapter) apply(u update) {
	st := a.staging[u.source]
	if st == nil {
		st = &staged{groups: make(map[string]model.Group)}
		a.staging[u.source] = st
	}
	st.add(u.groups, u.full)
	if a.metrics != nil {
		a.metrics.updates.WithLabelValues(u.source).Inc()
	}
}

// runSource runs one source, restarting it if it fails, and forwards its
// batches until ctx is done.
func (a *Adapter) runSource(ctx context.Context, s NamedSource, updates chan<- update) {
	log := a.log.With(zap.String("source", s.Name))
	for {
		out := make(chan []model.Group)
		done := make(chan error, 1)
		go func() { done <- s.Source.Run(ctx, out) }()
		first := true
	forward:
		for {
			select {
			case groups := <-out:
				select {
				case updates <- update{source: s.Name, groups: groups, full: first}:
					first = false
				case <-ctx.Done():
					<-done
					return
				}
			case err := <-done:
				if ctx.Err() != nil {
					return
				}
				// The store keeps the source's last state while it restarts:
				// a crashed watcher must not empty istiod's view.
				log.Error("source stopped unexpectedly; keeping its last state and restarting", zap.Error(err))
				if err != nil {
					s.Reporter.Failed("crashed", err)
				}
				break forward
			case <-ctx.Done():
				<-done
				return
			}
		}
		select {
		case <-time.After(a.restartBackoff):
		case <-ctx.Done():
			return
		}
	}
}

// flush converts every dirty host, diffs it against what was published and
// hands the differences to the publishers.
func (a *Adapter) flush() {
	start := time.Now()
	a.commitStaged()
	hosts := a.store.TakeDirty()
	if a.writer != nil && len(hosts) > 0 {
		a.writer.offer(a.store.snapshot())
	}
	results := a.convertHosts(hosts)
	type shardKind struct {
		shard int
		kind  convert.Kind
	}
	upserts := make(map[shardKind][]server.Entry)
	deletes := make(map[shardKind][]string)
	counts := make(map[convert.Kind][2]int)
	for i, host := range hosts {
		res := &results[i]
		a.reportRejections(res.rejected)
		for _, err := range res.errs {
			a.log.Error("cannot serialize resource; leaving it out", zap.Error(err))
		}
		shard := ShardOf(host, len(a.shards))
		for _, u := range res.upserts {
			key := shardKind{shard, u.kind}
			upserts[key] = append(upserts[key], u.entry)
		}
		for kind, names := range res.deletes {
			key := shardKind{shard, kind}
			deletes[key] = append(deletes[key], names...)
		}
		a.published.commit(host, res.published)
	}
	changed := false
	for shard, pub := range a.shards {
		for _, kind := range convert.Kinds {
			key := shardKind{shard, kind}
			u, d := upserts[key], deletes[key]
			if len(u) == 0 && len(d) == 0 {
				continue
			}
			changed = pub.Apply(kind, u, d) || changed
			c := counts[kind]
			c[0] += len(u)
			c[1] += len(d)
			counts[kind] = c
		}
	}
	fields := []zap.Field{zap.Int("hostsChanged", len(hosts))}
	for _, kind := range convert.Kinds {
		c, ok := counts[kind]
		if !ok {
			continue
		}
		fields = append(fields, zap.Int(string(kind)+"Upserts", c[0]), zap.Int(string(kind)+"Deletes", c[1]))
		if a.metrics != nil {
			a.metrics.applied.WithLabelValues(string(kind), "upsert").Add(float64(c[0]))
			a.metrics.applied.WithLabelValues(string(kind), "delete").Add(float64(c[1]))
		}
	}
	if a.metrics != nil {
		a.metrics.windows.Inc()
		a.metrics.flushDuration.Observe(time.Since(start).Seconds())
		a.metrics.hosts.Set(float64(len(a.store.hosts)))
	}
	if changed {
		a.log.Info("published changes", append(fields, zap.Duration("took", time.Since(start)))...)
	} else if len(hosts) > 0 {
		a.log.Debug("refresh changed nothing", fields...)
	}
}

// ShardOf is the shard of host among k: a stable hash, the same in every
// process and replica, so that a host never moves between config sources
// while the shard count stays the same.
func ShardOf(host string, k int) int {
	if k <= 1 {
		return 0
	}
	return int(xxhash.Sum64String(host) % uint64(k))
}

// hostResult is one host's conversion, diffed against what was published.
// It keeps no converted resource: their specs are garbage as soon as they are
// serialized, which at a cold sync of 50k services halves the peak heap.
type hostResult struct {
	published []publishedResource
	rejected  []convert.Rejection
	upserts   []kindEntry
	deletes   map[convert.Kind][]string
	errs      []error
}

type kindEntry struct {
	kind  convert.Kind
	entry server.Entry
}

// parallelFrom is the number of dirty hosts from which conversion is spread
// over every CPU; below it, goroutines cost more than they save.
const parallelFrom = 256

// convertHosts converts, diffs and serializes every host. It reads the store
// and the published state and writes neither, so hosts are converted in
// parallel: a cold sync or a restart of a large source converts tens of
// thousands of hosts, which is most of the time istiod waits for its first
// reply.
func (a *Adapter) convertHosts(hosts []string) []hostResult {
	results := make([]hostResult, len(hosts))
	workers := min(runtime.GOMAXPROCS(0), len(hosts)/parallelFrom+1)
	if workers <= 1 {
		for i, h := range hosts {
			results[i] = a.convertHost(h)
		}
		return results
	}
	var next atomic.Int64
	const chunk = 64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lo := int(next.Add(chunk)) - chunk
				if lo >= len(hosts) {
					return
				}
				for i := lo; i < min(lo+chunk, len(hosts)); i++ {
					results[i] = a.convertHost(hosts[i])
				}
			}
		}()
	}
	wg.Wait()
	return results
}

func (a *Adapter) convertHost(host string) hostResult {
	desired, rejected := convert.Service(host, a.store.Contributions(host), a.opts)
	res := hostResult{rejected: rejected}
	for kind, change := range a.published.Diff(host, desired) {
		for _, r := range change.Upserts {
			// Serialized straight into the form every reply shares.
			entry, err := server.NewEntry(r.Key(), r.Version, r.MCP())
			if err != nil {
				res.errs = append(res.errs, fmt.Errorf("%s %s: %w", kind, r.Key(), err))
				desired = without(desired, r)
				continue
			}
			res.upserts = append(res.upserts, kindEntry{kind, entry})
		}
		if len(change.Deletes) > 0 {
			if res.deletes == nil {
				res.deletes = make(map[convert.Kind][]string, 1)
			}
			res.deletes[kind] = change.Deletes
		}
	}
	res.published = publishedList(desired)
	return res
}

func without(rs []*convert.Resource, drop *convert.Resource) []*convert.Resource {
	out := rs[:0:0]
	for _, r := range rs {
		if r != drop {
			out = append(out, r)
		}
	}
	return out
}

func (a *Adapter) reportRejections(rejected []convert.Rejection) {
	for _, r := range rejected {
		a.log.Warn("left out of what istiod receives",
			zap.String("source", r.Source), zap.String("kind", string(r.Kind)), zap.String("item", r.Name),
			zap.String("code", r.Code), zap.String("reason", r.Reason))
		if a.metrics != nil {
			a.metrics.rejected.WithLabelValues(r.Source, r.Code).Inc()
		}
	}
}
