// Package kube is the Kubernetes sink: it writes the ServiceEntries and
// WorkloadEntries the adapter generates to the Kubernetes API as objects, for
// everything that reads Istio config only from there (ambient's ztunnel and
// waypoints, Istio's VIP allocator, kubectl, istioctl analyze, Kiali).
//
// It is a publisher like the xDS server's cache, with the same two methods
// (Apply of one kind's served entries and deletes, MarkReady): the adapter
// hands it the same diff, once per debounce window, and it applies that diff
// with server-side apply. It imports nothing of ours but served: what it
// writes is decoded with served.Decode from the same serialized MCP resource
// the xDS sink serves, so both sinks carry identical spec, labels and
// annotations.
//
// Ownership: the sink writes, prunes and deletes only objects labelled
// app.kubernetes.io/managed-by=registry-adapter and registry-adapter.io/owner=
// <owner>. Every write carries a UID precondition (see sync), so an object
// someone else created under the same name is reported as a conflict and
// never modified or deleted.
package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/anypb"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/dynamic"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/util/workqueue"

	"github.com/registry-adapter/registry-adapter/served"
)

// key names one object: its kind and "namespace/name".
type key struct {
	kind served.Kind
	name string
}

func (k key) String() string { return string(k.kind) + " " + k.name }

// want is one desired object. res is the served entry's MCP resource,
// shared with the xDS cache, so the sink keeps no second copy of the content.
type want struct {
	version string
	res     *anypb.Any
	// hash is the content hash of body once rendered; "" until then.
	hash string

	// A served ServiceEntry too large for one object is written in parts
	// (split.go). Its want keeps the served entry in res, writes its first
	// part (write), and names the others (parts); each of those is a want
	// of its own whose parent is the served name.
	write  *anypb.Any
	parts  []string
	parent string
}

// body is what sync renders and writes for w.
func (w *want) body() *anypb.Any {
	if w.write != nil {
		return w.write
	}
	return w.res
}

// have is one owned object known to be in the API server.
type have struct {
	uid  types.UID
	hash string
}

// Sink writes the adapter's resources to the Kubernetes API.
type Sink struct {
	cfg       Config
	namespace string
	client    dynamic.Interface
	leases    coordinationv1.LeasesGetter
	log       *zap.Logger
	m         *metrics
	// warnedList: the optional kinds whose refused list was logged (only
	// the resync loop reads and writes it).
	warnedList map[served.Kind]bool

	mu      sync.Mutex
	desired map[key]*want
	actual  map[key]have
	foreign map[key]bool
	// since is when the oldest unwritten change of a key reached the sink.
	since map[key]time.Time
	// ready is set once every source synced (MarkReady): only then may the
	// sink delete objects the desired state does not name.
	ready bool
	// queue exists while this replica leads; nil otherwise.
	queue workqueue.TypedRateLimitingInterface[key]
	// splits counts the served entries written in parts.
	splits int
}

// RESTConfig is the client configuration of cfg: the kubeconfig file or the
// in-cluster service account, with the configured rate limit.
func RESTConfig(cfg Config) (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if cfg.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes sink: client config: %w", err)
	}
	return rc, nil
}

// New returns a sink writing to namespace through rc. reg may be nil.
func New(cfg Config, namespace string, rc *rest.Config, reg prometheus.Registerer, log *zap.Logger) (*Sink, error) {
	cfg.SetDefaults()
	if err := cfg.Validate("kubernetesSink"); err != nil {
		return nil, err
	}
	writes := rest.CopyConfig(rc)
	writes.QPS, writes.Burst = cfg.QPS, cfg.Burst
	writes.Timeout = cfg.RequestTimeout
	writes.UserAgent = "registry-adapter"
	client, err := dynamic.NewForConfig(writes)
	if err != nil {
		return nil, fmt.Errorf("kubernetes sink: %w", err)
	}
	// The lease has its own client and so its own token bucket: a burst of
	// writes must never delay a renewal into losing the lease.
	lease := rest.CopyConfig(rc)
	lease.QPS, lease.Burst = 5, 10
	lease.Timeout = cfg.LeaderElection.RenewDeadline
	lease.UserAgent = "registry-adapter-leader-election"
	leases, err := coordinationv1.NewForConfig(lease)
	if err != nil {
		return nil, fmt.Errorf("kubernetes sink: %w", err)
	}
	return newSink(cfg, namespace, client, leases, reg, log), nil
}

