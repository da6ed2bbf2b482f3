// Package adapter wires sources to the server: it keeps what every source
// reported (the store), converts the hosts that changed, diffs them against
// what was published, and hands only the differences to the server's cache,
// once per debounce window.
package adapter

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

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

// Adapter is the loop between sources and the server.
type Adapter struct {
	log      *zap.Logger
	opts     convert.Options
	debounce DebounceConfig
	sources  []NamedSource
	pub      Publisher
	metrics  *Metrics
	// restartBackoff bounds how fast a crashed source is restarted.
	restartBackoff time.Duration

	ready atomic.Bool

	// Owned by Run.
	store     *Store
	published *Published
}

// New returns an adapter. metrics may be nil.
func New(srcs []NamedSource, opts convert.Options, debounce DebounceConfig, pub Publisher, m *Metrics, log *zap.Logger) *Adapter {
	names := make([]string, len(srcs))
	for i, s := range srcs {
		names[i] = s.Name
	}
	return &Adapter{
		log: log, opts: opts, debounce: debounce, sources: srcs, pub: pub, metrics: m,
		restartBackoff: time.Second,
		store:          NewStore(names),
		published:      NewPublished(),
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

	if len(a.sources) == 0 {
		a.flush()
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
					a.flush()
					a.markReady()
				}
				continue
			}
			due := deb.change(time.Now())
			timer.Reset(time.Until(due))
		case <-timer.C:
			if deb.open() {
				deb.close()
				a.flush()
			}
		}
	}
}

func (a *Adapter) markReady() {
	a.pub.MarkReady()
	a.ready.Store(true)
	a.log.Info("every source synced; serving")
}

func (a *Adapter) apply(u update) {
	if u.full {
		a.store.Replace(u.source, u.groups)
	} else {
		a.store.Update(u.source, u.groups)
	}
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
// hands the differences to the publisher.
func (a *Adapter) flush() {
	start := time.Now()
	hosts := a.store.TakeDirty()
	upserts := make(map[convert.Kind][]server.Entry)
	deletes := make(map[convert.Kind][]string)
	for _, host := range hosts {
		desired, rejected := convert.Service(host, a.store.Contributions(host), a.opts)
		a.reportRejections(rejected)
		for kind, change := range a.published.Diff(host, desired) {
			for _, r := range change.Upserts {
				anyRes, err := r.Any()
				if err != nil {
					a.log.Error("cannot serialize resource; leaving it out", zap.Error(err))
					desired = without(desired, r)
					continue
				}
				upserts[kind] = append(upserts[kind], server.Entry{Name: r.Key(), Version: r.Version, Resource: anyRes})
			}
			deletes[kind] = append(deletes[kind], change.Deletes...)
		}
		a.published.Commit(host, desired)
	}
	fields := []zap.Field{zap.Int("hostsChanged", len(hosts))}
	changed := false
	for _, kind := range convert.Kinds {
		u, d := upserts[kind], deletes[kind]
		if len(u) == 0 && len(d) == 0 {
			continue
		}
		changed = a.pub.Apply(kind, u, d) || changed
		fields = append(fields, zap.Int(string(kind)+"Upserts", len(u)), zap.Int(string(kind)+"Deletes", len(d)))
		if a.metrics != nil {
			a.metrics.applied.WithLabelValues(string(kind), "upsert").Add(float64(len(u)))
			a.metrics.applied.WithLabelValues(string(kind), "delete").Add(float64(len(d)))
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
