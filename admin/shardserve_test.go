package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/registry-adapter/registry-adapter/adapter"
	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
	"github.com/registry-adapter/registry-adapter/server"
	"github.com/registry-adapter/registry-adapter/sources"
)

// mcpClient is a minimal state-of-the-world ADS client, as istiod's config
// source client behaves: one request per type, every reply ACKed.
type mcpClient struct {
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
}

func dialMCP(t *testing.T, addr string) *mcpClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); conn.Close() })
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &mcpClient{stream: stream}
}

// get requests typeURL and returns the resources of the reply.
func (c *mcpClient) get(t *testing.T, typeURL string) []*served.Resource {
	t.Helper()
	if err := c.stream.Send(&discovery.DiscoveryRequest{TypeUrl: typeURL}); err != nil {
		t.Fatal(err)
	}
	r, err := c.stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.stream.Send(&discovery.DiscoveryRequest{TypeUrl: typeURL, VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce}); err != nil {
		t.Fatal(err)
	}
	var out []*served.Resource
	for _, a := range r.Resources {
		res, err := served.Decode(a)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res)
	}
	return out
}

// TestShardedServing wires what `run` wires with server.shards: 3: a sharded
// adapter, three caches, three listeners. A real ADS client on each listener
// gets exactly the hosts ShardOf assigns to it, a host's WorkloadEntries sit
// with its ServiceEntry, the union is what one listener serves without
// sharding, and the debug endpoints show every shard.
func TestShardedServing(t *testing.T) {
	const k, n = 3, 30
	log := zaptest.NewLogger(t)
	reg := prometheus.NewRegistry()
	src := newChanSource()
	rep := sources.NewReporter("vms", sources.NewMetrics(reg))
	named := []adapter.NamedSource{{Name: "vms", Source: src, Reporter: rep}}
	sm := server.NewMetrics(reg)
	caches := server.NewCaches(k, sm)
	cfg := server.Config{Listen: "127.0.0.1:0", Shards: k}
	cfg.SetDefaults()
	srv, err := server.NewSharded(cfg, caches, sm, log)
	if err != nil {
		t.Fatal(err)
	}
	pubs := make([]adapter.Publisher, k)
	for i, c := range caches {
		pubs[i] = c
	}
	a := adapter.NewSharded(named, adapter.Settings{Output: opts(), Debounce: adapter.DebounceConfig{Quiet: time.Millisecond, Max: 5 * time.Millisecond}}, pubs, adapter.NewMetrics(reg), log)
	dbg := &Debug{Adapter: a, Caches: caches, Server: srv, Sources: named, Gatherer: reg, Log: log}
	web := httptest.NewServer(dbg.Handler())
	defer web.Close()

	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { errs <- srv.Run(ctx) }()
	go func() { errs <- a.Run(ctx) }()
	defer func() {
		cancel()
		for range 2 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	}()
	waitUntil(t, "every listener up", srv.Serving)

	var groups []model.Group
	var hosts []string
	for i := range n {
		s := svc(fmt.Sprintf("svc-%02d", i), fmt.Sprintf("10.0.0.%d", i+1), fmt.Sprintf("10.0.1.%d", i+1))
		groups = append(groups, group(s))
		hosts = append(hosts, s.Host)
	}
	src.batches <- groups
	rep.Synced(time.Millisecond, n, 2*n)
	waitUntil(t, "ready", a.Ready)

	var unionSE, unionWE []string
	for i, addr := range srv.Addrs() {
		c := dialMCP(t, addr.String())
		ses := c.get(t, "networking.istio.io/v1/ServiceEntry")
		wes := c.get(t, "networking.istio.io/v1/WorkloadEntry")
		if len(ses) == 0 {
			t.Errorf("shard %d serves no ServiceEntry: %d hosts should spread over %d shards", i, n, k)
		}
		selectors := map[string]bool{}
		for _, r := range ses {
			host := r.Spec.(interface{ GetHosts() []string }).GetHosts()[0]
			if got := adapter.ShardOf(host, k); got != i {
				t.Errorf("shard %d serves %s, whose shard is %d", i, host, got)
			}
			selectors[r.Labels[convert.LabelService]] = true
			unionSE = append(unionSE, host)
		}
		for _, r := range wes {
			if !selectors[r.Labels[convert.LabelService]] {
				t.Errorf("shard %d serves WorkloadEntry %s without its ServiceEntry", i, r.Name)
			}
			unionWE = append(unionWE, r.Name)
		}
	}
	slices.Sort(unionSE)
	if !slices.Equal(unionSE, hosts) {
		t.Errorf("the shards' ServiceEntries together: %v, want every host %v", unionSE, hosts)
	}
	if len(unionWE) != 2*n || len(slices.Compact(slices.Sorted(slices.Values(unionWE)))) != 2*n {
		t.Errorf("the shards' WorkloadEntries together: %d distinct of %d, want %d", len(slices.Compact(slices.Sorted(slices.Values(unionWE)))), len(unionWE), 2*n)
	}

	// /debug/resources: the union, each document under its shard.
	_, body := get(t, web.URL+"/debug/resources?kind=ServiceEntry")
	if got := strings.Count(body, "kind: ServiceEntry"); got != n {
		t.Errorf("/debug/resources lists %d ServiceEntries, want %d", got, n)
	}
	for _, doc := range strings.Split(body, "---\n") {
		var shard, of int
		var listener string
		if _, err := fmt.Sscanf(doc, "# shard %d of %d, listener %s\n", &shard, &of, &listener); err != nil || of != k {
			t.Errorf("document without its shard: %v\n%s", err, doc)
			continue
		}
		if listener != srv.Addrs()[shard].String() {
			t.Errorf("shard %d listener %s, want %s", shard, listener, srv.Addrs()[shard])
		}
		for _, h := range hosts {
			if strings.Contains(doc, "\n  name: "+h+"\n") && adapter.ShardOf(h, k) != shard {
				t.Errorf("/debug/resources puts %s in shard %d, want %d", h, shard, adapter.ShardOf(h, k))
			}
		}
	}
	perShard := 0
	for i := range k {
		_, body := get(t, fmt.Sprintf("%s/debug/resources?kind=ServiceEntry&shard=%d", web.URL, i))
		perShard += strings.Count(body, "kind: ServiceEntry")
		if strings.Count(body, "# shard ") != strings.Count(body, fmt.Sprintf("# shard %d of", i)) {
			t.Errorf("?shard=%d lists other shards:\n%s", i, body)
		}
	}
	if perShard != n {
		t.Errorf("?shard=0..%d list %d ServiceEntries together, want %d", k-1, perShard, n)
	}
	if code, _ := get(t, web.URL+"/debug/resources?shard=3"); code != http.StatusBadRequest {
		t.Errorf("?shard=3 of 3: %d, want 400", code)
	}

	// /debug/clients: one client per shard, each with its shard.
	_, body = get(t, web.URL+"/debug/clients")
	var clients []server.ClientInfo
	if err := json.Unmarshal([]byte(body), &clients); err != nil {
		t.Fatal(err)
	}
	var shardsSeen []int
	for _, c := range clients {
		shardsSeen = append(shardsSeen, c.Shard)
	}
	if !slices.Equal(shardsSeen, []int{0, 1, 2}) {
		t.Errorf("/debug/clients shards %v, want [0 1 2]:\n%s", shardsSeen, body)
	}

	// /readyz: ready, with every listener listed.
	code, body := get(t, web.URL+"/readyz")
	var r readiness
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	if code != http.StatusOK || !r.Ready || len(r.Shards) != k {
		t.Errorf("/readyz: %d %s", code, body)
	}
	for i, st := range r.Shards {
		if st.Shard != i || !st.Serving || st.Clients != 1 || st.Address != srv.Addrs()[i].String() {
			t.Errorf("/readyz shard %d: %+v", i, st)
		}
	}

	_, metrics := get(t, web.URL+"/metrics")
	for i := range k {
		if want := fmt.Sprintf(`registry_adapter_server_connected_clients{shard="%d"} 1`, i); !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