// newSink is New with its clients given; cfg is defaulted and valid.
func newSink(cfg Config, namespace string, client dynamic.Interface, leases coordinationv1.LeasesGetter,
	reg prometheus.Registerer, log *zap.Logger) *Sink {
	return &Sink{
		cfg: cfg, namespace: namespace, client: client, leases: leases, log: log, m: newMetrics(reg),
		desired: make(map[key]*want), actual: make(map[key]have), foreign: make(map[key]bool),
		since: make(map[key]time.Time), warnedList: make(map[served.Kind]bool),
	}
}

// Apply records one kind's changes from a debounce window and queues them
// for writing, as the xDS cache's Apply serves them: upserts are served
// entries (name "namespace/name", content version, MCP resource), deletes
// are names. It never waits for the API server. It reports whether the
// desired state changed.
func (s *Sink) Apply(kind served.Kind, upserts []served.Entry, deletes []string) bool {
	if _, ok := resources[kind]; !ok {
		s.log.Error("kubernetes sink: unknown kind; ignoring", zap.String("kind", string(kind)))
		return false
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	touch := func(k key) {
		changed = true
		// Only the leader writes, so only it measures the delay; a follower
		// recording it would keep an entry per changed name forever.
		if s.queue != nil {
			if _, ok := s.since[k]; !ok {
				s.since[k] = now
			}
			s.queue.Add(k)
		}
	}
	var resplit []string
	for _, u := range upserts {
		k := key{kind, u.Name}
		w, ok := s.desired[k]
		if ok && w.parent == "" && w.version == u.Version {
			continue
		}
		if ok && w.parent != "" {
			// The name was a part of a split service; the served entry
			// takes it, and that service is split again around it.
			resplit = append(resplit, w.parent)
		}
		s.setLocked(k, u, touch)
	}
	for _, name := range deletes {
		k := key{kind, name}
		w, ok := s.desired[k]
		if !ok || w.parent != "" {
			continue
		}
		s.dropParts(w.parts, nil, touch)
		s.countSplit(w, nil)
		s.dropLocked(k, touch)
	}
	for _, p := range resplit {
		k := key{kind, p}
		if w, ok := s.desired[k]; ok && w.parent == "" {
			s.setLocked(k, served.Entry{Name: p, Version: w.version, Resource: w.res}, touch)
		}
	}
	return changed
}

// setLocked makes e the desired state of k: one object, or its parts when it
// is a ServiceEntry too large for one (split). s.mu is held.
func (s *Sink) setLocked(k key, e served.Entry, touch func(key)) {
	old := s.desired[k]
	w := &want{version: e.Version, res: e.Resource}
	var parts []served.Entry
	if k.kind == served.KindServiceEntry {
		var err error
		if parts, err = s.split(e); err != nil {
			// Kept whole: sync refuses it by name, and writes everything else.
			s.log.Error("kubernetes sink: a service too large for one object cannot be split; it is not written", zap.Error(err))
		}
	}
	var keep map[string]bool
	if len(parts) > 0 {
		w.write = parts[0].Resource
		keep = make(map[string]bool, len(parts)-1)
		for _, p := range parts[1:] {
			pk := key{k.kind, p.Name}
			w.parts = append(w.parts, p.Name)
			keep[p.Name] = true
			if cur, ok := s.desired[pk]; ok && cur.parent == k.name && cur.version == p.Version {
				continue
			}
			s.desired[pk] = &want{version: p.Version, res: p.Resource, parent: k.name}
			touch(pk)
		}
		if old == nil || len(old.parts) == 0 {
			s.log.Info("kubernetes sink: a service too large for one object (over kubernetesSink.maxObjectBytes, or more than the 4096 endpoints Istio's CRD allows) is written in parts",
				zap.String("serviceEntry", k.name), zap.Int("parts", len(parts)), zap.Int("maxObjectBytes", s.cfg.MaxObjectBytes))
		}
	}
	if old != nil && old.parent == "" {
		s.dropParts(old.parts, keep, touch)
		s.countSplit(old, w)
	} else {
		s.countSplit(nil, w)
	}
	s.desired[k] = w
	touch(k)
}

// dropParts removes the parts named that keep does not hold and that are
// still parts (a served entry may have taken the name). s.mu is held.
func (s *Sink) dropParts(parts []string, keep map[string]bool, touch func(key)) {
	for _, name := range parts {
		pk := key{served.KindServiceEntry, name}
		if keep[name] {
			continue
		}
		if w, ok := s.desired[pk]; ok && w.parent != "" {
			s.dropLocked(pk, touch)
		}
	}
}

// dropLocked removes k from the desired state. s.mu is held.
func (s *Sink) dropLocked(k key, touch func(key)) {
	delete(s.desired, k)
	if s.foreign[k] {
		// No longer wanted: the other object is none of the sink's business.
		delete(s.foreign, k)
		s.m.foreign.Set(float64(len(s.foreign)))
	}
	touch(k)
}

// countSplit follows how many served entries are written in parts, as w
// replaces old (either may be nil). s.mu is held.
func (s *Sink) countSplit(old, w *want) {
	was, is := old != nil && len(old.parts) > 0, w != nil && len(w.parts) > 0
	switch {
	case is && !was:
		s.splits++
	case was && !is:
		s.splits--
	default:
		return
	}
	s.m.split.Set(float64(s.splits))
}

// MarkReady says every source has synced: objects the sink owns that the
// desired state does not name may now be pruned.
func (s *Sink) MarkReady() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready {
		return
	}
	s.ready = true
	if s.queue != nil {
		s.queuePruneLocked()
	}
}

