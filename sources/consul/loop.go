package consul

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// watchKey identifies a watched service: a local one (peer "") or one
// imported from a cluster peer.
type watchKey struct{ peer, name string }

// scope is the model scope of the service: its name, or
// "peer/<peer>/<name>" for an imported one.
func (k watchKey) scope() string {
	if k.peer == "" {
		return k.name
	}
	return "peer/" + k.peer + "/" + k.name
}

// watch is one running health watch.
type watch struct {
	key      watchKey
	scope    string
	cancel   context.CancelFunc
	answered bool
	// nudge (buffered 1) asks the watch to read its service at once.
	nudge chan struct{}
	nodes []string // the nodes of its instances, last answer
}

// poke asks the watch to read its service at once (a feed showed a change).
func (w *watch) poke() bool {
	select {
	case w.nudge <- struct{}{}:
		return true
	default:
		return false // a read is already asked for
	}
}

// loop owns the source's state; only its goroutine touches it. Watchers send
// it events; it decides what to publish and sends batches on out.
type loop struct {
	s      *Source
	wg     *sync.WaitGroup
	out    chan<- []model.Group
	events chan event
	start  time.Time
	// crashed (buffered 1) carries a panic recovered on a goroutine of the
	// run (spawn).
	crashed chan error

	lists  map[string]map[string]bool // origin ("" or peer) -> selected names
	listed map[string]bool            // origins that answered once

	watches    map[watchKey]*watch
	unanswered int
	// nodeWatches: node -> local watches with an instance on it, for node
	// checks the checks feed reports.
	nodeWatches map[string]map[*watch]bool
	// stopFeed stops the checks feed (nil: not running).
	stopFeed context.CancelFunc

	desired   map[string]*model.Service  // scope -> mapped service (nil: nothing)
	published map[string]model.Group     // scope -> what downstream has (or will have)
	pending   map[string]model.Group     // scope -> not yet sent
	claims    map[string]map[string]bool // host -> scopes whose service has it

	initialSent  bool
	pendingSince time.Time
	failing      map[string]bool   // query ids whose last attempt failed
	filtered     map[string]bool   // query ids whose last answer was filtered by ACLs
	warned       map[string]string // scope -> host it lost a collision for (logged once)
	// rotating records that watches outnumber request slots (logged on change).
	rotating bool

	// config is what the config entries say (nil: none are read); mapped,
	// per scope, what of a service's mapping they may still change; dc, the
	// datacenter Consul reports, for the hosts of services routes go to.
	config *configState
	mapped map[string]mapped
	dc     string

	// bulkPending: the bulk first read has not answered yet; the service
	// lists that came meanwhile are held. seeds (by service name) and
	// seedIndex are its answer, until the first local service list has
	// started the watches.
	bulkPending bool
	held        []listEvent
	seeds       map[string][]*api.ServiceEntry
	seedIndex   uint64
	// feedSince is the bulk read's index while the first service list is
	// applied: a checks feed started then reports the checks changed since
	// the read, which its first answer would otherwise take as the baseline
	// (a watch waiting for its turn would see them only at its turn).
	feedSince uint64

	// reconciled, when not nil, counts the reconciles of each scope: tests
	// read it to prove what a change re-maps.
	reconciled map[string]int
}

// spawn runs f on a goroutine of the run. A panic in it (every goroutine
// of the source handles registry data) ends the run with the panic as its
// error, and the adapter restarts the source; the process and the other
// sources are not affected.
func (l *loop) spawn(what string, f func()) {
	l.wg.Go(func() {
		err := sources.Catch(what, func() error { f(); return nil })
		if err != nil {
			select {
			case l.crashed <- err:
			default: // the run is already ending
			}
		}
	})
}

// run is the loop's goroutine. It returns nil when ctx is done, or the
// panic a goroutine of the run recovered.
func (l *loop) run(ctx context.Context) error {
	for {
		var out chan<- []model.Group
		var batch []model.Group
		if l.ready() {
			out, batch = l.out, l.batch()
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-l.crashed:
			var pe *sources.PanicError
			if errors.As(err, &pe) {
				l.s.log.Error("recovered a panic in the Consul source; restarting it", zap.Error(err), zap.ByteString("stack", pe.Stack))
			}
			return err
		case ev := <-l.events:
			ev.apply(ctx, l)
			l.applyWaiting(ctx)
			l.flushConfig()
		case <-l.s.slots.flips:
			l.checkRotation(ctx)
		case out <- batch:
			l.sent(batch)
		}
	}
}

