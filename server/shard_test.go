package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/registry-adapter/registry-adapter/served"
)

type shardedServer struct {
	caches []*Cache
	srv    *Server
	reg    *prometheus.Registry
	addrs  []string
	stop   func() error
}

// startSharded runs k shards through Run on 127.0.0.1:0, so each takes its
// own ephemeral port, the way tests and a port-0 config do.
func startSharded(t *testing.T, k int, cfg Config) *shardedServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	caches := NewCaches(k, m)
	cfg.Listen, cfg.Shards = "127.0.0.1:0", k
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := NewSharded(cfg, caches, m, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	stopped := false
	s := &shardedServer{caches: caches, srv: srv, reg: reg}
	s.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	waitFor(t, "every shard serving", srv.Serving)
	for _, a := range srv.Addrs() {
		s.addrs = append(s.addrs, a.String())
	}
	return s
}

// TestShardsServeTheirOwnCache: K listeners, each with its own cache. A
// client on shard i gets exactly cache i's resources, clients and metrics
// are told apart by shard, and stopping ends every listener.
func TestShardsServeTheirOwnCache(t *testing.T) {
	const k = 3
	s := startSharded(t, k, Config{})
	if len(s.addrs) != k || len(slices.Compact(slices.Sorted(slices.Values(s.addrs)))) != k {
		t.Fatalf("addresses %v, want %d distinct", s.addrs, k)
	}
	if s.srv.Addr().String() != s.addrs[0] {
		t.Errorf("Addr %s, want shard 0's %s", s.srv.Addr(), s.addrs[0])
	}
	for i, c := range s.caches {
		var es []served.Entry
		for j := range i + 1 {
			es = append(es, entry(t, fmt.Sprintf("ns/shard%d-svc%d", i, j), "1"))
		}
		c.Apply(served.KindServiceEntry, es, nil)
		c.MarkReady()
	}

	var union []string
	clients := make([]*adsClient, k)
	for i, addr := range s.addrs {
		clients[i] = dial(t, addr)
		clients[i].request(seV1, "", "")
		r := clients[i].next()
		got := names(t, r)
		if len(got) != i+1 {
			t.Errorf("shard %d serves %v, want %d resources", i, got, i+1)
		}
		for _, n := range got {
			if !strings.HasPrefix(n, fmt.Sprintf("ns/shard%d-", i)) {
				t.Errorf("shard %d serves %s, which is another shard's", i, n)
			}
		}
		union = append(union, got...)
		clients[i].ack(r)
	}
	if len(union) != 1+2+3 {
		t.Errorf("union %v, want 6 resources", union)
	}

	// A change on one shard reaches that shard's client only.
	s.caches[1].Apply(served.KindServiceEntry, []served.Entry{entry(t, "ns/shard1-svc9", "1")}, nil)
	if got := names(t, clients[1].next()); len(got) != 3 {
		t.Errorf("shard 1 after a change: %v", got)
	}
	for _, i := range []int{0, 2} {
		select {
		case r := <-clients[i].recv:
			t.Errorf("shard %d got a push for shard 1's change: %v", i, names(t, r))
		case <-time.After(100 * time.Millisecond):
		}
	}

	waitFor(t, "one client per shard", func() bool {
		for _, st := range s.srv.Status() {
			if st.Clients != 1 {
				return false
			}
		}
		return true
	})
	cs := s.srv.Clients()
	if len(cs) != k {
		t.Fatalf("clients %+v, want one per shard", cs)
	}
	for i, c := range cs {
		if c.Shard != i {
			t.Errorf("client %d is on shard %d, want %d (ordered by shard)", i, c.Shard, i)
		}
	}
	for i, st := range s.srv.Status() {
		if st.Shard != i || st.Address != s.addrs[i] || !st.Serving {
			t.Errorf("status %d: %+v", i, st)
		}
	}
	for i := range k {
		shard := fmt.Sprint(i)
		want := float64(i + 1)
		if i == 1 {
			want++
		}
		if got := sample(t, s.reg, "registry_adapter_server_resources", "kind", "ServiceEntry", "shard", shard); got != want {
			t.Errorf("resources{shard=%s} = %v, want %v", shard, got, want)
		}
		if got := sample(t, s.reg, "registry_adapter_server_connected_clients", "shard", shard); got != 1 {
			t.Errorf("connected_clients{shard=%s} = %v, want 1", shard, got)
		}
	}

	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if s.srv.Serving() {
		t.Error("still serving after stop")
	}
	for i, addr := range s.addrs {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("shard %d still accepts connections on %s", i, addr)
		}
	}
}

// TestShardsShareTLS: every listener serves the configured key pair.
func TestShardsShareTLS(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	ca.issue(t, dir, "registry-adapter.istio-system.svc", 10)
	s := startSharded(t, 2, Config{TLS: TLSConfig{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}})
	for i, c := range s.caches {
		c.Apply(served.KindServiceEntry, []served.Entry{entry(t, fmt.Sprintf("ns/svc%d", i), "1")}, nil)
		c.MarkReady()
	}
	creds := credentials.NewTLS(&tls.Config{RootCAs: ca.pool, ServerName: "registry-adapter.istio-system.svc"})
	for i, addr := range s.addrs {
		c := dial(t, addr, grpc.WithTransportCredentials(creds))
		c.request(seV1, "", "")
		if got := names(t, c.next()); !slices.Equal(got, []string{fmt.Sprintf("ns/svc%d@1", i)}) {
			t.Errorf("shard %d over TLS: %v", i, got)
		}
	}
}

// TestRunFailsWhenAShardCannotListen: a port taken by someone else fails the
// whole server at start, and frees the ports it had bound.
func TestRunFailsWhenAShardCannotListen(t *testing.T) {
	// Two consecutive free ports, the second one then taken.
	var base int
	var taken net.Listener
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if taken, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1)); err == nil {
			base = p
			break
		}
	}
	if base == 0 {
		t.Skip("no two consecutive free ports")
	}
	defer taken.Close()
	cfg := Config{Listen: fmt.Sprintf("127.0.0.1:%d", base), Shards: 2}
	cfg.SetDefaults()
	srv, err := NewSharded(cfg, NewCaches(2, nil), nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "shard 1") {
		t.Fatalf("Run = %v, want shard 1's listen error", err)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base))
	if err != nil {
		t.Errorf("shard 0's port was not released: %v", err)
	} else {
		l.Close()
	}
}

func TestNewShardedRejectsBadCounts(t *testing.T) {
	for _, c := range []struct{ shards, caches int }{{0, 0}, {0, MaxShards + 1}, {3, 2}, {1, 2}} {
		cfg := Config{Listen: "127.0.0.1:0", Shards: c.shards}
		if _, err := NewSharded(cfg, NewCaches(c.caches, nil), nil, zaptest.NewLogger(t)); err == nil {
			t.Errorf("server.shards %d with %d caches accepted", c.shards, c.caches)
		}
	}
	if _, err := New(Config{Listen: "127.0.0.1:0", Shards: 2}, NewCache(nil), nil, zaptest.NewLogger(t)); err == nil {
		t.Error("New with server.shards 2 accepted one cache")
	}
}

// sample is the value of the series of name whose labels are exactly the
// given name/value pairs.
func sample(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(want) {
				continue
			}
			for _, l := range m.GetLabel() {
				if want[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}