func (s *Sink) queuePruneLocked() {
	for k := range s.actual {
		if _, ok := s.desired[k]; !ok {
			s.queue.Add(k)
		}
	}
}

// Leading reports whether this replica writes now.
func (s *Sink) Leading() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queue != nil
}

// Run writes while this replica leads, until ctx is done. With leader
// election off it leads at once.
func (s *Sink) Run(ctx context.Context) error {
	if !s.cfg.LeaderElection.On() {
		s.lead(ctx)
		return nil
	}
	le := s.cfg.LeaderElection
	ns := le.LeaseNamespace
	if ns == "" {
		ns = s.namespace
	}
	id := le.Identity
	if id == "" {
		host, _ := os.Hostname()
		id = host + "_" + string(uuid.NewUUID())
	}
	log := s.log.With(zap.String("lease", ns+"/"+le.LeaseName), zap.String("identity", id))
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: le.LeaseName, Namespace: ns},
		Client:     s.leases,
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	for {
		// OnStartedLeading hands the term to this goroutine, which writes
		// during it; the elector runs beside it. Writing here rather than in
		// client-go's callback goroutine is what lets the lease be released
		// only after the last write of the term has returned.
		terms := make(chan context.Context)
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:          lock,
			LeaseDuration: le.LeaseDuration,
			RenewDeadline: le.RenewDeadline,
			RetryPeriod:   le.RetryPeriod,
			// Released by release below, after the writers stopped; client-go's
			// own release would run while they may still be writing.
			ReleaseOnCancel: false,
			Name:            "registry-adapter",
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(term context.Context) {
					select {
					case terms <- term:
					case <-term.Done():
					}
				},
				OnStoppedLeading: func() {},
				OnNewLeader: func(leader string) {
					if leader != id {
						log.Info("kubernetes sink: another replica leads; waiting", zap.String("leader", leader))
					}
				},
			},
		})
		if err != nil {
			return fmt.Errorf("kubernetes sink: leader election: %w", err)
		}
		runDone := make(chan struct{})
		go func() {
			defer close(runDone)
			elector.Run(ctx)
		}()
		led := false
	term:
		for {
			select {
			case t := <-terms:
				led = true
				log.Info("kubernetes sink: leading; writing")
				s.lead(t)
				log.Info("kubernetes sink: stopped leading")
			case <-runDone:
				break term
			}
		}
		if ctx.Err() != nil {
			if led {
				release(lock, id, log)
			}
			return nil
		}
	}
}

