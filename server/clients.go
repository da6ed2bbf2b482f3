package server

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"

	"github.com/registry-adapter/registry-adapter/served"
)

// ClientInfo describes one connected stream, as shown on /debug/clients.
type ClientInfo struct {
	// Shard is the listener the stream is on; stream ids count per shard.
	Shard          int                   `json:"shard"`
	StreamID       int64                 `json:"streamId"`
	Protocol       string                `json:"protocol"`
	Peer           string                `json:"peer,omitempty"`
	NodeID         string                `json:"nodeId,omitempty"`
	Revision       string                `json:"revision,omitempty"`
	IstioVersion   string                `json:"istioVersion,omitempty"`
	ConnectedSince time.Time             `json:"connectedSince"`
	Types          map[string]*TypeState `json:"types"`
}

// TypeState is what one client holds of one type.
type TypeState struct {
	SentVersion  string    `json:"sentVersion,omitempty"`
	SentNonce    string    `json:"sentNonce,omitempty"`
	SentAt       time.Time `json:"sentAt,omitzero"`
	AckedVersion string    `json:"ackedVersion,omitempty"`
	AckedNonce   string    `json:"ackedNonce,omitempty"`
	LastNack     string    `json:"lastNack,omitempty"`
}

// clients tracks connected streams through go-control-plane's callbacks.
type clients struct {
	log     *zap.Logger
	metrics *Metrics
	cache   *Cache
	shard   int

	mu      sync.Mutex
	streams map[int64]*streamState
	// refusals are logged at most once per refusalLogEvery: a client that
	// opens stream after stream to be refused must not flood the log too.
	now         func() time.Time
	lastRefusal time.Time
	unlogged    int
}

const refusalLogEvery = time.Second

// streamState is what the server keeps of one stream: what /debug/clients
// shows, and the resource names it subscribes to (for their bound).
type streamState struct {
	info *ClientInfo
	subs subscriptions
}

var _ serverv3.Callbacks = (*clients)(nil)

func newClients(log *zap.Logger, m *Metrics, c *Cache, shard int) *clients {
	if m == nil {
		m = NewMetrics(nil).Shard(shard)
	}
	return &clients{log: log.With(zap.Int("shard", shard)), metrics: m, cache: c, shard: shard, streams: make(map[int64]*streamState), now: time.Now}
}

func (t *clients) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.streams)
}

func (t *clients) open(ctx context.Context, id int64, protocol string) error {
	info := &ClientInfo{Shard: t.shard, StreamID: id, Protocol: protocol, ConnectedSince: time.Now(), Types: map[string]*TypeState{}}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		info.Peer = p.Addr.String()
	}
	t.mu.Lock()
	t.streams[id] = &streamState{info: info}
	t.mu.Unlock()
	t.metrics.clients.Inc()
	t.log.Info("client connected", zap.Int64("stream", id), zap.String("protocol", protocol), zap.String("peer", info.Peer))
	return nil
}

func (t *clients) closed(id int64, node *core.Node) {
	t.mu.Lock()
	st := t.streams[id]
	delete(t.streams, id)
	if st != nil {
		t.metrics.clients.Dec()
		// Every series of the stream goes with it, so that the series of a
		// client that comes and goes do not pile up.
		for typ := range st.info.Types {
			t.unackLocked(st.info.NodeID, typ)
		}
	}
	t.mu.Unlock()
	if st == nil {
		return
	}
	t.log.Info("client disconnected", zap.Int64("stream", id), zap.String("node", clientString(node.GetId())),
		zap.Duration("connected", time.Since(st.info.ConnectedSince)))
}

// unackLocked deletes the acked series of (node, type) of a stream that
// ended, unless another stream of the node still has the type: two streams
// of one node (a reconnect that overlaps the old stream) share the series.
func (t *clients) unackLocked(node, typeURL string) {
	label := typeLabel(typeURL)
	for _, other := range t.streams {
		if other.info.NodeID != node {
			continue
		}
		for typ := range other.info.Types {
			if typeLabel(typ) == label {
				return
			}
		}
	}
	t.metrics.acked.DeleteLabelValues(node, label)
}

