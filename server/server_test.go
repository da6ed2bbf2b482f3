package server

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	mcp "istio.io/api/mcp/v1alpha1"

	"github.com/registry-adapter/registry-adapter/served"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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

const (
	seV1  = "networking.istio.io/v1/ServiceEntry"
	weV1  = "networking.istio.io/v1/WorkloadEntry"
	seOld = "networking.istio.io/v1alpha3/ServiceEntry"
)

// entry builds a cache entry whose MCP envelope carries name and version.
func entry(t testing.TB, name, version string) served.Entry {
	t.Helper()
	a, err := anypb.New(&mcp.Resource{Metadata: &mcp.Metadata{Name: name, Version: version}})
	if err != nil {
		t.Fatal(err)
	}
	a.TypeUrl = served.MCPResourceTypeURL
	return served.EntryOf(name, version, a)
}

type testServer struct {
	cache   *Cache
	srv     *Server
	addr    string
	metrics *Metrics
	reg     *prometheus.Registry
}

func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	c := NewCache(m)
	cfg.Listen = "127.0.0.1:0"
	cfg.SetDefaults()
	srv, err := New(cfg, c, m, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &testServer{cache: c, srv: srv, addr: lis.Addr().String(), metrics: m, reg: reg}
}

type adsClient struct {
	t      *testing.T
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	recv   chan *discovery.DiscoveryResponse
	conn   *grpc.ClientConn
}

func dial(t *testing.T, addr string, opts ...grpc.DialOption) *adsClient {
	t.Helper()
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &adsClient{t: t, stream: stream, recv: make(chan *discovery.DiscoveryResponse, 64), conn: conn}
	go func() {
		defer close(c.recv)
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			c.recv <- r
		}
	}()
	t.Cleanup(func() {
		cancel()
		for range c.recv {
		}
		conn.Close()
	})
	return c
}

func (c *adsClient) request(typeURL, version, nonce string) {
	c.t.Helper()
	err := c.stream.Send(&discovery.DiscoveryRequest{TypeUrl: typeURL, VersionInfo: version, ResponseNonce: nonce})
	if err != nil {
		c.t.Fatal(err)
	}
}

func (c *adsClient) next() *discovery.DiscoveryResponse {
	c.t.Helper()
	select {
	case r, ok := <-c.recv:
		if !ok {
			c.t.Fatal("stream closed")
		}
		return r
	case <-time.After(10 * time.Second):
		c.t.Fatal("no response within 10s")
		return nil
	}
}

// ack acknowledges r, as istiod does for every response.
func (c *adsClient) ack(r *discovery.DiscoveryResponse) {
	c.request(r.TypeUrl, r.VersionInfo, r.Nonce)
}

func names(t *testing.T, r *discovery.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range r.Resources {
		if a.TypeUrl != served.MCPResourceTypeURL {
			t.Errorf("resource type URL %q, want %q", a.TypeUrl, served.MCPResourceTypeURL)
		}
		var m mcp.Resource
		if err := a.UnmarshalTo(&m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Metadata.Name+"@"+m.Metadata.Version)
	}
	slices.Sort(out)
	return out
}

func (c *Cache) parkedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.parked) + len(c.pDeltas)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNothingBeforeReadyThenEveryTypeAnswered(t *testing.T) {
	s := startServer(t, Config{})
	s.cache.Apply(served.KindServiceEntry, []served.Entry{entry(t, "istio-system/web", "1")}, nil)
	c := dial(t, s.addr)
	for _, typ := range istiodTypes {
		c.request(typ, "", "")
	}
	// Every request is held while the sources have not synced: a reply now
	// would be partial, and istiod deletes whatever a reply leaves out.
	waitFor(t, "all requests parked", func() bool { return s.cache.parkedCount() == len(istiodTypes) })
	select {
	case r := <-c.recv:
		t.Fatalf("reply before ready: %v", r.TypeUrl)
	default:
	}
	s.cache.MarkReady()

	got := map[string]*discovery.DiscoveryResponse{}
	for range istiodTypes {
		r := c.next()
		got[r.TypeUrl] = r
	}
	for _, typ := range istiodTypes {
		r, ok := got[typ]
		if !ok {
			t.Errorf("no reply for %s", typ)
			continue
		}
		want := 0
		if typ == seV1 {
			want = 1
		}
		if len(r.Resources) != want {
			t.Errorf("%s: %d resources, want %d", typ, len(r.Resources), want)
		}
	}
	if n := names(t, got[seV1]); !slices.Equal(n, []string{"istio-system/web@1"}) {
		t.Errorf("ServiceEntries %v", n)
	}
}

