// Package adapter wires sources to the publishers: it keeps what every
// source reported (the store), lets the mass-deletion guard decide which
// changes go in, converts the hosts that changed, diffs them against what was
// published, and hands only the differences to the publishers, once per
// debounce window.
//
// The files follow the pipeline: supervise.go runs the sources, guard.go
// stages and judges their batches, store.go keeps the result, pipeline.go
// converts, diffs and publishes, and this file is the loop that times it all.
package adapter

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/vip"
)

// NamedSource is a configured source.
type NamedSource struct {
	Name     string
	Source   sources.Source
	Reporter *sources.Reporter
	// Limits caps what the source may deliver; zero values are the defaults.
	Limits SourceLimits
}

// Settings are the adapter loop's configuration.
type Settings struct {
	Output    convert.Options
	Debounce  DebounceConfig
	Guard     GuardConfig
	StateFile StateFileConfig
}

// Adapter is the loop between sources and the publishers.
type Adapter struct {
	log      *zap.Logger
	opts     convert.Options
	vips     *vip.Allocator // addresses for hosts the registries give none
	debounce DebounceConfig
	state    StateFileConfig
	sources  []NamedSource
	// shards are the publishers hosts are spread over; usually one.
	shards  []Publisher
	metrics *Metrics
	// restartBackoff bounds how fast a crashed source is restarted.
	restartBackoff time.Duration
	// stopTimeout bounds the wait for a source to return once its context
	// is done, so that a source ignoring its context cannot hang shutdown.
	stopTimeout time.Duration
	now         func() time.Time
	// onReject, when set, receives rejections instead of the log and
	// metrics (render returns them to its caller).
	onReject func(convert.Rejection)
	// rejectLog bounds the rejection warnings: registry data can make any
	// number of them (sources.LogLimit); the metric counts each.
	rejectLog *sources.LogLimit

	ready atomic.Bool
	// allow carries operator releases of held deletions to the loop.
	allow chan allowRequest

	// guard is shared with the debug handlers through Held; the rest of it,
	// and everything below, is owned by the loop.
	guard *Guard
	// scratches are the conversion workers' maps and objects, one per
	// worker, kept from flush to flush (convertHosts).
	scratches []*convert.Scratch
	store     *Store
	published *Published
	writer    *stateWriter
	// restoredAt is the savedAt of the state restored at start, until every
	// source has synced; zero otherwise.
	restoredAt time.Time
	// confirmed: the sources have just confirmed a restored state; the next
	// flush saves it with a fresh time even if nothing in it changed.
	confirmed bool
	// warnedSelectorCost: warnSelectorCost has logged.
	warnedSelectorCost bool
}

type allowRequest struct {
	source string
	id     string
	done   chan error
}

// New returns an adapter that publishes to pub. m may be nil: the loop then
// records into metrics registered nowhere.
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
	// Settings without a guard get the default one; a guard that is set is
	// taken as it is, zeros included.
	guard := settings.Guard
	if guard == (GuardConfig{}) {
		guard = DefaultGuardConfig()
	}
	state := settings.StateFile
	state.SetDefaults()
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Adapter{
		log: log, opts: settings.Output, debounce: settings.Debounce, state: state,
		sources: srcs, shards: shards, metrics: m,
		restartBackoff: time.Second,
		stopTimeout:    10 * time.Second,
		now:            time.Now,
		allow:          make(chan allowRequest),
		guard:          NewGuard(guard, m, log),
		store:          NewStore(names),
		published:      NewPublished(),
		vips:           newAllocator(settings.Output, log),
		rejectLog:      sources.NewLogLimit(sources.LogBurst, sources.LogEvery),
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
	// reset: the source reported a registry reset before sending it.
	reset bool
}

// Run feeds the publishers until ctx is done.
func (a *Adapter) Run(ctx context.Context) error { return a.run(ctx, false) }

