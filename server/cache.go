package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/registry-adapter/registry-adapter/served"
)

// stored is an entry as the cache holds it: with its record boxed once as
// the buffer gRPC writes, so that building a snapshot allocates nothing per
// entry.
type stored struct {
	served.Entry
	record mem.Buffer
}

// Cache is a full-state xDS cache for MCP-over-xDS clients such as istiod.
//
// go-control-plane's caches do not fit istiod: its config source client is
// state-of-the-world only, so every reply must carry the whole set of a type
// (LinearCache's SotW replies may be partial), and with tens of thousands of
// resources re-serializing everything per change (SnapshotCache) costs
// hundreds of milliseconds. Here each resource is serialized once when it
// changes; a reply shares those serialized resources, and a change costs the
// changed resources plus one copy of a pointer slice per type.
//
// No reply of any kind is sent until MarkReady: a partial first reply would
// make istiod delete everything it had before.
type Cache struct {
	metrics *cacheMetrics
	now     func() time.Time

	// records is where the codec finds the encoded form of each snapshot.
	records *records

	mu      sync.Mutex
	ready   bool
	kinds   map[served.Kind]*kindState
	parked  map[*sotwWatch]struct{}
	pDeltas map[*deltaWatch]struct{}
}

// kindState is the served set of one kind.
type kindState struct {
	byName map[string]int // index into list
	list   []stored
	// hash is the XOR of every entry's hash, so a change updates the type's
	// version in O(1) and identical sets on two replicas get one version.
	hash    uint64
	bytes   int
	changed time.Time
	// snapshot is the shared, read-only resource slice for the current
	// version, built on first use after a change.
	snapshot []*anypb.Any
}

// NewCache returns an empty cache that replies to nobody until MarkReady. m
// may be nil: it then records into metrics registered nowhere.
func NewCache(m *Metrics) *Cache {
	c := &Cache{
		now:     time.Now,
		records: newRecords(),
		kinds:   make(map[served.Kind]*kindState),
		parked:  make(map[*sotwWatch]struct{}),
		pDeltas: make(map[*deltaWatch]struct{}),
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	c.metrics = m.cache
	for _, k := range served.Kinds {
		c.kinds[k] = &kindState{byName: make(map[string]int)}
	}
	return c
}

func entryHash(name, version string) uint64 {
	h := xxhash.New()
	_, _ = h.WriteString(name)
	_, _ = h.Write([]byte{0})
	_, _ = h.WriteString(version)
	return h.Sum64()
}

func versionString(hash uint64) string { return fmt.Sprintf("%016x", hash) }

// Apply changes the served set of one kind: upserts add or replace entries,
// deletes remove them by name. Entries whose version did not change are
// ignored, so a no-op refresh sends nothing. It reports whether anything
// changed.
func (c *Cache) Apply(kind served.Kind, upserts []served.Entry, deletes []string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ks := c.kinds[kind]
	if ks == nil {
		return false
	}
	if len(ks.list) == 0 && len(upserts) > 64 {
		// A first publication: sized once, not grown through every
		// doubling (the garbage of a cold sync of 50k resources).
		ks.byName = make(map[string]int, len(upserts))
		ks.list = make([]stored, 0, len(upserts))
	}
	changed := false
	for _, e := range upserts {
		if i, ok := ks.byName[e.Name]; ok {
			old := ks.list[i]
			if old.Version == e.Version {
				continue
			}
			ks.hash ^= entryHash(old.Name, old.Version) ^ entryHash(e.Name, e.Version)
			ks.bytes += len(e.Resource.GetValue()) - len(old.Resource.GetValue())
			ks.list[i] = store(e)
		} else {
			ks.byName[e.Name] = len(ks.list)
			ks.list = append(ks.list, store(e))
			ks.hash ^= entryHash(e.Name, e.Version)
			ks.bytes += len(e.Resource.GetValue())
		}
		changed = true
	}
	for _, name := range deletes {
		i, ok := ks.byName[name]
		if !ok {
			continue
		}
		old := ks.list[i]
		ks.hash ^= entryHash(old.Name, old.Version)
		ks.bytes -= len(old.Resource.GetValue())
		// Swap-remove: order inside a state-of-the-world reply carries no
		// meaning, and this keeps a deletion O(1).
		last := len(ks.list) - 1
		ks.list[i] = ks.list[last]
		ks.byName[ks.list[i].Name] = i
		ks.list[last] = stored{}
		ks.list = ks.list[:last]
		delete(ks.byName, name)
		changed = true
	}
	if !changed {
		return false
	}
	ks.snapshot = nil
	c.records.withdraw(kind)
	ks.changed = c.now()
	c.metrics.resources.WithLabelValues(string(kind)).Set(float64(len(ks.list)))
	if c.ready {
		c.notifyLocked(kind)
	}
	return true
}

// MarkReady lets the cache reply. The adapter calls it once every source has
// delivered its first full state.
func (c *Cache) MarkReady() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ready {
		return
	}
	c.ready = true
	for w := range c.parked {
		c.respondLocked(w)
	}
	clear(c.parked)
	for w := range c.pDeltas {
		if c.respondDeltaLocked(w, true) {
			delete(c.pDeltas, w)
		}
	}
}

// Ready reports whether the cache has been marked ready.
func (c *Cache) Ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready
}

// Version returns the current version of kind's set.
func (c *Cache) Version(kind served.Kind) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.versionLocked(kind)
}

func (c *Cache) versionLocked(kind served.Kind) string {
	if ks := c.kinds[kind]; ks != nil {
		return versionString(ks.hash)
	}
	return versionString(0)
}

