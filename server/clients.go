package server

import (
	"context"
	"slices"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/peer"

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
	streams map[int64]*ClientInfo
}

var _ serverv3.Callbacks = (*clients)(nil)

func newClients(log *zap.Logger, m *Metrics, c *Cache, shard int) *clients {
	return &clients{log: log.With(zap.Int("shard", shard)), metrics: m, cache: c, shard: shard, streams: make(map[int64]*ClientInfo)}
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
	t.streams[id] = info
	t.mu.Unlock()
	if t.metrics != nil {
		t.metrics.clients.Inc()
	}
	t.log.Info("client connected", zap.Int64("stream", id), zap.String("protocol", protocol), zap.String("peer", info.Peer))
	return nil
}

func (t *clients) closed(id int64, node *core.Node) {
	t.mu.Lock()
	info := t.streams[id]
	delete(t.streams, id)
	t.mu.Unlock()
	if info == nil {
		return
	}
	if t.metrics != nil {
		t.metrics.clients.Dec()
		for typ, ts := range info.Types {
			if ts.AckedVersion != "" {
				t.metrics.acked.DeleteLabelValues(info.NodeID, typ, ts.AckedVersion)
			}
		}
	}
	t.log.Info("client disconnected", zap.Int64("stream", id), zap.String("node", node.GetId()),
		zap.Duration("connected", time.Since(info.ConnectedSince)))
}

func (t *clients) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	return t.open(ctx, id, "sotw")
}
func (t *clients) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	return t.open(ctx, id, "delta")
}
func (t *clients) OnStreamClosed(id int64, node *core.Node)      { t.closed(id, node) }
func (t *clients) OnDeltaStreamClosed(id int64, node *core.Node) { t.closed(id, node) }

func (t *clients) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	t.request(id, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetVersionInfo(), req.GetErrorDetail().GetMessage())
	return nil
}

func (t *clients) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	// Delta requests carry no version; the ACKed nonce names the response.
	t.request(id, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), "", req.GetErrorDetail().GetMessage())
	return nil
}

// request records an ACK or NACK of an earlier response.
func (t *clients) request(id int64, node *core.Node, typeURL, nonce, version, nackMsg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	info := t.streams[id]
	if info == nil {
		return
	}
	if node != nil && info.NodeID == "" {
		info.NodeID = node.GetId()
		if md := node.GetMetadata().GetFields(); md != nil {
			info.Revision = md["ISTIO_REVISION"].GetStringValue()
			info.IstioVersion = md["ISTIO_VERSION"].GetStringValue()
		}
	}
	ts := info.Types[typeURL]
	if ts == nil {
		ts = &TypeState{}
		info.Types[typeURL] = ts
	}
	if nonce == "" || nonce != ts.SentNonce {
		return
	}
	if nackMsg != "" {
		ts.LastNack = nackMsg
		if t.metrics != nil {
			t.metrics.nacks.WithLabelValues(typeURL).Inc()
		}
		t.log.Warn("client rejected a response", zap.Int64("stream", id), zap.String("node", info.NodeID),
			zap.String("type", typeURL), zap.String("error", nackMsg))
		return
	}
	if version == "" {
		version = ts.SentVersion
	}
	prev := ts.AckedVersion
	ts.AckedVersion, ts.AckedNonce = version, nonce
	if t.metrics == nil || prev == version {
		return
	}
	if prev != "" {
		t.metrics.acked.DeleteLabelValues(info.NodeID, typeURL, prev)
		// The first reply on a stream is a sync, not a change; only later
		// ACKs measure how fast a change reaches the client.
		if k := served.KindOf(typeURL); k != "" {
			if at := t.cache.ChangedAt(k); !at.IsZero() {
				t.metrics.ackLatency.WithLabelValues(string(k)).Observe(time.Since(at).Seconds())
			}
		}
	}
	t.metrics.acked.WithLabelValues(info.NodeID, typeURL, version).Set(1)
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
	if info := t.streams[id]; info != nil {
		ts := info.Types[typeURL]
		if ts == nil {
			ts = &TypeState{}
			info.Types[typeURL] = ts
		}
		ts.SentVersion, ts.SentNonce, ts.SentAt = version, nonce, time.Now()
	}
	t.mu.Unlock()
	if t.metrics != nil {
		t.metrics.pushes.WithLabelValues(typeURL, protocol).Inc()
		t.metrics.pushBytes.WithLabelValues(typeURL).Add(float64(bytes))
	}
}

func (t *clients) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error         { return nil }
func (t *clients) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}

// snapshot returns a deep copy of every connected client, by stream id.
func (t *clients) snapshot() []ClientInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]ClientInfo, 0, len(t.streams))
	for _, info := range t.streams {
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