// run is the adapter loop. With once set it returns after the first
// publication, or with an error naming the sources that have not synced when
// ctx ends first: that is render.
func (a *Adapter) run(ctx context.Context, once bool) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Sources stop before the loop returns: cancel first, then wait.
	defer wg.Wait()
	defer cancel()
	updates := make(chan update)
	for _, s := range a.sources {
		wg.Go(func() { a.runSource(ctx, s, updates) })
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
		if due, ok := a.guard.NextRelease(); ok {
			holdTimer.Reset(time.Until(due))
		}
	}

	// serveSaved fires when a restored state should be served because the
	// sources have not synced in time; it stays stopped otherwise.
	serveSaved := time.NewTimer(time.Hour)
	serveSaved.Stop()
	defer serveSaved.Stop()
	if a.state.Path != "" && !once {
		if a.restoreState() {
			serveSaved.Reset(a.state.ServeAfter)
		}
		a.writer = newStateWriter(a.state, a.now, a.log)
		wg.Go(func() { a.writer.run(ctx) })
	}

	waiting := func() []string {
		var out []string
		for _, s := range a.sources {
			if !synced[s.Name] {
				out = append(out, s.Name)
			}
		}
		return out
	}
	if len(a.sources) == 0 {
		flush()
		a.markReady()
		if once {
			return nil
		}
	}
	for {
		select {
		case <-ctx.Done():
			if once {
				return fmt.Errorf("sources not synced: %s: %w", a.describe(waiting()), ctx.Err())
			}
			return nil
		case u := <-updates:
			a.apply(u)
			synced[u.source] = true
			if len(synced) == len(a.sources) && !a.restoredAt.IsZero() {
				// Every source has spoken (perhaps after the saved state
				// was served): the state is current from now on.
				a.restoredAt = time.Time{}
				a.confirmed = true
			}
			if !a.ready.Load() {
				if len(synced) == len(a.sources) {
					// The first publication goes out at once: istiod is
					// waiting, unready, for its first reply.
					flush()
					if once {
						return nil
					}
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
				a.log.Warn("sources have not synced in time; serving the saved state",
					zap.Strings("waitingFor", waiting()), zap.Duration("serveAfter", a.state.ServeAfter))
				flush()
				a.markReady()
			}
		case req := <-a.allow:
			err := a.guard.Allow(req.source, req.id)
			if err == nil {
				flush()
			}
			req.done <- err
		}
	}
}

// describe names sources with their last error, for a failed render.
func (a *Adapter) describe(names []string) string {
	out := ""
	for i, name := range names {
		if i > 0 {
			out += ", "
		}
		out += name
		for _, s := range a.sources {
			if s.Name == name && s.Reporter != nil {
				out += " (" + s.Reporter.Status().LastError + ")"
			}
		}
	}
	return out
}

// AllowDeletions releases the change the mass-deletion guard holds for
// source under id (HeldChange.ID), as an operator decision.
func (a *Adapter) AllowDeletions(ctx context.Context, source, id string) error {
	req := allowRequest{source: source, id: id, done: make(chan error, 1)}
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
func (a *Adapter) Held() []HeldChange { return a.guard.Held() }

func (a *Adapter) markReady() {
	for _, p := range a.shards {
		p.MarkReady()
	}
	a.ready.Store(true)
	a.log.Info("every source synced; serving")
}

// apply stages a batch; flush commits it.
func (a *Adapter) apply(u update) {
	a.guard.Stage(u.source, u.groups, u.full, u.reset)
	a.metrics.updates.WithLabelValues(u.source).Inc()
}

// newAllocator builds the address allocator of opts. The configuration was
// validated before, so an error here only disables addresses, loudly: no
// registry address is served unchecked.
func newAllocator(opts convert.Options, log *zap.Logger) *vip.Allocator {
	cfg, err := opts.Addresses.Config()
	if err == nil {
		var a *vip.Allocator
		if a, err = vip.New(cfg); err == nil {
			return a
		}
	}
	if log != nil {
		log.Error("output.addresses is invalid; serving no addresses", zap.Error(err))
	}
	return nil
}