func TestTypeURLEchoedForOldIstio(t *testing.T) {
	s := startServer(t, Config{})
	s.cache.Apply(served.KindServiceEntry, []served.Entry{entry(t, "istio-system/web", "1")}, nil)
	s.cache.MarkReady()
	c := dial(t, s.addr)
	c.request(seOld, "", "")
	r := c.next()
	if r.TypeUrl != seOld {
		t.Errorf("reply type %q, want the requested %q", r.TypeUrl, seOld)
	}
	if n := names(t, r); len(n) != 1 {
		t.Errorf("v1alpha3 ServiceEntry request got %v", n)
	}
}

func TestFullStatePerTypeVersions(t *testing.T) {
	s := startServer(t, Config{})
	s.cache.Apply(served.KindServiceEntry, []served.Entry{entry(t, "ns/web", "1"), entry(t, "ns/db", "1")}, nil)
	s.cache.Apply(served.KindWorkloadEntry, []served.Entry{entry(t, "ns/web-1", "1"), entry(t, "ns/web-2", "1")}, nil)
	s.cache.MarkReady()
	c := dial(t, s.addr)
	c.request(seV1, "", "")
	c.request(weV1, "", "")
	first := map[string]*discovery.DiscoveryResponse{}
	for range 2 {
		r := c.next()
		first[r.TypeUrl] = r
		c.ack(r)
	}
	waitFor(t, "ACKs parked", func() bool { return s.cache.parkedCount() == 2 })

	// One WorkloadEntry changes: the reply carries every WorkloadEntry (the
	// client deletes what is absent) and no ServiceEntry reply is sent.
	if !s.cache.Apply(served.KindWorkloadEntry, []served.Entry{entry(t, "ns/web-2", "2")}, nil) {
		t.Fatal("Apply reported no change")
	}
	r := c.next()
	if r.TypeUrl != weV1 {
		t.Fatalf("a WorkloadEntry change pushed %s", r.TypeUrl)
	}
	if n := names(t, r); !slices.Equal(n, []string{"ns/web-1@1", "ns/web-2@2"}) {
		t.Errorf("WorkloadEntry reply %v is not the full set", n)
	}
	c.ack(r)

	// A re-apply of identical versions is no change and sends nothing; the
	// next reply the client sees is the deletion that follows.
	if s.cache.Apply(served.KindWorkloadEntry, []served.Entry{entry(t, "ns/web-1", "1")}, nil) {
		t.Error("re-applying an unchanged entry reported a change")
	}
	s.cache.Apply(served.KindServiceEntry, nil, []string{"ns/db"})
	r = c.next()
	if r.TypeUrl != seV1 {
		t.Fatalf("expected the ServiceEntry deletion, got a %s reply", r.TypeUrl)
	}
	if n := names(t, r); !slices.Equal(n, []string{"ns/web@1"}) {
		t.Errorf("after deleting db: %v", n)
	}
	if r.VersionInfo == first[seV1].VersionInfo {
		t.Error("type version did not change with its content")
	}
	// Pushes counted per type: two ServiceEntry replies, two WorkloadEntry.
	if got := testutil.ToFloat64(s.metrics.pushes.WithLabelValues(seV1, "sotw")); got != 2 {
		t.Errorf("ServiceEntry pushes = %v, want 2", got)
	}
}

func TestVersionIsContentAddressed(t *testing.T) {
	a, b := NewCache(nil), NewCache(nil)
	// Same content reached by different histories gets one version, so two
	// replicas agree and a reconnecting istiod is not pushed for nothing.
	a.Apply(served.KindServiceEntry, []served.Entry{entry(t, "ns/x", "1"), entry(t, "ns/y", "1")}, nil)
	b.Apply(served.KindServiceEntry, []served.Entry{entry(t, "ns/y", "9"), entry(t, "ns/z", "1")}, nil)
	b.Apply(served.KindServiceEntry, []served.Entry{entry(t, "ns/x", "1"), entry(t, "ns/y", "1")}, []string{"ns/z"})
	if va, vb := a.Version(served.KindServiceEntry), b.Version(served.KindServiceEntry); va != vb {
		t.Errorf("versions %s and %s for the same content", va, vb)
	}
	if got := len(b.Entries(served.KindServiceEntry)); got != 2 {
		t.Errorf("%d entries after swap-remove, want 2", got)
	}
}

func TestSerializedOnceAndShared(t *testing.T) {
	c := NewCache(nil)
	c.Apply(served.KindServiceEntry, []served.Entry{entry(t, "ns/x", "1"), entry(t, "ns/y", "1")}, nil)
	c.MarkReady()
	var resources [][]*anypb.Any
	for range 3 {
		ch := make(chan cachev3.Response, 1)
		cancel, err := c.CreateWatch(&discovery.DiscoveryRequest{TypeUrl: seV1}, nil, ch)
		if err != nil {
			t.Fatal(err)
		}
		resp := (<-ch).(*sotwResponse)
		out, _ := resp.GetDiscoveryResponse()
		resources = append(resources, out.Resources)
		cancel()
	}
	// Every client's reply shares one slice of pre-serialized resources.
	for i := 1; i < len(resources); i++ {
		if &resources[i][0] != &resources[0][0] {
			t.Error("replies to two clients do not share the serialized resources")
		}
	}
}