// release gives the lease up on shutdown, as client-go's ReleaseOnCancel
// does, so that another replica takes over at once instead of after
// leaseDuration.
func release(lock resourcelock.Interface, id string, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec, _, err := lock.Get(ctx)
	if err != nil || rec.HolderIdentity != id {
		return
	}
	now := metav1.NewTime(time.Now())
	if err := lock.Update(ctx, resourcelock.LeaderElectionRecord{
		LeaderTransitions: rec.LeaderTransitions, LeaseDurationSeconds: 1, RenewTime: now, AcquireTime: now,
	}); err != nil {
		log.Warn("kubernetes sink: cannot release the lease; another replica takes over when it expires", zap.Error(err))
	}
}

// lead lists the owned objects once, then writes every difference between
// them and the desired state, and keeps writing changes until ctx is done.
func (s *Sink) lead(ctx context.Context) {
	s.m.leader.Set(1)
	defer s.m.leader.Set(0)
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[key](200*time.Millisecond, 30*time.Second),
		workqueue.TypedRateLimitingQueueConfig[key]{})
	var wg sync.WaitGroup
	defer func() {
		s.mu.Lock()
		s.queue = nil
		s.mu.Unlock()
		q.ShutDown()
		wg.Wait()
	}()
	backoff := time.Second
	for {
		err := s.resync(ctx, q)
		if err == nil {
			break
		}
		s.log.Error("kubernetes sink: cannot list the owned objects; retrying", zap.Error(err), zap.Duration("in", backoff))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Minute)
	}
	for range s.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s.next(ctx, q) {
			}
		}()
	}
	var tick <-chan time.Time
	if s.cfg.Resync > 0 {
		t := time.NewTicker(s.cfg.Resync)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			if err := s.resync(ctx, q); err != nil {
				s.log.Warn("kubernetes sink: resync failed; next one at the next tick", zap.Error(err))
			}
		}
	}
}

