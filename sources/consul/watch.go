package consul

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/sources"
)

// Events from the watchers to the loop. Each applies itself to the loop's
// state, on the loop's goroutine.
type event interface {
	apply(ctx context.Context, l *loop)
}

type (
	// listEvent is a new list of service names from the catalog (origin "")
	// or from a peering (origin = peer name). changed names the services
	// whose tags changed (an instance of them was registered or changed).
	listEvent struct {
		origin   string
		names    map[string]bool
		changed  []string
		filtered bool // X-Consul-Results-Filtered-By-ACLs
	}
	// healthEvent is a changed health answer of one watched service.
	healthEvent struct {
		w        *watch
		res      mapResult
		nodes    []string // the nodes of its instances
		empty    bool     // the answer had no entries at all
		filtered bool     // X-Consul-Results-Filtered-By-ACLs
		// panicked: mapping the answer panicked (a *sources.PanicError);
		// nothing else is set.
		panicked error
	}
	// changedEvent names services whose checks changed (from the checks
	// feed): services by name, and nodes whose node checks changed.
	changedEvent struct {
		services []string
		nodes    []string
	}
	// errEvent reports a failed query; okEvent, that a failing query works again.
	errEvent struct {
		id   string
		kind string
		err  error
	}
	okEvent struct{ id string }
)