func TestDeltaSameResources(t *testing.T) {
	s := startServer(t, Config{})
	s.cache.Apply(served.KindWorkloadEntry, []served.Entry{entry(t, "ns/a", "1"), entry(t, "ns/b", "1")}, nil)
	s.cache.MarkReady()
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: weV1}); err != nil {
		t.Fatal(err)
	}
	r, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Resources) != 2 || len(r.RemovedResources) != 0 {
		t.Fatalf("first delta reply: %d resources, %d removed", len(r.Resources), len(r.RemovedResources))
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: weV1, ResponseNonce: r.Nonce}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delta ACK parked", func() bool { return s.cache.parkedCount() == 1 })
	s.cache.Apply(served.KindWorkloadEntry, []served.Entry{entry(t, "ns/a", "2"), entry(t, "ns/c", "1")}, []string{"ns/b"})
	r, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, res := range r.Resources {
		got = append(got, res.Name+"@"+res.Version)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"ns/a@2", "ns/c@1"}) || !slices.Equal(r.RemovedResources, []string{"ns/b"}) {
		t.Errorf("delta reply: resources %v removed %v; want only the changes", got, r.RemovedResources)
	}
}

func TestClientsTracked(t *testing.T) {
	s := startServer(t, Config{})
	s.cache.MarkReady()
	c := dial(t, s.addr)
	c.request(seV1, "", "")
	r := c.next()
	c.ack(r)
	waitFor(t, "ACK recorded", func() bool {
		cl := s.srv.Clients()
		return len(cl) == 1 && cl[0].Types[seV1] != nil && cl[0].Types[seV1].AckedNonce == r.Nonce
	})
	info := s.srv.Clients()[0]
	if info.Types[seV1].AckedVersion != r.VersionInfo || info.Protocol != "sotw" || info.Peer == "" {
		t.Errorf("client info %+v", info)
	}
	if got := testutil.ToFloat64(s.metrics.clients); got != 1 {
		t.Errorf("connected clients gauge %v", got)
	}
}

func TestListenAddrs(t *testing.T) {
	for _, c := range []struct {
		listen string
		shards int
		want   []string
	}{
		{"127.0.0.1:15010", 1, []string{"127.0.0.1:15010"}},
		{":http", 1, []string{":http"}},
		{"0.0.0.0:15010", 3, []string{"0.0.0.0:15010", "0.0.0.0:15011", "0.0.0.0:15012"}},
		// Port 0: each shard takes its own ephemeral port.
		{"127.0.0.1:0", 2, []string{"127.0.0.1:0", "127.0.0.1:0"}},
		{"[::1]:15010", 2, []string{"[::1]:15010", "[::1]:15011"}},
		{"0.0.0.0:65534", 2, []string{"0.0.0.0:65534", "0.0.0.0:65535"}},
	} {
		cfg := Config{Listen: c.listen, Shards: c.shards}
		cfg.SetDefaults()
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s x%d: Validate: %v", c.listen, c.shards, err)
		}
		got, err := cfg.ListenAddrs()
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%s x%d: ListenAddrs = %v, %v; want %v", c.listen, c.shards, got, err, c.want)
		}
	}
	var unset Config
	unset.SetDefaults()
	if unset.Shards != 1 {
		t.Errorf("default shards %d, want 1", unset.Shards)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Listen: "nope"}, "server.listen"},
		{Config{Listen: ":1", TLS: TLSConfig{CertFile: "x"}}, "together"},
		{Config{Listen: ":1", KeepaliveMinTime: time.Minute}, "keepaliveMinTime"},
		{Config{Listen: ":1", Shards: -1}, "server.shards -1: must be between 1 and 64"},
		{Config{Listen: ":1", Shards: 65}, "server.shards 65: must be between 1 and 64"},
		{Config{Listen: ":http", Shards: 2}, "the port must be a number"},
		{Config{Listen: "0.0.0.0:65535", Shards: 2}, "needs ports 65535-65536"},
		{Config{Listen: ":1", Shards: 1, MaxConnections: -1, MaxConcurrentStreams: 8}, "server.maxConnections -1: must be between 1 and 100000"},
		{Config{Listen: ":1", Shards: 1, MaxConnections: 100, MaxConcurrentStreams: 1001}, "server.maxConcurrentStreams 1001: must be between 1 and 1000"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want an error about %s", c.cfg, err, c.want)
		}
	}
}