// resync lists the owned objects (one paginated list per kind), takes that as
// what the API holds, and queues every difference. The first call also
// makes q the queue Apply feeds.
func (s *Sink) resync(ctx context.Context, q workqueue.TypedRateLimitingInterface[key]) error {
	listed := make(map[key]have)
	for _, kind := range served.Kinds {
		if _, ok := resources[kind]; !ok {
			continue // a kind the sink does not write (yet)
		}
		if err := s.list(ctx, kind, listed); err != nil {
			if refusedOptional(kind, err) {
				// Logged only when the sink has objects of the kind to
				// write: without traffic policy, a Role without the kind
				// is what the chart renders.
				if !s.warnedList[kind] && s.wants(kind) {
					s.log.Warn("kubernetes sink: cannot list a kind it writes only for traffic policy; its objects are neither pruned nor repaired until the Role grants it",
						zap.String("kind", string(kind)), zap.Error(err))
					s.warnedList[kind] = true
				}
				continue
			}
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.actual = listed
	s.queue = q
	queued := 0
	for k, w := range s.desired {
		if h, ok := listed[k]; ok && w.hash != "" && h.hash == w.hash {
			continue
		}
		q.Add(k)
		queued++
	}
	if s.ready {
		s.queuePruneLocked()
	}
	s.log.Info("kubernetes sink: listed the owned objects", zap.Int("owned", len(listed)),
		zap.Int("desired", len(s.desired)), zap.Int("queued", queued))
	return nil
}

// refusedOptional: a list of an optional kind refused because the Role does
// not grant it (or its CRD is absent). Not an error of the sink's: the
// chart grants the kind only to sources that serve it.
func refusedOptional(kind served.Kind, err error) bool {
	return optional[kind] && (apierrors.IsForbidden(err) || apierrors.IsNotFound(err))
}

// wants reports whether the sink has objects of kind to write.
func (s *Sink) wants(kind served.Kind) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.desired {
		if k.kind == kind {
			return true
		}
	}
	return false
}

func (s *Sink) list(ctx context.Context, kind served.Kind, into map[key]have) error {
	res := s.client.Resource(resources[kind]).Namespace(s.namespace)
	opts := metav1.ListOptions{LabelSelector: ownedSelector(s.cfg.Owner), Limit: 500}
	for {
		start := time.Now()
		page, err := res.List(ctx, opts)
		s.m.requests.WithLabelValues("list").Observe(time.Since(start).Seconds())
		if err != nil {
			if !refusedOptional(kind, err) {
				s.m.errors.WithLabelValues(string(kind), reason(err)).Inc()
			}
			return fmt.Errorf("list %s in %s: %w", kind, s.namespace, err)
		}
		for i := range page.Items {
			u := &page.Items[i]
			h, err := observedHash(u)
			if err != nil {
				h = "" // unreadable spec: rewrite it
			}
			into[key{kind, u.GetNamespace() + "/" + u.GetName()}] = have{uid: u.GetUID(), hash: h}
		}
		if page.GetContinue() == "" {
			return nil
		}
		opts.Continue = page.GetContinue()
	}
}

// next processes one queued key; false once the queue is shut down.
func (s *Sink) next(ctx context.Context, q workqueue.TypedRateLimitingInterface[key]) bool {
	k, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(k)
	if err := s.sync(ctx, k); err != nil {
		if ctx.Err() != nil {
			return false
		}
		s.log.Warn("kubernetes sink: write failed; retrying with backoff", zap.Stringer("object", k),
			zap.Int("retries", q.NumRequeues(k)), zap.Error(err))
		q.AddRateLimited(k)
		return true
	}
	q.Forget(k)
	return true
}

// errRetry asks for the key to be tried again after the backoff.
var errRetry = errors.New("retry")

// sync makes the API agree with the desired state for one key.
//
// A name the sink does not know it owns is written with a create, which the
// API server refuses if any object holds the name: nothing another writer
// created is ever modified, even if it appeared a moment before the write.
// (A server-side apply cannot be made create-only: one carrying a
// metadata.uid that no object has is refused with "uid mismatch", measured
// against kube-apiserver 1.36.) An object the sink owns is written with a
// server-side apply carrying its UID, which the API server checks, so an
// apply never lands on an object that replaced ours. Deletes carry the same
// precondition. Objects the sink created show the field manager
// registry-adapter with operation Update; their first change adds its
// Apply entry, and fields the apply leaves at the created values stay
// co-owned by both of the adapter's entries.
func (s *Sink) sync(ctx context.Context, k key) error {
	s.mu.Lock()
	w, isDesired := s.desired[k]
	h, isActual := s.actual[k]
	ready := s.ready
	var body *anypb.Any
	if isDesired {
		body = w.body()
	}
	s.mu.Unlock()

	ns, name := splitName(k.name)
	res := s.client.Resource(resources[k.kind]).Namespace(ns)
	if !isDesired {
		if !isActual {
			s.written(k, false)
			return nil
		}
		if !ready {
			// Nothing is deleted before every source has synced; MarkReady
			// queues it again.
			return nil
		}
		start := time.Now()
		err := res.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &h.uid}})
		s.m.requests.WithLabelValues("delete").Observe(time.Since(start).Seconds())
		switch {
		case err == nil || apierrors.IsNotFound(err):
			s.m.deletes.WithLabelValues(string(k.kind)).Inc()
		case apierrors.IsConflict(err):
			// The name now belongs to another object: not ours to delete.
			s.m.conflicts.WithLabelValues(string(k.kind)).Inc()
			s.log.Warn("kubernetes sink: the object was replaced by one the adapter does not own; leaving it alone",
				zap.Stringer("object", k))
		default:
			s.m.errors.WithLabelValues(string(k.kind), reason(err)).Inc()
			return fmt.Errorf("delete %s: %w", k, err)
		}
		s.mu.Lock()
		if cur, ok := s.actual[k]; ok && cur.uid == h.uid {
			delete(s.actual, k)
		}
		s.mu.Unlock()
		s.written(k, true)
		return nil
	}

	obj, hash, err := render(k.kind, s.cfg.Owner, body)
	if err != nil {
		// The same bytes will not render better on a retry.
		s.m.errors.WithLabelValues(string(k.kind), "render").Inc()
		s.log.Error("kubernetes sink: cannot render; leaving it out", zap.Stringer("object", k), zap.Error(err))
		return nil
	}
	if len(body.GetValue()) > s.cfg.MaxObjectBytes/jsonGrowth {
		if b, err := json.Marshal(obj.Object); err == nil && len(b) > s.cfg.MaxObjectBytes {
			// etcd would refuse it, on every retry. What the API holds of it
			// stays as it is; everything else is written.
			s.m.errors.WithLabelValues(string(k.kind), "too_large").Inc()
			s.log.Error("kubernetes sink: object larger than kubernetesSink.maxObjectBytes; not written",
				zap.Stringer("object", k), zap.Int("bytes", len(b)), zap.Int("maxObjectBytes", s.cfg.MaxObjectBytes))
			return nil
		}
	}
	s.mu.Lock()
	if cur := s.desired[k]; cur == w {
		cur.hash = hash
	}
	s.mu.Unlock()
	if isActual && h.hash == hash {
		s.written(k, false)
		return nil
	}
	var got *unstructured.Unstructured
	start := time.Now()
	if isActual {
		obj.SetUID(h.uid)
		got, err = res.Apply(ctx, name, obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
		s.m.requests.WithLabelValues("apply").Observe(time.Since(start).Seconds())
	} else {
		got, err = res.Create(ctx, obj, metav1.CreateOptions{FieldManager: FieldManager})
		s.m.requests.WithLabelValues("create").Observe(time.Since(start).Seconds())
	}
	if err == nil {
		s.m.applies.WithLabelValues(string(k.kind)).Inc()
		s.mu.Lock()
		s.actual[k] = have{uid: got.GetUID(), hash: hash}
		if s.foreign[k] {
			delete(s.foreign, k)
			s.m.foreign.Set(float64(len(s.foreign)))
		}
		s.mu.Unlock()
		s.written(k, true)
		return nil
	}
	if tooLarge(err) {
		// Under maxObjectBytes, yet over what this cluster's etcd stores
		// (its --max-request-bytes set below the default): the same bytes
		// fail on every retry. Left out until it changes, like one over the
		// limit; lower kubernetesSink.maxObjectBytes to have it split.
		s.m.errors.WithLabelValues(string(k.kind), "too_large").Inc()
		s.log.Error("kubernetes sink: the API server refused the object as too large; not written (lower kubernetesSink.maxObjectBytes below the cluster's etcd --max-request-bytes to have services split)",
			zap.Stringer("object", k), zap.Int("maxObjectBytes", s.cfg.MaxObjectBytes), zap.Error(err))
		return nil
	}
	if apierrors.IsInvalid(err) && !uidRefused(err) {
		// The CRD's schema refuses it (Istio's: at most 256 hosts or
		// addresses, 256 labels on an endpoint...; split.go keeps within
		// its 4096 endpoints): the same bytes fail on every retry. Left
		// out until it changes or the next resync; the rest is written.
		s.m.errors.WithLabelValues(string(k.kind), reason(err)).Inc()
		s.log.Error("kubernetes sink: the API server refused the object as invalid; not written",
			zap.Stringer("object", k), zap.Error(err))
		return nil
	}
	if !uidRefused(err) && !apierrors.IsAlreadyExists(err) {
		s.m.errors.WithLabelValues(string(k.kind), reason(err)).Inc()
		return fmt.Errorf("write %s: %w", k, err)
	}
	// Another object holds the name, or ours was replaced. Ask whose it is.
	start = time.Now()
	cur, gerr := res.Get(ctx, name, metav1.GetOptions{})
	s.m.requests.WithLabelValues("get").Observe(time.Since(start).Seconds())
	if apierrors.IsNotFound(gerr) {
		s.mu.Lock()
		delete(s.actual, k)
		s.mu.Unlock()
		return errRetry // ours was deleted meanwhile: create it
	}
	if gerr != nil {
		s.m.errors.WithLabelValues(string(k.kind), reason(gerr)).Inc()
		return fmt.Errorf("get %s after a refused apply: %w", k, gerr)
	}
	if owned(cur.GetLabels(), s.cfg.Owner) {
		// Ours, written by an earlier leader or before a restart: take its
		// UID and write again.
		oh, _ := observedHash(cur)
		s.mu.Lock()
		s.actual[k] = have{uid: cur.GetUID(), hash: oh}
		s.mu.Unlock()
		return errRetry
	}
	s.m.conflicts.WithLabelValues(string(k.kind)).Inc()
	s.mu.Lock()
	delete(s.actual, k)
	first := !s.foreign[k]
	s.foreign[k] = true
	s.m.foreign.Set(float64(len(s.foreign)))
	s.mu.Unlock()
	if first {
		s.log.Warn("kubernetes sink: an object the adapter does not own has this name; leaving it alone (retried at each resync)",
			zap.Stringer("object", k), zap.Any("itsLabels", cur.GetLabels()))
	}
	return nil
}

