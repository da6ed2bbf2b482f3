package consul

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// registerMany registers n services named prefix-NNN, one instance each on
// ten nodes, each with a passing service check.
func registerMany(t *testing.T, c *api.Client, prefix string, n int) {
	t.Helper()
	for i := range n {
		name := fmt.Sprintf("%s%03d", prefix, i)
		catalogNode(t, c, fmt.Sprintf("%sn%d", prefix, i%10), "127.0.9.1", nil,
			&api.AgentService{ID: name, Service: name, Address: "10.9.0.1", Port: 80}, api.HealthPassing)
	}
}

// move re-registers service i of registerMany with a new address and the
// same check: a registration change that moves no check.
func move(t *testing.T, c *api.Client, prefix string, i int, addr string) {
	t.Helper()
	name := fmt.Sprintf("%s%03d", prefix, i)
	catalogNode(t, c, fmt.Sprintf("%sn%d", prefix, i%10), "127.0.9.1", nil,
		&api.AgentService{ID: name, Service: name, Address: addr, Port: 80}, api.HealthPassing)
}

// TestConsulHTTP2 watches more services than the old 100 request slots over
// Consul's HTTPS listener: Consul answers over HTTP/2, every service gets its
// own blocking query (a stream), and a change to any of them is seen at once
// (a watch taking turns would block 5m × slots / services ≈ 3 min first).
func TestConsulHTTP2(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	consulCerts(t, dir)
	port := freePort(t)
	a := startAgent(t, agentOpts{args: tlsAgentArgs(port, dir)})
	c := a.client(t, "")
	const n = 150
	registerMany(t, c, "h2-", n)

	cfg := testConfig("https://127.0.0.1:"+port, "h2-")
	cfg.TLS = tlsClient(dir)
	cfg.Wait = 5 * time.Minute
	cfg.MaxConcurrentQueries = 100 // the old default, fewer than the services
	h := runSource(t, cfg)
	h.next("initial")
	if len(h.state) != n {
		t.Fatalf("initial: %d services", len(h.state))
	}
	if got := h.counter(h.src.metrics.http2); got != 1 {
		t.Fatalf("http2 gauge = %v: Consul's HTTPS listener did not answer over HTTP/2", got)
	}
	// Every watch, the catalog and the config entry watches hold a blocking
	// query at once.
	h.waitGauge("a blocking query per service", h.src.metrics.inflight, float64(n+1+len(cfg.ConfigEntries.kinds())))
	if got := h.counter(h.src.metrics.slotsShort); got != 0 {
		t.Errorf("watches without a slot = %v", got)
	}
	if got := h.counter(h.src.metrics.connections); got < 1 || got > 10 {
		t.Errorf("connections = %v, want a few for %d streams", got, n+1)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for k := range 20 {
		i := rng.IntN(n)
		addr := fmt.Sprintf("10.9.1.%d", k+1)
		move(t, c, "h2-", i, addr)
		name := fmt.Sprintf("h2-%03d", i)
		h.waitFor(name+" at "+addr, func(v view) bool {
			s := v.svc(name)
			return s != nil && len(s.Instances) == 1 && s.Instances[0].Address == addr
		})
	}
	t.Logf("connections for %d streams: %v", n+1, h.counter(h.src.metrics.connections))
}

// TestConsulHTTPFeeds watches more services than plain HTTP connections:
// watches take turns (a turn every 5m × 9 / 40 ≈ 1 min), and the checks and
// catalog feeds make a changed service read at once.
func TestConsulHTTPFeeds(t *testing.T) {
	t.Parallel()
	testFeeds(t, false)
}

// TestConsulHTTP2Feeds: the same past maxStreams over HTTP/2, where watches
// take turns too (a turn every 5m × 9 / 40 ≈ 1 min) and the same feeds run.
func TestConsulHTTP2Feeds(t *testing.T) {
	t.Parallel()
	testFeeds(t, true)
}

func testFeeds(t *testing.T, https bool) {
	opts := agentOpts{} // its own agent: the checks feed reads every check of the datacenter
	var dir, httpsPort string
	if https {
		dir, httpsPort = t.TempDir(), freePort(t)
		consulCerts(t, dir)
		opts.args = tlsAgentArgs(httpsPort, dir)
	}
	a := startAgent(t, opts)
	c := a.client(t, "")
	const n = 40
	registerMany(t, c, "fd-", n)
	cfg := testConfig(a.addr, "fd-")
	cfg.MaxConcurrentQueries = 12 // 9 blocking queries, 1 read, 2 feeds
	wantLog, wantHTTP2 := "more services than Consul connections", 0.0
	if https {
		cfg = testConfig("https://127.0.0.1:"+httpsPort, "fd-")
		cfg.TLS = tlsClient(dir)
		cfg.MaxStreams = 12 // the same split, of streams
		wantLog, wantHTTP2 = "more services than maxStreams", 1
	}
	cfg.Wait = 5 * time.Minute
	h := runSource(t, cfg)
	h.next("initial")
	h.waitLog(wantLog)
	if got := h.counter(h.src.metrics.http2); got != wantHTTP2 {
		t.Fatalf("http2 = %v, want %v", got, wantHTTP2)
	}
	instances := func(name string) string { return ids(h.state.svc(name)) }
	check := func(i int, status string) {
		name := fmt.Sprintf("fd-%03d", i)
		catalogNode(t, c, fmt.Sprintf("fd-n%d", i%10), "127.0.9.1", nil,
			&api.AgentService{ID: name, Service: name, Address: "10.9.0.1", Port: 80}, status)
	}

	// A check goes critical, then passing again.
	check(7, api.HealthCritical)
	h.waitFor("fd-007 critical", func(view) bool { return instances("fd-007") == "" })
	check(7, api.HealthPassing)
	h.waitFor("fd-007 passing", func(view) bool { return instances("fd-007") == "fd-n7/fd-007" })

	// A new instance with a check, on another node; then it goes.
	catalogNode(t, c, "fd-extra", "127.0.9.2", nil, &api.AgentService{ID: "x", Service: "fd-013", Port: 80}, api.HealthPassing)
	h.waitFor("second instance of fd-013", func(view) bool { return instances("fd-013") == "fd-extra/x,fd-n3/fd-013" })
	_, err := c.Catalog().Deregister(&api.CatalogDeregistration{Node: "fd-extra"}, nil)
	must(t, err)
	h.waitFor("fd-013 back to one instance", func(view) bool { return instances("fd-013") == "fd-n3/fd-013" })

	// A tag change (the catalog feed).
	catalogNode(t, c, "fd-n1", "127.0.9.1", nil,
		&api.AgentService{ID: "fd-021", Service: "fd-021", Address: "10.9.0.1", Port: 80, Tags: []string{"env=prod"}}, api.HealthPassing)
	h.waitFor("fd-021 labelled", func(v view) bool {
		s := v.svc("fd-021")
		return s != nil && len(s.Instances) == 1 && s.Instances[0].Labels.Map()["env"] == "prod"
	})

	// A node check goes critical: every instance on the node leaves.
	_, err = c.Catalog().Register(&api.CatalogRegistration{Node: "fd-n5", Address: "127.0.9.1",
		Check: &api.AgentCheck{Node: "fd-n5", CheckID: "node-alive", Name: "node", Status: api.HealthCritical}}, nil)
	must(t, err)
	h.waitFor("fd-n5's services without instances", func(view) bool {
		for i := 5; i < n; i += 10 {
			if instances(fmt.Sprintf("fd-%03d", i)) != "" {
				return false
			}
		}
		return true
	})
	if got := h.counter(h.src.metrics.inflight); got > 12 {
		t.Errorf("in flight %v > 12", got)
	}
	if got := h.counter(h.src.metrics.connections); !https && got > 12 {
		t.Errorf("connections %v > 12", got)
	}
	if got := h.counter(h.src.metrics.feedChanges.WithLabelValues("checks")); got < 1 {
		t.Errorf("feed reads (checks) = %v", got)
	}
}

// TestConsulFeedCoverage measures, against a real agent, which registration
// changes the two HTTP/1.1 feeds show (a check whose ModifyIndex moved, or
// that came or went, on /v1/health/state/any; a name or tag change on
// /v1/catalog/services) and which they miss. The misses are the worst case
// the README states: seen at the watch's turn, up to one wait.
func TestConsulFeedCoverage(t *testing.T) {
	t.Parallel()
	a := startAgent(t, agentOpts{})
	c := a.client(t, "")
	type sig map[string]uint64
	checks := func() sig {
		hc, _, err := c.Health().State(api.HealthAny, nil)
		must(t, err)
		out := sig{}
		for _, x := range hc {
			out[x.Node+"/"+x.CheckID] = x.ModifyIndex
		}
		return out
	}
	services := func() string {
		s, _, err := c.Catalog().Services(nil)
		must(t, err)
		return fmt.Sprint(s) // fmt sorts map keys
	}
	svc := func(id, addr string, port int, tags []string, meta map[string]string) *api.AgentService {
		return &api.AgentService{ID: id, Service: "cov", Address: addr, Port: port, Tags: tags, Meta: meta}
	}
	catalogNode(t, c, "cov-n1", "127.0.10.1", nil, svc("a", "10.10.0.1", 80, nil, nil), api.HealthPassing)
	catalogNode(t, c, "cov-n2", "127.0.10.2", nil, svc("b", "10.10.0.2", 80, nil, nil), "")

	for _, tc := range []struct {
		name           string
		change         func()
		checks, catalg bool // what the feeds show
	}{
		{"check goes critical", func() {
			catalogNode(t, c, "cov-n1", "127.0.10.1", nil, svc("a", "10.10.0.1", 80, nil, nil), api.HealthCritical)
		}, true, false},
		{"check back to passing", func() {
			catalogNode(t, c, "cov-n1", "127.0.10.1", nil, svc("a", "10.10.0.1", 80, nil, nil), api.HealthPassing)
		}, true, false},
		{"re-registration with a new address, same check", func() {
			catalogNode(t, c, "cov-n1", "127.0.10.1", nil, svc("a", "10.10.0.9", 80, nil, nil), api.HealthPassing)
		}, false, false},
		{"re-registration with a new port, same check", func() {
			catalogNode(t, c, "cov-n1", "127.0.10.1", nil, svc("a", "10.10.0.9", 81, nil, nil), api.HealthPassing)
		}, false, false},
		{"meta change, same check", func() {
			catalogNode(t, c, "cov-n1", "127.0.10.1", nil, svc("a", "10.10.0.9", 81, nil, map[string]string{"k": "v"}), api.HealthPassing)
		}, false, false},
		{"tag change", func() {
			catalogNode(t, c, "cov-n1", "127.0.10.1", nil, svc("a", "10.10.0.9", 81, []string{"env=prod"}, map[string]string{"k": "v"}), api.HealthPassing)
		}, true, true}, // Consul copies the service's tags into its checks
		{"new instance with a check", func() {
			catalogNode(t, c, "cov-n3", "127.0.10.3", nil, svc("c", "10.10.0.3", 80, []string{"env=prod"}, nil), api.HealthPassing)
		}, true, false},
		{"new instance without a check", func() {
			catalogNode(t, c, "cov-n4", "127.0.10.4", nil, svc("d", "10.10.0.4", 80, []string{"env=prod"}, nil), "")
		}, false, false},
		{"instance without a check deregistered", func() {
			_, err := c.Catalog().Deregister(&api.CatalogDeregistration{Node: "cov-n4"}, nil)
			must(t, err)
		}, false, false},
		{"instance with a check deregistered", func() {
			_, err := c.Catalog().Deregister(&api.CatalogDeregistration{Node: "cov-n3"}, nil)
			must(t, err)
		}, true, false},
		{"node address change", func() {
			catalogNode(t, c, "cov-n2", "127.0.10.22", nil, svc("b", "", 80, nil, nil), "")
		}, false, false},
		{"node check goes critical", func() {
			_, err := c.Catalog().Register(&api.CatalogRegistration{Node: "cov-n2", Address: "127.0.10.22",
				Check: &api.AgentCheck{Node: "cov-n2", CheckID: "alive", Name: "node", Status: api.HealthCritical}}, nil)
			must(t, err)
		}, true, false},
	} {
		before, beforeCat := checks(), services()
		tc.change()
		after, afterCat := checks(), services()
		gotChecks := fmt.Sprint(before) != fmt.Sprint(after)
		gotCatalog := beforeCat != afterCat
		if gotChecks != tc.checks || gotCatalog != tc.catalg {
			t.Errorf("%s: checks feed shows it %v (want %v), catalog feed %v (want %v)", tc.name, gotChecks, tc.checks, gotCatalog, tc.catalg)
		}
	}
}