// maxCoalesce bounds the events applied in one go after the first.
const maxCoalesce = 64

// applyWaiting applies the events already waiting, up to maxCoalesce, so
// that what they change in the config entries is folded in once
// (flushConfig), not once per answer.
func (l *loop) applyWaiting(ctx context.Context) {
	if l.config == nil || !l.config.dirty.any() {
		return
	}
	for range maxCoalesce {
		select {
		case ev := <-l.events:
			ev.apply(ctx, l)
		default:
			return
		}
	}
}

// ready reports whether there is a batch to send: the complete initial state
// once every origin and every watched service answered, then changes.
func (l *loop) ready() bool {
	if l.initialSent {
		return len(l.pending) > 0
	}
	if !l.listed[""] || l.unanswered > 0 || !l.config.ready() {
		return false
	}
	for _, p := range l.s.cfg.Peers {
		if !l.listed[p] {
			return false
		}
	}
	return true
}

func (l *loop) batch() []model.Group {
	batch := make([]model.Group, 0, len(l.pending))
	for _, scope := range slices.Sorted(maps.Keys(l.pending)) {
		g := l.pending[scope]
		if !l.initialSent && len(g.Services) == 0 {
			continue // the initial state lists what exists
		}
		batch = append(batch, g)
	}
	return batch
}

func (l *loop) sent(batch []model.Group) {
	took := time.Since(l.pendingSince)
	if !l.initialSent {
		took = time.Since(l.start)
		l.s.log.Info("Consul source synced", zap.Int("services", len(l.published)), zap.Duration("took", took))
	}
	l.initialSent = true
	clear(l.pending)
	l.synced(took)
}

// synced reports the totals to the Reporter, unless a query is failing (the
// source is then stale until it recovers).
func (l *loop) synced(took time.Duration) {
	if len(l.failing) > 0 || !l.initialSent {
		return
	}
	services, instances := 0, 0
	for _, g := range l.published {
		for _, svc := range g.Services {
			services++
			instances += len(svc.Instances)
		}
	}
	l.s.reporter.Synced(took, services, instances)
}

func (ev okEvent) apply(_ context.Context, l *loop) { l.recovered(ev.id) }

func listID(origin string) string {
	if origin == "" {
		return "catalog"
	}
	return "peer/" + origin
}

