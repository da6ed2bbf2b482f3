package consul

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// class is what a request is, for the slot it takes.
type class int

const (
	// classBlocking is a per-service watch's blocking query.
	classBlocking class = iota
	// classRead is a non-blocking read: a watch's first read, a read after
	// an error, or a read a change feed asked for. It never waits behind
	// blocking queries.
	classRead
	// classFeed is a long-lived blocking query that tells which services
	// changed (the catalog's service list, the checks).
	classFeed
	// classConfig is the blocking query on one kind of config entry. It
	// shares the feeds' own slots (sized for it) when the slots are split,
	// and otherwise takes turns with the per-service watches, so that a
	// small pool is never held by long queries that all block at once.
	classConfig
)

// feedQueries is the number of classFeed queries at most (the catalog's
// service list and the checks feed).
const feedQueries = 2

// slots caps the requests in flight to Consul.
//
// Over HTTP/1.1 each request in flight holds a connection, and Consul allows
// limits.http_max_conns_per_client (200) per client IP. maxConcurrentQueries
// is split: the feeds get their own two, non-blocking reads get a few of their
// own (so that a change a feed reported is read at once, not after the
// blocking queries holding every other slot), and the per-service blocking
// queries share the rest, taking turns when there are more services than
// that. Below 12 slots there is no split (and no feeds).
//
// Over HTTP/2 (Consul's HTTPS listener) a request in flight is a stream:
// Consul serves up to 250 at once on each connection, so every watch gets its
// own blocking query, up to maxStreams. The streams are split the same way,
// so that past maxStreams services, when watches take turns over HTTP/2 too,
// the feeds run and a read they ask for does not wait behind the turns.
type slots struct {
	blocking, reads, fed            chan struct{} // HTTP/1.1
	streams, streamReads, streamFed chan struct{} // HTTP/2
	split, streamSplit              bool
	inflight                        prometheus.Gauge
	http2Gauge                      prometheus.Gauge

	mu    sync.Mutex
	h2    bool
	flip  chan struct{} // closed and replaced when the protocol changes
	flips chan struct{} // buffered 1: the loop re-checks its rotation
}

// newSlots splits maxQueries and maxStreams; configWatches is the number of
// config entry kinds watched, each a long blocking query besides the feeds.
func newSlots(maxQueries, maxStreams, configWatches int, m *metrics) *slots {
	s := &slots{
		inflight:   m.inflight,
		http2Gauge: m.http2,
		flip:       make(chan struct{}),
		flips:      make(chan struct{}, 1),
	}
	s.split, s.blocking, s.reads, s.fed = splitSlots(maxQueries, feedQueries+configWatches)
	s.streamSplit, s.streams, s.streamReads, s.streamFed = splitSlots(maxStreams, feedQueries+configWatches)
	return s
}

// splitSlots divides n slots: the feeds (and config entry watches) get their
// own, non-blocking reads a few (n/10, at most 8), and the per-service
// blocking queries the rest. Below 12, or when that would leave fewer than
// two blocking queries, there is no split: one pool for all, and no feeds.
func splitSlots(n, feeds int) (split bool, blocking, reads, fed chan struct{}) {
	r := min(8, n/10)
	if n < 12 || n-feeds-r < 2 {
		blocking = make(chan struct{}, n)
		return false, blocking, blocking, blocking
	}
	return true, make(chan struct{}, n-feeds-r), make(chan struct{}, r), make(chan struct{}, feeds)
}

// http2 reports whether Consul last answered over HTTP/2.
func (s *slots) http2() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.h2
}

// blockingCapacity is the number of per-service blocking queries that can be
// in flight at once: beyond it, watches take turns.
func (s *slots) blockingCapacity() int {
	if s.http2() {
		return cap(s.streams)
	}
	return cap(s.blocking)
}

// http1Capacity is the number of HTTP/1.1 requests in flight at most
// (maxConcurrentQueries), which is also the number of connections they need.
func (s *slots) http1Capacity() int {
	if !s.split {
		return cap(s.blocking)
	}
	return cap(s.blocking) + cap(s.reads) + cap(s.fed)
}

// feedsPossible reports whether the slots of the protocol in use are split,
// which the change feeds need.
func (s *slots) feedsPossible() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h2 {
		return s.streamSplit
	}
	return s.split
}

// observe records the protocol of an answer.
func (s *slots) observe(h2 bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h2 == h2 {
		return
	}
	s.h2 = h2
	if h2 {
		s.http2Gauge.Set(1)
	} else {
		s.http2Gauge.Set(0)
	}
	close(s.flip)
	s.flip = make(chan struct{})
	select {
	case s.flips <- struct{}{}:
	default:
	}
}

func (s *slots) pool(c class) (sem, spare chan struct{}, flip <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h2 {
		switch c {
		case classRead:
			return s.streamReads, s.streams, s.flip
		case classFeed, classConfig:
			return s.streamFed, nil, s.flip
		}
		return s.streams, nil, s.flip
	}
	switch c {
	case classRead:
		// A read also takes a free blocking-query slot (at start, every
		// watch reads once), but never waits behind blocking queries.
		return s.reads, s.blocking, s.flip
	case classFeed, classConfig:
		return s.fed, nil, s.flip
	}
	return s.blocking, nil, s.flip
}

// acquire waits for a slot of class c. It gives up when ctx is done (err) or
// when nudge fires first (nudged: the caller wants a read instead).
func (s *slots) acquire(ctx context.Context, c class, nudge <-chan struct{}) (release func(), nudged bool, err error) {
	for {
		sem, spare, flip := s.pool(c)
		if spare == sem {
			spare = nil // not split: one pool
		}
		var got chan struct{}
		select {
		case sem <- struct{}{}:
			got = sem
		case spare <- struct{}{}:
			got = spare
		case <-flip:
			// The protocol changed: wait in the other pool.
			continue
		case <-nudge:
			return nil, true, nil
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		s.inflight.Inc()
		return func() {
			<-got
			s.inflight.Dec()
		}, false, nil
	}
}
