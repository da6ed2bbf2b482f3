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
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
)

// Events from the watchers to the loop.
type (
	// listEvent is a new list of service names from the catalog (origin "")
	// or from a peering (origin = peer name).
	listEvent struct {
		origin   string
		names    map[string]bool
		filtered bool // X-Consul-Results-Filtered-By-ACLs
	}
	// healthEvent is a changed health answer of one watched service.
	healthEvent struct {
		w        *watch
		res      mapResult
		empty    bool // the answer had no entries at all
		filtered bool // X-Consul-Results-Filtered-By-ACLs
	}
	// errEvent reports a failed query; okEvent, that a failing query works again.
	errEvent struct {
		id   string
		kind string
		err  error
	}
	okEvent struct{ id string }
)

func send(ctx context.Context, ch chan<- any, ev any) bool {
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
func (s *Source) waitTime() time.Duration {
	w := s.cfg.Wait
	slots := int64(s.cfg.MaxConcurrentQueries)
	if n := s.watched.Load() + 1; n > slots {
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
	switch {
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

// do performs one request through fetch, holding a request slot. A request
// with index > 0 is a blocking query. retry is true when the epoch ended
// meanwhile (ACL token changed, Consul restored): the answer, or the error,
// is discarded and the query is to be re-issued as a non-blocking read.
func (s *Source) do(ctx context.Context, endpoint string, index uint64,
	fetch func(q *api.QueryOptions) (*api.QueryMeta, error),
) (meta *api.QueryMeta, wait time.Duration, err error, retry bool) {
	epoch := s.epochs.current()
	token := s.tokens.get()
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, ctx.Err(), false
	}
	s.metrics.inflight.Inc()
	defer func() {
		<-s.sem
		s.metrics.inflight.Dec()
	}()

	q := s.queryOptions(token, index)
	timeout := s.cfg.RequestTimeout
	if index > 0 {
		q.WaitTime = s.waitTime()
		timeout += q.WaitTime + q.WaitTime/16 // Consul adds up to wait/16 of jitter
	}
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stop := context.AfterFunc(epoch, cancel)
	defer stop()

	meta, err = fetch(q.WithContext(qctx))
	switch {
	case ctx.Err() != nil:
		return nil, 0, ctx.Err(), false
	case epoch.Err() != nil:
		return nil, 0, nil, true
	case err != nil:
		kind := classify(err)
		s.metrics.requests.WithLabelValues(endpoint, kind).Inc()
		err = s.tokens.redactErr(err)
		if kind == "unsupported" {
			err = fmt.Errorf("namespace %q / partition %q need Consul Enterprise: %w", s.cfg.Namespace, s.cfg.Partition, err)
		}
		return nil, 0, &queryError{kind: kind, err: err}, false
	case meta == nil:
		return nil, 0, &queryError{kind: "decode", err: errors.New("no query metadata in Consul's answer")}, false
	}
	s.metrics.requests.WithLabelValues(endpoint, "ok").Inc()
	return meta, q.WaitTime, nil, false
}

// blockingLoop runs fetch as blocking queries until ctx is done, carrying
// X-Consul-Index forward. handle gets every answer; force is set for the
// first answer and for the first after an error, a retry or an index reset,
// which must be delivered even if it looks unchanged. handle returns false
// when ctx is done. onReset is called when the index went backwards.
func (s *Source) blockingLoop(ctx context.Context, id, endpoint string, events chan<- any,
	fetch func(q *api.QueryOptions) (*api.QueryMeta, error),
	handle func(meta *api.QueryMeta, force bool) bool,
	onReset func(),
) {
	var (
		index    uint64 // the last index seen (0: none yet)
		block    bool   // whether the next query blocks on index
		failures int
		last     time.Time
		force    = true
	)
	for {
		if !last.IsZero() {
			if d := s.cfg.MinQueryInterval - time.Since(last); d > 0 && !sleep(ctx, d) {
				return
			}
		}
		last = time.Now()
		sendIndex := uint64(0)
		if block {
			sendIndex = index
		}
		meta, wait, err, retry := s.do(ctx, endpoint, sendIndex, fetch)
		switch {
		case ctx.Err() != nil:
			return
		case retry:
			block, force = false, true
			continue
		case err != nil:
			failures++
			var qe *queryError
			kind := "unreachable"
			if errors.As(err, &qe) {
				kind = qe.kind
			}
			if !send(ctx, events, errEvent{id: id, kind: kind, err: err}) {
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
		if failures > 0 {
			failures = 0
			if !send(ctx, events, okEvent{id: id}) {
				return
			}
		}
		s.log.Debug("answer", zap.String("query", id), zap.Uint64("sent", sendIndex), zap.Uint64("got", meta.LastIndex), zap.Duration("took", time.Since(last)), zap.String("backend", meta.QueryBackend))
		reset := index > 0 && meta.LastIndex < index
		if reset {
			s.metrics.indexResets.WithLabelValues(endpoint).Inc()
			s.log.Info("Consul index went backwards (Consul restored or replaced); re-reading",
				zap.String("query", id), zap.Uint64("previous", index), zap.Uint64("index", meta.LastIndex))
			force = true
			// Before the answer goes out: the guard must know it follows a reset.
			s.reporter.RegistryReset()
		}
		if !handle(meta, force) {
			return
		}
		if reset && onReset != nil {
			onReset()
		}
		// An answer to a blocking query that comes back early with the same
		// index is no change, but a wake-up: Consul was restored or lost its
		// leader. Re-read without blocking, which shows a reset index.
		early := sendIndex > 0 && meta.LastIndex == sendIndex && time.Since(last) < wait/2
		force = false
		block = !early
		index = max(meta.LastIndex, 1) // never block on index 0, which does not block
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

// watchCatalog watches the list of service names.
func (s *Source) watchCatalog(ctx context.Context, events chan<- any) {
	var (
		svcs         map[string][]string
		last         map[string]bool
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
	// When the catalog index goes backwards, every health watch re-reads.
	onReset := s.epochs.bump
	s.blockingLoop(ctx, "catalog", "catalog", events, fetch, func(meta *api.QueryMeta, force bool) bool {
		names := map[string]bool{}
		for n := range svcs {
			if s.cfg.selected(n) {
				names[n] = true
			}
		}
		if !force && maps.Equal(names, last) && meta.ResultsFilteredByACLs == lastFiltered {
			return true
		}
		last, lastFiltered = names, meta.ResultsFilteredByACLs
		return send(ctx, events, listEvent{names: names, filtered: meta.ResultsFilteredByACLs})
	}, onReset)
}

// watchHealth watches the instances and checks of one service.
func (s *Source) watchHealth(ctx context.Context, w *watch, events chan<- any) {
	var (
		entries []*api.ServiceEntry
		last    *healthEvent
	)
	fetch := func(q *api.QueryOptions) (*api.QueryMeta, error) {
		q.Peer = w.key.peer
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
	s.blockingLoop(ctx, "health/"+w.scope, "health", events, fetch, func(meta *api.QueryMeta, force bool) bool {
		ev := healthEvent{
			w:        w,
			res:      s.mapper.mapService(w.key.name, w.key.peer, entries),
			empty:    len(entries) == 0,
			filtered: meta.ResultsFilteredByACLs,
		}
		if !force && last != nil && reflect.DeepEqual(*last, ev) {
			return true
		}
		last = &ev
		return send(ctx, events, ev)
	}, nil)
}

// watchPeer polls the services imported from a cluster peer. Consul cannot
// block on them: they live in the peering stream's memory, not in the state
// store whose index a blocking query watches.
func (s *Source) watchPeer(ctx context.Context, peer string, events chan<- any) {
	id := "peer/" + peer
	var (
		last     map[string]bool
		failures int
	)
	for {
		var p *api.Peering
		meta, _, err, retry := s.do(ctx, "peering", 0, func(q *api.QueryOptions) (*api.QueryMeta, error) {
			q.Namespace = "" // peerings live in partitions, not namespaces
			var meta *api.QueryMeta
			var err error
			p, meta, err = s.client.Peerings().Read(q.Context(), peer, q)
			return meta, err
		})
		switch {
		case ctx.Err() != nil:
			return
		case retry:
			continue
		case err == nil && meta != nil && p == nil:
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