func (ev listEvent) apply(ctx context.Context, l *loop) {
	if l.bulkPending {
		l.held = append(l.held, ev)
		return
	}
	id := listID(ev.origin)
	l.recovered(id)
	log := l.s.log.With(zap.String("query", id))
	if ev.filtered {
		l.s.metrics.aclFiltered.WithLabelValues("catalog").Inc()
		if !l.filtered[id] {
			log.Warn("Consul filtered the service list by ACLs: the token lacks service:read or node:read on some services "+
				"(the minimal policy is service_prefix \"\" and node_prefix \"\" with policy read)",
				zap.Int("visible", len(ev.names)))
		}
		l.filtered[id] = true
	} else if l.filtered[id] {
		log.Info("Consul no longer filters the service list by ACLs")
		delete(l.filtered, id)
	}
	if ev.filtered && len(ev.names) == 0 && len(l.lists[ev.origin]) > 0 {
		// A token without node:read sees an empty catalog: that is not every
		// service being deregistered.
		log.Warn("ignoring an empty service list filtered by ACLs; keeping the current services",
			zap.Int("services", len(l.lists[ev.origin])))
		return
	}
	l.listed[ev.origin] = true
	old := l.lists[ev.origin]
	l.lists[ev.origin] = ev.names
	for _, name := range slices.Sorted(maps.Keys(ev.names)) {
		if !old[name] {
			l.startWatch(ctx, watchKey{peer: ev.origin, name: name})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(old)) {
		if !ev.names[name] {
			l.stopWatch(watchKey{peer: ev.origin, name: name})
		}
	}
	if ev.origin == "" {
		// The bulk read's seeds are the first state only: a service
		// listed later is read.
		l.seeds = nil
	}
	for _, name := range ev.changed {
		l.poke(watchKey{peer: ev.origin, name: name}, "catalog")
	}
	l.checkRotation(ctx)
	if ev.origin == "" {
		l.feedSince = 0
	}
}

// poke asks a watch to read its service at once, when it is waiting for its
// turn (a watch with a blocking query of its own sees the change itself).
func (l *loop) poke(key watchKey, feed string) {
	if w := l.watches[key]; w != nil && l.rotating && w.poke() {
		l.s.metrics.feedChanges.WithLabelValues(feed).Inc()
	}
}

func (ev changedEvent) apply(_ context.Context, l *loop) {
	for _, name := range ev.services {
		l.poke(watchKey{name: name}, "checks")
	}
	for _, node := range ev.nodes {
		for w := range l.nodeWatches[node] {
			l.poke(w.key, "checks")
		}
	}
}

// checkRotation follows whether watches outnumber the blocking queries that
// can be in flight: maxStreams over HTTP/2, maxConcurrentQueries over
// HTTP/1.1, each less the feeds' and reads' share. Watches then take turns,
// and the checks feed runs: a check or catalog change makes its service read
// at once; a registration change that moves no check and no tag (an address,
// port or meta change) is seen at its watch's turn, up to one wait later. The
// operator is told once.
func (l *loop) checkRotation(ctx context.Context) {
	watched, capacity := len(l.watches), l.s.slots.blockingCapacity()
	h2 := l.s.slots.http2()
	rotating := watched > capacity
	l.s.metrics.slotsShort.Set(float64(max(watched-capacity, 0)))
	wantFeed := rotating && l.s.slots.feedsPossible()
	if wantFeed && l.stopFeed == nil {
		fctx, cancel := context.WithCancel(ctx)
		l.stopFeed = cancel
		since := l.feedSince
		l.spawn("the Consul checks feed", func() { l.s.watchChecks(fctx, since, l.events) })
	} else if !wantFeed && l.stopFeed != nil {
		l.stopFeed()
		l.stopFeed = nil
	}
	if rotating == l.rotating {
		return
	}
	l.rotating = rotating
	switch {
	case rotating && h2:
		l.s.log.Warn("more services than maxStreams (HTTP/2): watches take turns. Check and tag changes are still read "+
			"at once through the checks and catalog feeds, but a change that moves neither (a new address, port or "+
			"meta with the same checks) waits for its watch's turn, up to one wait. To remove this, "+
			"raise maxStreams above the service count (Consul serves 250 streams per connection and allows "+
			"limits.http_max_conns_per_client, 200 by default, connections per client IP: the default of 45,000 "+
			"streams is about what that allows; past it, raise that limit too)",
			zap.Int("services", watched), zap.Int("maxStreams", capacity), zap.Duration("wait", l.s.cfg.Wait))
	case rotating:
		l.s.log.Warn("more services than Consul connections (maxConcurrentQueries, HTTP/1.1): watches take turns. "+
			"Check changes (health, instances with checks coming and going) and tag changes are still read at once "+
			"through the checks and catalog feeds, but a change that moves neither (a new address, port or meta "+
			"with the same checks) waits for its watch's turn, up to one wait. To remove this, use Consul's HTTPS "+
			"listener (HTTP/2: every service gets its own stream), or raise maxConcurrentQueries above the service "+
			"count and Consul's limits.http_max_conns_per_client to match",
			zap.Int("services", watched), zap.Int("blockingQueries", capacity), zap.Duration("wait", l.s.cfg.Wait))
	default:
		l.s.log.Info("every watched service has a blocking query of its own again", zap.Int("services", watched),
			zap.Int("blockingQueries", capacity), zap.Bool("http2", h2))
	}
}

func (l *loop) startWatch(ctx context.Context, key watchKey) {
	ctx, cancel := context.WithCancel(ctx)
	w := &watch{key: key, scope: key.scope(), cancel: cancel, nudge: make(chan struct{}, 1)}
	l.watches[key] = w
	l.unanswered++
	l.s.watched.Add(1)
	l.s.metrics.watches.Inc()
	var sd *seed
	if es, ok := l.seeds[key.name]; ok && key.peer == "" {
		sd = &seed{entries: es, index: l.seedIndex}
	}
	l.spawn(fmt.Sprintf("the health watch of Consul service %q", w.scope), func() { l.s.watchHealth(ctx, w, sd, l.events) })
}

// setNodes records the nodes of a local watch's instances.
func (l *loop) setNodes(w *watch, nodes []string) {
	if w.key.peer != "" || slices.Equal(w.nodes, nodes) {
		return
	}
	for _, n := range w.nodes {
		delete(l.nodeWatches[n], w)
		if len(l.nodeWatches[n]) == 0 {
			delete(l.nodeWatches, n)
		}
	}
	w.nodes = nodes
	for _, n := range nodes {
		if l.nodeWatches[n] == nil {
			l.nodeWatches[n] = map[*watch]bool{}
		}
		l.nodeWatches[n][w] = true
	}
}

func (l *loop) stopWatch(key watchKey) {
	w := l.watches[key]
	if w == nil {
		return
	}
	w.cancel()
	delete(l.watches, key)
	if !w.answered {
		l.unanswered--
	}
	l.s.watched.Add(-1)
	l.s.metrics.watches.Dec()
	l.setNodes(w, nil)
	id := "health/" + w.scope
	delete(l.filtered, id)
	delete(l.warned, w.scope)
	l.recovered(id)
	l.s.log.Debug("service deregistered", zap.String("service", w.scope))
	delete(l.mapped, w.scope)
	l.setDesired(w.scope, nil)
}

func (ev healthEvent) apply(_ context.Context, l *loop) {
	w := ev.w
	if l.watches[w.key] != w {
		return // from a watch stopped meanwhile
	}
	id := "health/" + w.scope
	if !w.answered {
		// Answered, even by a panic: one service must not hold the
		// source's first state.
		w.answered = true
		l.unanswered--
	}
	if ev.panicked != nil {
		// The service keeps what it had; its next answer maps it again.
		l.fail(id, "panic", ev.panicked)
		return
	}
	l.setNodes(w, ev.nodes)
	l.recovered(id)
	log := l.s.log.With(zap.String("service", w.scope))
	if ev.filtered {
		l.s.metrics.aclFiltered.WithLabelValues("health").Inc()
		if !l.filtered[id] {
			log.Warn("Consul filtered the service's instances by ACLs: the token lacks node:read or service:read")
		}
		l.filtered[id] = true
		if ev.empty {
			if l.desired[w.scope] != nil {
				log.Warn("ignoring an empty instance list filtered by ACLs; keeping the current instances")
			}
			return
		}
	} else {
		delete(l.filtered, id)
	}
	for _, is := range ev.res.issues {
		l.s.metrics.invalid.WithLabelValues(is.reason).Inc()
		l.s.warn(log, "invalid Consul data: "+is.message, zap.String("reason", is.reason))
	}
	if ev.res.dc != "" && l.dc == "" {
		l.dc = ev.res.dc
		if l.config != nil && l.s.cfg.ConfigEntries.TrafficPolicy {
			// Hosts of other datacenters' services are told apart by it:
			// every chain again, every service (flushConfig).
			l.config.dirty.allChains, l.config.dirty.allScopes = true, true
		}
	}
	svc := ev.res.svc
	if svc != nil {
		l.mapped[w.scope] = mapped{defaulted: ev.res.defaulted, tags: ev.res.tags}
	}
	if ev.res.invalid {
		l.s.warn(log, "service skipped: it cannot be mapped")
	} else if svc == nil {
		if prev := l.desired[w.scope]; prev != nil {
			// No eligible instance left: keep the service, without endpoints.
			cp := *prev
			cp.Instances = nil
			svc = &cp
		}
	}
	l.setDesired(w.scope, svc)
}

func (ev errEvent) apply(_ context.Context, l *loop) { l.fail(ev.id, ev.kind, ev.err) }

// fail records that the query id failed (or its answer could not be
// mapped): the source keeps its last state and is stale until it works.
func (l *loop) fail(id, kind string, err error) {
	log := l.s.log.With(zap.String("query", id), zap.String("kind", kind), zap.Error(err))
	switch {
	case kind == "panic":
		var pe *sources.PanicError
		if errors.As(err, &pe) {
			log = log.With(zap.ByteString("stack", pe.Stack))
		}
		l.s.warn(log, "recovered a panic mapping a Consul answer; keeping the service's last state")
	case l.failing[id]:
		log.Debug("Consul query failed again")
	case kind == "unsupported":
		log.Error("Consul rejected the query (configuration); keeping the last state and retrying with backoff")
	default:
		// Within the warning budget: with Consul down (or answering
		// garbage), every watch fails at once.
		l.s.warn(log, "Consul query failed; keeping the last state and retrying with backoff")
	}
	l.failing[id] = true
	l.s.reporter.Failed(kind, err)
}

func (l *loop) recovered(id string) {
	if !l.failing[id] {
		return
	}
	delete(l.failing, id)
	l.s.log.Info("Consul query works again", zap.String("query", id))
	if len(l.failing) == 0 {
		l.synced(0)
	}
}

// setDesired records the mapped service of a scope and reconciles every
// scope whose publication may change: the scope itself and the scopes that
// share its old or new host (within one source, one host has one owner, see
// owner).
func (l *loop) setDesired(scope string, svc *model.Service) {
	affected := map[string]bool{scope: true}
	if old := l.desired[scope]; old != nil {
		delete(l.claims[old.Host], scope)
		for s := range l.claims[old.Host] {
			affected[s] = true
		}
		if len(l.claims[old.Host]) == 0 {
			delete(l.claims, old.Host)
		}
	}
	if svc == nil {
		delete(l.desired, scope)
	} else {
		l.desired[scope] = svc
		if l.claims[svc.Host] == nil {
			l.claims[svc.Host] = map[string]bool{}
		}
		l.claims[svc.Host][scope] = true
		for s := range l.claims[svc.Host] {
			affected[s] = true
		}
	}
	for _, s := range slices.Sorted(maps.Keys(affected)) {
		l.reconcile(s)
	}
}

func (l *loop) reconcile(scope string) {
	if l.reconciled != nil {
		l.reconciled[scope]++
	}
	g := model.Group{Scope: scope}
	if svc := l.desired[scope]; svc != nil {
		owner := l.owner(svc.Host)
		if owner == scope {
			g.Services = []model.Service{l.decorate(scope, *svc)}
			delete(l.warned, scope)
		} else if l.warned[scope] != svc.Host {
			l.warned[scope] = svc.Host
			l.s.metrics.invalid.WithLabelValues("collision").Inc()
			l.s.warn(l.s.log, "service skipped: its host is already the host of another service of this source",
				zap.String("service", scope), zap.String("host", svc.Host), zap.String("owner", owner))
		}
	}
	prev, had := l.published[scope]
	if len(g.Services) == 0 {
		if had {
			delete(l.published, scope)
			l.markPending(g)
		}
		return
	}
	if had && prev.Equal(g) {
		// A saving, not the guarantee (which is the content version of
		// what is served): no batch, no debounce window.
		return
	}
	l.published[scope] = g
	l.markPending(g)
}

// owner is the scope that publishes a host several services of the source
// map to: a service whose name is the host's own spelling (it is unchanged
// by sanitizing: "web") before the ones that sanitizing had to change
// ("Web", "-web", "web_"), then the smallest scope. So a registrant cannot
// take a well-formed service's host over by registering a variant of its
// name, and the choice does not depend on which answer came first.
func (l *loop) owner(host string) string {
	var best string
	bestCanonical := false
	for scope := range l.claims[host] {
		canonical := l.canonical(scope)
		if best == "" || (canonical && !bestCanonical) || (canonical == bestCanonical && scope < best) {
			best, bestCanonical = scope, canonical
		}
	}
	return best
}

// canonical reports whether the Consul name of the scope's service is
// already a valid host label sequence, as sanitizing would leave it.
func (l *loop) canonical(scope string) bool {
	svc := l.desired[scope]
	if svc == nil {
		return false
	}
	clean, err := model.SanitizeHost(svc.Name)
	return err == nil && clean == svc.Name
}

func (l *loop) markPending(g model.Group) {
	if len(l.pending) == 0 {
		l.pendingSince = time.Now()
	}
	l.pending[g.Scope] = g
}