func send(ctx context.Context, ch chan<- event, ev event) bool {
	select {
	case ch <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// sleep waits d or until ctx is done; it reports false in the latter case.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// backoff is the delay after the n-th consecutive failure: exponential from
// BackoffMin to BackoffMax, with "equal jitter" (half fixed, half random).
func (s *Source) backoff(n int) time.Duration {
	d := s.cfg.BackoffMin
	for i := 1; i < n && d < s.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.BackoffMax)
	return d/2 + rand.N(d/2+1)
}

// waitTime is the wait of the next blocking query. When there are more
// watches than request slots, watches take turns: the wait shrinks so that
// every watch gets a slot within about one configured wait (the request rate
// to Consul stays that of every watch blocking for the full wait).
func (s *Source) waitTime(c class) time.Duration {
	w := s.cfg.Wait
	slots := int64(s.slots.blockingCapacity())
	// A feed blocks for the full wait: it returns when anything changes, and
	// the checks feed's answer is large. A config entry watch does too while
	// it has a slot of its own; in one shared pool it takes turns.
	turns := c == classBlocking || c == classConfig && !s.slots.feedsPossible()
	if n := s.watched.Load() + 1; n > slots && turns {
		w = max(time.Duration(int64(w)*slots/n), time.Second)
	}
	if j := s.cfg.WaitJitter; j > 0 {
		w -= time.Duration(rand.Float64() * j * float64(w))
	}
	return w
}

// queryError is a failed request with its kind (the metric and Reporter
// label). Its message has no ACL token in it.
type queryError struct {
	kind string
	err  error
}

func (e *queryError) Error() string { return e.err.Error() }
func (e *queryError) Unwrap() error { return e.err }

// classify names the kind of a request error.
func classify(err error) string {
	var se api.StatusError
	if errors.As(err, &se) {
		switch {
		case se.Code == http.StatusForbidden || se.Code == http.StatusUnauthorized:
			return "acl"
		case se.Code == http.StatusTooManyRequests:
			return "throttled"
		case se.Code == http.StatusBadRequest && isEnterpriseOnly(se.Body):
			return "unsupported"
		case se.Code == http.StatusNotFound:
			return "notfound"
		case se.Code >= 500:
			return "server"
		default:
			return "request"
		}
	}
	var se2 *json.SyntaxError
	var te *json.UnmarshalTypeError
	var ne net.Error
	var large *tooLargeError
	var redirect *redirectError
	switch {
	case errors.As(err, &large):
		return "toolarge"
	case errors.As(err, &redirect):
		return "redirect"
	case errors.As(err, &se2), errors.As(err, &te):
		return "decode"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "unreachable"
}

func isEnterpriseOnly(body string) bool {
	b := strings.ToLower(body)
	return strings.Contains(b, "enterprise") || strings.Contains(b, "namespace") || strings.Contains(b, "partition")
}

// queryOptions are the options every request carries.
func (s *Source) queryOptions(token string, index uint64) *api.QueryOptions {
	return &api.QueryOptions{
		Datacenter: s.cfg.Datacenter,
		Namespace:  s.cfg.Namespace,
		Partition:  s.cfg.Partition,
		AllowStale: s.cfg.Stale,
		UseCache:   s.cfg.Cached,
		Token:      token,
		WaitIndex:  index,
	}
}

// request is one request to Consul.
type request struct {
	endpoint string
	// index > 0 makes a blocking query.
	index uint64
	class class
	// nudge, when it fires, cuts a wait for a slot short: a feed showed the
	// service changed, and it is to be read at once. (A watch whose blocking
	// query is in flight sees its service's change itself.)
	nudge <-chan struct{}
	// token, when set, replaces the source's token (a login sends none).
	token *string
	fetch func(q *api.QueryOptions) (*api.QueryMeta, error)
}

// answer is what do returns besides an error.
type answer struct {
	meta *api.QueryMeta
	wait time.Duration // the wait the blocking query asked for
	// retry: the epoch ended meanwhile (ACL token changed, Consul restored);
	// the answer, or the error, is discarded and the query is to be
	// re-issued as a non-blocking read.
	retry bool
	// nudged: the nudge fired while waiting for a slot; the query is to be
	// re-issued as a non-blocking read.
	nudged bool
}

// do performs one request, holding a request slot.
func (s *Source) do(ctx context.Context, r request) (answer, error) {
	epoch := s.epoch().current()
	token := s.tokens.get()
	if r.token != nil {
		token = *r.token
	}
	release, nudged, err := s.slots.acquire(ctx, r.class, r.nudge)
	switch {
	case err != nil:
		return answer{}, err
	case nudged:
		return answer{nudged: true}, nil
	}
	defer release()

	q := s.queryOptions(token, r.index)
	timeout := s.cfg.RequestTimeout
	if r.index > 0 {
		q.WaitTime = s.waitTime(r.class)
		timeout += q.WaitTime + q.WaitTime/16 // Consul adds up to wait/16 of jitter
	}
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stop := context.AfterFunc(epoch, cancel)
	defer stop()
	meta, err := r.fetch(q.WithContext(qctx))
	switch {
	case ctx.Err() != nil:
		return answer{}, ctx.Err()
	case epoch.Err() != nil:
		return answer{retry: true}, nil
	case err != nil:
		kind := classify(err)
		s.metrics.requests.WithLabelValues(r.endpoint, kind).Inc()
		if kind == "acl" && r.token == nil && s.refused != nil {
			select {
			case s.refused <- token: // log in again, unless already done for this token
			default:
			}
		}
		err = s.tokens.redactErr(err)
		if kind == "unsupported" {
			err = fmt.Errorf("namespace %q / partition %q need Consul Enterprise: %w", s.cfg.Namespace, s.cfg.Partition, err)
		}
		return answer{}, &queryError{kind: kind, err: err}
	case meta == nil:
		return answer{}, &queryError{kind: "decode", err: errors.New("no query metadata in Consul's answer")}
	}
	s.metrics.requests.WithLabelValues(r.endpoint, "ok").Inc()
	return answer{meta: meta, wait: q.WaitTime}, nil
}

// watchSpec is what a blocking loop watches.
type watchSpec struct {
	id, endpoint string
	// class of its blocking queries; a watch's non-blocking reads are
	// classRead (a feed keeps classFeed for both).
	class class
	nudge <-chan struct{}
	fetch func(q *api.QueryOptions) (*api.QueryMeta, error)
	// handle gets every answer; force is set for the first answer and for
	// the first after an error, a retry or an index reset, which must be
	// delivered even if it looks unchanged. It returns false when ctx is done.
	handle func(meta *api.QueryMeta, force bool) bool
	// onReset is called when the index went backwards.
	onReset func()
	// seedIndex, when set, is the index of an answer given to handle
	// before the loop (the bulk first read): the first query blocks on it.
	// It is the catalog's index, not this query's own: an answer below it
	// is no reset.
	seedIndex uint64
}

// blockingLoop runs sp.fetch as blocking queries until ctx is done, carrying
// X-Consul-Index forward.
func (s *Source) blockingLoop(ctx context.Context, events chan<- event, sp watchSpec) {
	var (
		index    uint64 // the last index seen (0: none yet)
		block    bool   // whether the next query blocks on index
		failures int
		last     time.Time
		force    = true
		// own: index came from this query's own answers (not a seed), so
		// an answer below it is a reset.
		own = true
	)
	if sp.seedIndex > 0 {
		index, block, force, own = sp.seedIndex, true, false, false
	}
	for {
		// A read a feed asked for skips the interval: the feeds are
		// rate-limited themselves.
		if !last.IsZero() && block {
			if d := s.cfg.MinQueryInterval - time.Since(last); d > 0 {
				ok, nudged := sleepOrNudge(ctx, d, sp.nudge)
				if !ok {
					return
				}
				if nudged {
					block = false
				}
			}
		}
		last = time.Now()
		r := request{endpoint: sp.endpoint, class: sp.class, nudge: sp.nudge, fetch: sp.fetch}
		if block {
			r.index = index
		} else if r.class == classBlocking {
			r.class = classRead
		}
		ans, err := s.do(ctx, r)
		switch {
		case ctx.Err() != nil:
			return
		case ans.retry:
			block, force = false, true
			continue
		case ans.nudged:
			block = false
			continue
		case err != nil:
			failures++
			var qe *queryError
			kind := "unreachable"
			if errors.As(err, &qe) {
				kind = qe.kind
			}
			if !send(ctx, events, errEvent{id: sp.id, kind: kind, err: err}) {
				return
			}
			// After an error the next query does not block: it re-reads the
			// current state, whatever happened to Consul meanwhile.
			block, force = false, true
			if !sleep(ctx, s.backoff(failures)) {
				return
			}
			continue
		}
		meta := ans.meta
		if failures > 0 {
			failures = 0
			if !send(ctx, events, okEvent{id: sp.id}) {
				return
			}
		}
		s.log.Debug("answer", zap.String("query", sp.id), zap.Uint64("sent", r.index), zap.Uint64("got", meta.LastIndex),
			zap.Duration("took", time.Since(last)), zap.String("backend", meta.QueryBackend))
		reset := own && index > 0 && meta.LastIndex < index
		own = true
		if reset {
			s.metrics.indexResets.WithLabelValues(sp.endpoint).Inc()
			s.log.Info("Consul index went backwards (Consul restored or replaced); re-reading",
				zap.String("query", sp.id), zap.Uint64("previous", index), zap.Uint64("index", meta.LastIndex))
			force = true
			// Before the answer goes out: the guard must know it follows a reset.
			s.reporter.RegistryReset()
		}
		if !sp.handle(meta, force) {
			return
		}
		if reset && sp.onReset != nil {
			sp.onReset()
		}
		// An answer to a blocking query that comes back early with the same
		// index is no change, but a wake-up: Consul was restored or lost its
		// leader. Re-read without blocking, which shows a reset index.
		early := r.index > 0 && meta.LastIndex == r.index && time.Since(last) < ans.wait/2
		force = false
		block = !early
		index = max(meta.LastIndex, 1) // never block on index 0, which does not block
	}
}

// sleepOrNudge is sleep, cut short by a nudge (nudged).
func sleepOrNudge(ctx context.Context, d time.Duration, nudge <-chan struct{}) (ok, nudged bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true, false
	case <-nudge:
		return true, true
	case <-ctx.Done():
		return false, false
	}
}

// catalogFilter is the server-side filter of the catalog query: no Connect
// proxies or gateways, no consul-k8s synced services, the required tags.
func catalogFilter(c *Config) string {
	parts := []string{`ServiceKind == ""`}
	if !c.IncludeKubernetesSynced {
		parts = append(parts, `ServiceMeta[`+quote(externalSourceMeta)+`] != "kubernetes"`)
	}
	for _, t := range c.RequiredTags {
		parts = append(parts, quote(t)+` in ServiceTags`)
	}
	return strings.Join(parts, " and ")
}

// watchCatalog watches the list of service names. Its index moves on every
// registration change, but it tells only which names exist and their tags:
// services whose tags changed are reported as changed.
func (s *Source) watchCatalog(ctx context.Context, events chan<- event) {
	var (
		svcs         map[string][]string
		last         map[string]bool
		lastTags     map[string][]string
		lastFiltered bool
	)
	fetch := func(q *api.QueryOptions) (*api.QueryMeta, error) {
		f := s.catalogFilter.Load()
		q.Filter = *f
		var meta *api.QueryMeta
		var err error
		svcs, meta, err = s.client.Catalog().Services(q)
		var se api.StatusError
		if err != nil && *f != "" && errors.As(err, &se) && se.Code == http.StatusBadRequest &&
			isFilterError(se.Body) {
			// An agent that cannot evaluate the filter: filter client-side only.
			empty := ""
			s.catalogFilter.CompareAndSwap(f, &empty)
			s.log.Warn("Consul rejected the catalog filter; filtering client-side only", zap.String("filter", *f), zap.Error(err))
		}
		return meta, err
	}
	s.blockingLoop(ctx, events, watchSpec{
		id: "catalog", endpoint: "catalog", class: classFeed, fetch: fetch,
		handle: func(meta *api.QueryMeta, force bool) bool {
			names := map[string]bool{}
			tags := map[string][]string{}
			var changed []string
			for n, t := range svcs {
				if !s.cfg.selected(n) {
					continue
				}
				names[n] = true
				slices.Sort(t)
				tags[n] = slices.Compact(t)
				if old, ok := lastTags[n]; ok && !slices.Equal(old, tags[n]) {
					changed = append(changed, n)
				}
			}
			lastTags = tags
			if !force && len(changed) == 0 && maps.Equal(names, last) && meta.ResultsFilteredByACLs == lastFiltered {
				return true
			}
			last, lastFiltered = names, meta.ResultsFilteredByACLs
			return send(ctx, events, listEvent{names: names, changed: changed, filtered: meta.ResultsFilteredByACLs})
		},
		// When the catalog index goes backwards, every health watch re-reads.
		onReset: func() { s.epoch().bump() },
	})
}

// watchChecks is the checks feed: one blocking query on every check of the
// datacenter (/v1/health/state/any). It runs while there are more services
// than blocking queries over HTTP/1.1; a check that changed, appeared or went
// names its service (or, for a node check, its node), which the loop reads at
// once instead of at its watch's turn. Nothing is derived from this answer
// beyond which services to read.
//
// since, when set, is the index of the bulk first read: the first answer
// reports the checks modified after it (the services were seeded before the
// feed's baseline), instead of being only the baseline.
func (s *Source) watchChecks(ctx context.Context, since uint64, events chan<- event) {
	type checkKey struct{ node, id string }
	type checkSig struct {
		service string
		index   uint64
	}
	var (
		checks api.HealthChecks
		last   map[checkKey]checkSig
	)
	fetch := func(q *api.QueryOptions) (*api.QueryMeta, error) {
		q.UseCache = false
		var meta *api.QueryMeta
		var err error
		checks, meta, err = s.client.Health().State(api.HealthAny, q)
		return meta, err
	}
	s.blockingLoop(ctx, events, watchSpec{
		id: "checks", endpoint: "checks", class: classFeed, fetch: fetch,
		handle: func(_ *api.QueryMeta, _ bool) bool {
			cur := make(map[checkKey]checkSig, len(checks))
			services, nodes := map[string]bool{}, map[string]bool{}
			note := func(c checkSig, node string) {
				if c.service == "" {
					nodes[node] = true
				} else {
					services[c.service] = true
				}
			}
			for _, c := range checks {
				k := checkKey{c.Node, c.CheckID}
				sig := checkSig{service: c.ServiceName, index: c.ModifyIndex}
				cur[k] = sig
				if last == nil && since > 0 && c.ModifyIndex > since {
					note(sig, c.Node)
				}
				if old, ok := last[k]; last != nil && (!ok || old != sig) {
					note(sig, c.Node)
					if ok && old.service != sig.service {
						note(old, c.Node)
					}
				}
			}
			for k, old := range last {
				if _, ok := cur[k]; !ok {
					note(old, k.node)
				}
			}
			first := last == nil
			last = cur
			if (first && since == 0) || len(services)+len(nodes) == 0 {
				return true // the first answer is the baseline
			}
			return send(ctx, events, changedEvent{
				services: slices.Sorted(maps.Keys(services)),
				nodes:    slices.Sorted(maps.Keys(nodes)),
			})
		},
	})
}

// seed is a service's first answer from the bulk first read, and the index
// its blocking query starts from.
type seed struct {
	entries []*api.ServiceEntry
	index   uint64
}

// watchHealth watches the instances and checks of one service, from its
// seed when it has one (the bulk first read).
func (s *Source) watchHealth(ctx context.Context, w *watch, sd *seed, events chan<- event) {
	var (
		entries []*api.ServiceEntry
		last    *healthEvent
	)
	fetch := func(q *api.QueryOptions) (*api.QueryMeta, error) {
		q.Peer = w.key.peer
		if q.WaitIndex == 0 {
			// A read a feed asked for must show the change: not the agent's
			// cache, which may lag.
			q.UseCache = false
		}
		var meta *api.QueryMeta
		var err error
		entries, meta, err = s.client.Health().ServiceMultipleTags(w.key.name, s.cfg.RequiredTags, false, q)
		if err == nil && len(entries) == 0 && meta != nil && meta.QueryBackend == "streaming" {
			// The streaming backend (blocking health queries, ?cached) never
			// sets X-Consul-Results-Filtered-By-ACLs: an empty answer may be a
			// token that lost node:read. Confirm it with a non-streaming read,
			// which says so.
			q.WaitIndex, q.WaitTime, q.UseCache = 0, 0, false
			entries, meta, err = s.client.Health().ServiceMultipleTags(w.key.name, s.cfg.RequiredTags, false, q)
		}
		return meta, err
	}
	sp := watchSpec{
		id: "health/" + w.scope, endpoint: "health", class: classBlocking, nudge: w.nudge, fetch: fetch,
		handle: func(meta *api.QueryMeta, force bool) bool {
			var ev healthEvent
			err := sources.Catch(fmt.Sprintf("mapping Consul service %q", w.scope), func() error {
				entries := ownEntries(w.key.name, entries)
				nodes := map[string]bool{}
				for _, e := range entries {
					if e.Node != nil {
						nodes[e.Node.Node] = true
					}
				}
				ev = healthEvent{
					w:        w,
					res:      s.mapper.mapService(w.key.name, w.key.peer, entries),
					nodes:    slices.Sorted(maps.Keys(nodes)),
					empty:    len(entries) == 0,
					filtered: meta.ResultsFilteredByACLs,
				}
				return nil
			})
			if err != nil {
				// The watch goes on blocking on the answer's index: the
				// next change is mapped again.
				last = nil
				return send(ctx, events, healthEvent{w: w, panicked: err})
			}
			if !force && last != nil && reflect.DeepEqual(*last, ev) {
				return true
			}
			last = &ev
			return send(ctx, events, ev)
		},
	}
	if sd != nil {
		entries = sd.entries
		if !sp.handle(&api.QueryMeta{LastIndex: sd.index}, true) {
			return
		}
		sp.seedIndex = sd.index
	}
	s.blockingLoop(ctx, events, sp)
}

// ownEntries drops the entries of other services from a health answer.
// Consul matches the service name of /v1/health/service/<name> without
// regard to case: the answer for "Web" holds the instances of "web" too.
// Each watch keeps its own service's, so that names that differ in case
// meet as two services with one host (loop.owner), not as one service
// serving the other's instances. Entries without a service are kept, for
// mapService to report.
func ownEntries(name string, entries []*api.ServiceEntry) []*api.ServiceEntry {
	own := func(e *api.ServiceEntry) bool { return e == nil || e.Service == nil || e.Service.Service == name }
	if !slices.ContainsFunc(entries, func(e *api.ServiceEntry) bool { return !own(e) }) {
		return entries
	}
	out := make([]*api.ServiceEntry, 0, len(entries))
	for _, e := range entries {
		if own(e) {
			out = append(out, e)
		}
	}
	return out
}

// watchPeer polls the services imported from a cluster peer. Consul cannot
// block on them: they live in the peering stream's memory, not in the state
// store whose index a blocking query watches.
func (s *Source) watchPeer(ctx context.Context, peer string, events chan<- event) {
	id := "peer/" + peer
	var (
		last     map[string]bool
		failures int
	)
	for {
		var p *api.Peering
		ans, err := s.do(ctx, request{endpoint: "peering", class: classRead, fetch: func(q *api.QueryOptions) (*api.QueryMeta, error) {
			q.Namespace = "" // peerings live in partitions, not namespaces
			var meta *api.QueryMeta
			var err error
			p, meta, err = s.client.Peerings().Read(q.Context(), peer, q)
			return meta, err
		}})
		switch {
		case ctx.Err() != nil:
			return
		case ans.retry:
			continue
		case err == nil && ans.meta != nil && p == nil:
			err = &queryError{kind: "notfound", err: fmt.Errorf("peering %q not found", peer)}
		case err == nil && p.State != api.PeeringStateActive:
			err = &queryError{kind: "peering", err: fmt.Errorf("peering %q is %s, not ACTIVE; keeping its services", peer, p.State)}
		}
		if err != nil {
			failures++
			kind := "unreachable"
			var qe *queryError
			if errors.As(err, &qe) {
				kind = qe.kind
			}
			if !send(ctx, events, errEvent{id: id, kind: kind, err: err}) || !sleep(ctx, s.backoff(failures)) {
				return
			}
			continue
		}
		force := failures > 0 || last == nil
		if failures > 0 {
			failures = 0
			if !send(ctx, events, okEvent{id: id}) {
				return
			}
		}
		names := map[string]bool{}
		for _, n := range p.StreamStatus.ImportedServices {
			if s.cfg.selected(n) {
				names[n] = true
			}
		}
		if force || !maps.Equal(names, last) {
			last = names
			if !send(ctx, events, listEvent{origin: peer, names: names}) {
				return
			}
		}
		if !sleep(ctx, s.cfg.PeerRefreshInterval) {
			return
		}
	}
}

func isFilterError(body string) bool {
	b := strings.ToLower(body)
	return strings.Contains(b, "filter") || strings.Contains(b, "expression")
}

// quote renders s as a bexpr string literal.
func quote(s string) string { return strconv.Quote(s) }