func (t *clients) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	return t.open(ctx, id, "sotw")
}
func (t *clients) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	return t.open(ctx, id, "delta")
}
func (t *clients) OnStreamClosed(id int64, node *core.Node)      { t.closed(id, node) }
func (t *clients) OnDeltaStreamClosed(id int64, node *core.Node) { t.closed(id, node) }

// OnStreamRequest admits a state-of-the-world request (an error ends the
// stream before go-control-plane makes a watch for it) and records it.
func (t *clients) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	return t.request(id, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetVersionInfo(),
		req.GetErrorDetail().GetMessage(), func(st *streamState, ts *TypeState) (string, error) {
			// go-control-plane ignores a request whose nonce is stale,
			// subscription included; so does the mirror.
			if ts != nil && ts.SentNonce != "" && req.GetResponseNonce() != ts.SentNonce {
				return "", nil
			}
			return refusedResourceNames, st.subs.setSotw(req.GetTypeUrl(), req.GetResourceNames())
		})
}

// OnStreamDeltaRequest admits and records an incremental request.
func (t *clients) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	// Delta requests carry no version; the ACKed nonce names the response.
	return t.request(id, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), "",
		req.GetErrorDetail().GetMessage(), func(st *streamState, ts *TypeState) (string, error) {
			if ts == nil && len(req.GetInitialResourceVersions()) > maxInitialVersions {
				return refusedInitialVersions, status.Errorf(codes.ResourceExhausted,
					"%d initial resource versions for %s, more than %d", len(req.GetInitialResourceVersions()),
					truncate(req.GetTypeUrl(), 64), maxInitialVersions)
			}
			return refusedResourceNames, st.subs.updateDelta(req)
		})
}

// admitLocked refuses a request that would make the stream hold more than a
// client may (limits.go); subscribe checks and applies its resource names.
func (t *clients) admitLocked(id int64, st *streamState, typeURL string,
	subscribe func(*streamState, *TypeState) (string, error)) error {
	reason, err := refusedTypeURL, checkTypeURL(typeURL)
	ts := st.info.Types[typeURL]
	if err == nil && ts == nil && len(st.info.Types) >= maxTypesPerStream {
		reason, err = refusedTypes, status.Errorf(codes.ResourceExhausted,
			"the stream asks for more than %d types (%q is one too many)", maxTypesPerStream, truncate(typeURL, 64))
	}
	if err == nil {
		reason, err = subscribe(st, ts)
	}
	if err == nil {
		return nil
	}
	t.metrics.refused.WithLabelValues(reason).Inc()
	if now := t.now(); now.Sub(t.lastRefusal) >= refusalLogEvery {
		t.log.Warn("refused a request; ending the stream", zap.Int64("stream", id), zap.String("peer", st.info.Peer),
			zap.String("node", st.info.NodeID), zap.Error(err), zap.Int("refusedUnlogged", t.unlogged))
		t.lastRefusal, t.unlogged = now, 0
	} else {
		t.unlogged++
	}
	return err
}