// written records that k's pending change reached the API (or needed no
// write), for the write-delay histogram.
func (s *Sink) written(k key, observe bool) {
	s.mu.Lock()
	t, ok := s.since[k]
	delete(s.since, k)
	s.mu.Unlock()
	if ok && observe {
		s.m.writeDelay.Observe(time.Since(t).Seconds())
	}
}

// uidRefused reports whether the API server refused an apply because its
// metadata.uid differs from the stored object's: UIDs are immutable (422), or
// a precondition failed (409).
func uidRefused(err error) bool {
	if apierrors.IsConflict(err) {
		return true
	}
	if !apierrors.IsInvalid(err) {
		return false
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Details != nil {
		for _, c := range status.Status().Details.Causes {
			if c.Field == "metadata.uid" {
				return true
			}
		}
	}
	return false
}

// tooLarge reports whether the API server refused a write for its size: its
// own request limit (413), or etcd's ("etcdserver: request is too large",
// which kube-apiserver passes on with the status of a storage error).
func tooLarge(err error) bool {
	return apierrors.IsRequestEntityTooLargeError(err) || strings.Contains(err.Error(), "request is too large")
}

// reason is an error's metric label: the HTTP status, or "network".
func reason(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Code != 0 {
		return fmt.Sprint(status.Status().Code)
	}
	// A request that ran out of time: its context or the client's timeout
	// (requestTimeout; net/http's timeout error is a DeadlineExceeded), or
	// the network's (a dial or read "i/o timeout", a net.Error).
	var timeout interface{ Timeout() bool }
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &timeout) && timeout.Timeout() {
		return "timeout"
	}
	return "network"
}

func splitName(nsName string) (string, string) {
	for i := 0; i < len(nsName); i++ {
		if nsName[i] == '/' {
			return nsName[:i], nsName[i+1:]
		}
	}
	return "", nsName
}