// Entries returns a copy of kind's served entries, sorted by name.
func (c *Cache) Entries(kind served.Kind) []served.Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	ks := c.kinds[kind]
	if ks == nil {
		return nil
	}
	out := make([]served.Entry, len(ks.list))
	for i, s := range ks.list {
		out[i] = s.Entry
	}
	slices.SortFunc(out, func(a, b served.Entry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ChangedAt returns when kind's set last changed (zero if never).
func (c *Cache) ChangedAt(kind served.Kind) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ks := c.kinds[kind]; ks != nil {
		return ks.changed
	}
	return time.Time{}
}

func (c *Cache) snapshotLocked(kind served.Kind) []*anypb.Any {
	ks := c.kinds[kind]
	if ks == nil {
		return nil
	}
	if ks.snapshot == nil {
		snap := make([]*anypb.Any, len(ks.list))
		records := make([]mem.Buffer, len(ks.list))
		complete := true
		for i, e := range ks.list {
			snap[i] = e.Resource
			records[i] = e.record
			// A nil resource has no record: the proto codec handles (and
			// reports) such a snapshot.
			complete = complete && e.record != nil
		}
		if !complete {
			records = nil
		}
		ks.snapshot = snap
		c.records.publish(kind, snap, records)
	}
	return ks.snapshot
}

// store boxes e's record once. An entry made without one (an Any built
// elsewhere) is encoded here, so that every stored entry has its record.
func store(e served.Entry) stored {
	if e.Record() == nil && e.Resource != nil {
		e = served.EntryOf(e.Name, e.Version, e.Resource)
	}
	s := stored{Entry: e}
	if r := e.Record(); r != nil {
		s.record = mem.SliceBuffer(r)
	}
	return s
}

// sotwWatch is one outstanding state-of-the-world request.
type sotwWatch struct {
	req  *discovery.DiscoveryRequest
	kind served.Kind
	out  chan cache.Response
	done chan struct{}
}

// CreateWatch implements cache.ConfigWatcher for state-of-the-world streams.
func (c *Cache) CreateWatch(req *cache.Request, _ cache.Subscription, out chan cache.Response) (func(), error) {
	w := &sotwWatch{req: req, kind: served.KindOf(req.GetTypeUrl()), out: out, done: make(chan struct{})}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Reply at once to the first request of a type on a stream (no nonce yet:
	// istiod needs one reply per type to become ready, and keeps its old
	// config only until that first reply) and to a client whose version is
	// behind. An ACK of the current version, or a NACK, waits for a change.
	first := req.GetResponseNonce() == ""
	behind := req.GetVersionInfo() != c.versionLocked(w.kind) && req.GetErrorDetail() == nil
	if c.ready && (first || behind) {
		c.respondLocked(w)
	} else {
		c.parked[w] = struct{}{}
	}
	return c.cancelFunc(func() { delete(c.parked, w) }, w.done), nil
}

func (c *Cache) cancelFunc(unpark func(), done chan struct{}) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			unpark()
			c.mu.Unlock()
			close(done)
		})
	}
}

func (c *Cache) respondLocked(w *sotwWatch) {
	// The reply's content is taken when the stream sends it, not here:
	// building a version's resource slice is O(N), and here it would run on
	// the adapter's flush (Apply notifies under the cache lock).
	resp := &sotwResponse{req: w.req, cache: c, kind: w.kind}
	send(w.out, cache.Response(resp), w.done)
}

// send hands a response to the server without ever blocking the cache: the
// stream's channel normally has room (one reply per watch), and when it does
// not, a goroutine waits until the server takes it or cancels the watch.
func send[T any](out chan T, resp T, done <-chan struct{}) {
	select {
	case out <- resp:
	default:
		go func() {
			select {
			case out <- resp:
			case <-done:
			}
		}()
	}
}

// notifyLocked answers the parked watches of kind that are now behind.
func (c *Cache) notifyLocked(kind served.Kind) {
	version := c.versionLocked(kind)
	for w := range c.parked {
		if w.kind == kind && w.req.GetVersionInfo() != version {
			c.respondLocked(w)
			delete(c.parked, w)
		}
	}
	for w := range c.pDeltas {
		if w.kind == kind && c.respondDeltaLocked(w, false) {
			delete(c.pDeltas, w)
		}
	}
}

// Fetch implements cache.ConfigFetcher. istiod never fetches; REST xDS is
// refused rather than half-supported.
func (c *Cache) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("fetch is not supported: use an ADS stream")
}

type sotwResponse struct {
	req   *discovery.DiscoveryRequest
	cache *Cache
	kind  served.Kind

	once      sync.Once
	version   string
	resources []*anypb.Any
}

// resolve takes the kind's current version and resources, once: whatever
// changed since the watch fired goes out with it, under its own version.
func (r *sotwResponse) resolve() {
	r.once.Do(func() {
		r.cache.mu.Lock()
		defer r.cache.mu.Unlock()
		r.version, r.resources = r.cache.versionLocked(r.kind), r.cache.snapshotLocked(r.kind)
	})
}

// GetDiscoveryResponse builds a fresh envelope per send: the server writes the
// nonce into it, so only the resource slice may be shared.
func (r *sotwResponse) GetDiscoveryResponse() (*discovery.DiscoveryResponse, error) {
	r.resolve()
	return &discovery.DiscoveryResponse{
		VersionInfo: r.version,
		Resources:   r.resources,
		TypeUrl:     r.req.GetTypeUrl(),
	}, nil
}

func (r *sotwResponse) GetRequest() *discovery.DiscoveryRequest { return r.req }
func (r *sotwResponse) GetVersion() (string, error)             { r.resolve(); return r.version, nil }
func (r *sotwResponse) GetResponseVersion() string              { r.resolve(); return r.version }
func (r *sotwResponse) GetReturnedResources() map[string]string { return nil }
func (r *sotwResponse) GetContext() context.Context             { return context.Background() }
