package main

// The clients stand in for istiod replicas: one gRPC connection each, one
// state-of-the-world ADS stream asking for every type istiod asks a config
// source for, each response decoded the way istiod's pkg/adsc does it
// (UnmarshalTo an MCP Resource, then the body) before it is ACKed.

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	mcp "istio.io/api/mcp/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/registry-adapter/registry-adapter/bench/floor"
	"github.com/registry-adapter/registry-adapter/served"
)

// istiodTypes are the type URLs a current istiod asks an xds:// config source for.
var istiodTypes = []string{
	"core/v1alpha1/MeshConfig",
	"networking.istio.io/v1/DestinationRule", "networking.istio.io/v1/Gateway",
	"networking.istio.io/v1/ServiceEntry", "networking.istio.io/v1/Sidecar",
	"networking.istio.io/v1/VirtualService", "networking.istio.io/v1/WorkloadEntry",
	"networking.istio.io/v1/WorkloadGroup", "networking.istio.io/v1alpha3/EnvoyFilter",
	"networking.istio.io/v1beta1/ProxyConfig", "security.istio.io/v1/AuthorizationPolicy",
	"security.istio.io/v1/PeerAuthentication", "security.istio.io/v1/RequestAuthentication",
	"telemetry.istio.io/v1/Telemetry", "extensions.istio.io/v1alpha1/TrafficExtension",
	"extensions.istio.io/v1alpha1/WasmPlugin",
}

func typeURLOf(kind served.Kind) string { return "networking.istio.io/v1/" + string(kind) }

type ackRec struct {
	Version string
	T       int64 // unix ns when the ACK was sent
	Decoded int
}

type client struct {
	id     int
	decode bool

	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	watch   map[string]int64    // WorkloadEntry address -> when first seen (0: not yet)
	acks    map[string][]ackRec // by type URL
	last    map[string]string   // by type URL: last ACKed version
	errs    []error
	changed chan struct{}
}

func newClient(id int, decode bool) *client {
	return &client{id: id, decode: decode, acks: map[string][]ackRec{}, last: map[string]string{}, changed: make(chan struct{}, 1)}
}

// connect opens a fresh connection and stream and sends the initial
// requests; the responses are handled in the background.
func (c *client) connect(addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		conn.Close()
		return err
	}
	md, _ := structpb.NewStruct(map[string]any{"GENERATOR": "api", "ISTIO_VERSION": "1.31.0"})
	node := &core.Node{Id: fmt.Sprintf("sidecar~127.0.0.%d~istiod-bench-%d.istio-system~istio-system.svc.cluster.local", c.id+1, c.id), Metadata: md}
	for i, t := range istiodTypes {
		req := &discovery.DiscoveryRequest{TypeUrl: t}
		if i == 0 {
			req.Node = node
		}
		if err := stream.Send(req); err != nil {
			cancel()
			conn.Close()
			return err
		}
	}
	c.mu.Lock()
	c.last = map[string]string{}
	c.mu.Unlock()
	c.conn, c.cancel, c.done = conn, cancel, make(chan struct{})
	go c.recv(stream, c.done)
	return nil
}

func (c *client) recv(stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient, done chan struct{}) {
	defer close(done)
	for {
		resp, err := stream.Recv()
		if err != nil {
			return
		}
		n := 0
		if c.decode && len(resp.GetResources()) > 0 {
			n, err = c.decodeAll(resp.GetResources())
			if err != nil {
				c.fail(err)
			}
		}
		ack := &discovery.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		t := time.Now().UnixNano()
		if err := stream.Send(ack); err != nil {
			return
		}
		c.mu.Lock()
		c.acks[resp.GetTypeUrl()] = append(c.acks[resp.GetTypeUrl()], ackRec{Version: resp.GetVersionInfo(), T: t, Decoded: n})
		c.last[resp.GetTypeUrl()] = resp.GetVersionInfo()
		c.mu.Unlock()
		select {
		case c.changed <- struct{}{}:
		default:
		}
	}
}

func (c *client) fail(err error) {
	c.mu.Lock()
	c.errs = append(c.errs, err)
	c.mu.Unlock()
}

func (c *client) close() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	<-c.done
	c.conn.Close()
	c.cancel = nil
}

// has reports whether the client ACKed version of typeURL last.
func (c *client) has(typeURL, version string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last[typeURL] == version
}

// ackTime is when the client ACKed version of typeURL (0: never).
func (c *client) ackTime(typeURL, version string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	acks := c.acks[typeURL]
	for i := len(acks) - 1; i >= 0; i-- {
		if acks[i].Version == version {
			return acks[i].T
		}
	}
	return 0
}

// acksSince returns the ACKs of typeURL sent at or after t.
func (c *client) acksSince(typeURL string, t int64) []ackRec {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []ackRec
	for _, a := range c.acks[typeURL] {
		if a.T >= t {
			out = append(out, a)
		}
	}
	return out
}

// waitAll waits until every client ACKed every wanted version (type URL ->
// version), and returns when the last of them did.
func waitAll(clients []*client, want map[string]string, timeout time.Duration) (int64, error) {
	deadline := time.Now().Add(timeout)
	for {
		all := true
		for _, c := range clients {
			for t, v := range want {
				if !c.has(t, v) {
					all = false
				}
			}
		}
		if all {
			var last int64
			for _, c := range clients {
				for t, v := range want {
					last = max(last, c.ackTime(t, v))
				}
			}
			return last, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("clients did not ACK %v within %s", want, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// decodeAll is floor.DecodeResources, and also notes when watched
// addresses first show up in a WorkloadEntry or an inline endpoint.
func (c *client) decodeAll(resources []*anypb.Any) (int, error) {
	c.mu.Lock()
	watching := len(c.watch) > 0
	c.mu.Unlock()
	if !watching {
		return floor.DecodeResources(resources)
	}
	var seen []string
	for _, a := range resources {
		var m mcp.Resource
		if err := a.UnmarshalTo(&m); err != nil {
			return 0, err
		}
		spec, err := m.GetBody().UnmarshalNew()
		if err != nil {
			return 0, err
		}
		switch spec := spec.(type) {
		case *networking.WorkloadEntry:
			seen = append(seen, spec.GetAddress())
		case *networking.ServiceEntry:
			for _, ep := range spec.GetEndpoints() {
				seen = append(seen, ep.GetAddress())
			}
		case *networking.VirtualService:
			if r := spec.GetHttp(); len(r) > 0 && len(spec.GetHosts()) > 0 && len(r[len(r)-1].GetRoute()) > 0 {
				seen = append(seen, splitKey(spec.GetHosts()[0], r[len(r)-1].GetRoute()[0].GetWeight()))
			}
		}
	}
	now := time.Now().UnixNano()
	c.mu.Lock()
	for _, addr := range seen {
		if t, ok := c.watch[addr]; ok && t == 0 {
			c.watch[addr] = now
		}
	}
	c.mu.Unlock()
	return len(resources), nil
}

// splitKey names a VirtualService of host whose default route's first
// destination has weight w, for watchAddress.
func splitKey(host string, w int32) string { return fmt.Sprintf("vs:%s:%d", host, w) }

// watchAddress starts noting when addr first shows up in a WorkloadEntry
// or an inline endpoint (or, for a splitKey, a VirtualService with that split).
func (c *client) watchAddress(addr string) {
	c.mu.Lock()
	if c.watch == nil {
		c.watch = map[string]int64{}
	}
	c.watch[addr] = 0
	c.mu.Unlock()
}

// seenAt is when addr first showed up (0: not yet).
func (c *client) seenAt(addr string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watch[addr]
}