// request admits a request, then records an ACK or NACK of an earlier
// response.
func (t *clients) request(id int64, node *core.Node, typeURL, nonce, version, nackMsg string,
	subscribe func(*streamState, *TypeState) (string, error)) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[id]
	if st == nil {
		return nil
	}
	info := st.info
	if node != nil && info.NodeID == "" {
		info.NodeID = clientString(node.GetId())
		if md := node.GetMetadata().GetFields(); md != nil {
			info.Revision = clientString(md["ISTIO_REVISION"].GetStringValue())
			info.IstioVersion = clientString(md["ISTIO_VERSION"].GetStringValue())
		}
	}
	if err := t.admitLocked(id, st, typeURL, subscribe); err != nil {
		return err
	}
	ts := info.Types[typeURL]
	if ts == nil {
		ts = &TypeState{}
		info.Types[typeURL] = ts
	}
	if nonce == "" || nonce != ts.SentNonce {
		return nil
	}
	if nackMsg != "" {
		ts.LastNack = truncate(strings.ToValidUTF8(nackMsg, "\uFFFD"), maxNackMessage)
		t.metrics.nacks.WithLabelValues(typeLabel(typeURL)).Inc()
		t.metrics.acked.WithLabelValues(info.NodeID, typeLabel(typeURL)).Set(0)
		t.log.Warn("client rejected a response", zap.Int64("stream", id), zap.String("node", info.NodeID),
			zap.String("type", typeURL), zap.String("error", ts.LastNack))
		return nil
	}
	if version == "" {
		version = ts.SentVersion
	}
	prev := ts.AckedVersion
	ts.AckedVersion, ts.AckedNonce = version, nonce
	t.metrics.acked.WithLabelValues(info.NodeID, typeLabel(typeURL)).Set(1)
	if prev == version {
		return nil
	}
	if prev != "" {
		// The first reply on a stream is a sync, not a change; only later
		// ACKs measure how fast a change reaches the client.
		if k := served.KindOf(typeURL); k != "" {
			if at := t.cache.ChangedAt(k); !at.IsZero() {
				t.metrics.ackLatency.WithLabelValues(string(k)).Observe(time.Since(at).Seconds())
			}
		}
	}
	return nil
}

func (t *clients) OnStreamResponse(_ context.Context, id int64, req *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	t.response(id, req.GetTypeUrl(), resp.GetVersionInfo(), resp.GetNonce(), "sotw", resourceBytes(resp))
}

func (t *clients) OnStreamDeltaResponse(id int64, req *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	n := 0
	for _, r := range resp.GetResources() {
		n += len(r.GetResource().GetValue())
	}
	t.response(id, req.GetTypeUrl(), resp.GetSystemVersionInfo(), resp.GetNonce(), "delta", n)
}

func resourceBytes(resp *discovery.DiscoveryResponse) int {
	n := 0
	for _, a := range resp.GetResources() {
		n += len(a.GetValue())
	}
	return n
}

func (t *clients) response(id int64, typeURL, version, nonce, protocol string, bytes int) {
	t.mu.Lock()
	if st := t.streams[id]; st != nil {
		ts := st.info.Types[typeURL]
		if ts == nil {
			ts = &TypeState{}
			st.info.Types[typeURL] = ts
		}
		ts.SentVersion, ts.SentNonce, ts.SentAt = version, nonce, time.Now()
		// Unacknowledged until the client ACKs this nonce.
		t.metrics.acked.WithLabelValues(st.info.NodeID, typeLabel(typeURL)).Set(0)
	}
	t.mu.Unlock()
	t.metrics.pushes.WithLabelValues(typeLabel(typeURL), protocol).Inc()
	t.metrics.pushBytes.WithLabelValues(typeLabel(typeURL)).Add(float64(bytes))
	// A response can be NACKed: its type's NACK counter exists from now on,
	// at 0, so that increase() sees the first NACK (a series born at 1
	// shows no increase) and the NACK alert fires on it.
	t.metrics.nacks.WithLabelValues(typeLabel(typeURL))
	// Likewise the kind's change-to-ACK histogram: its count exists at 0,
	// so that the first ACKed change is an increase (the not-ACKing alert
	// compares pushes with it, and fired after a pod's first change).
	if k := served.KindOf(typeURL); k != "" {
		t.metrics.ackLatency.WithLabelValues(string(k))
	}
}

func (t *clients) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error         { return nil }
func (t *clients) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}

// snapshot returns a deep copy of every connected client, by stream id.
func (t *clients) snapshot() []ClientInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]ClientInfo, 0, len(t.streams))
	for _, st := range t.streams {
		info := st.info
		c := *info
		c.Types = make(map[string]*TypeState, len(info.Types))
		for k, v := range info.Types {
			ts := *v
			c.Types[k] = &ts
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b ClientInfo) int { return int(a.StreamID - b.StreamID) })
	return out
}
