// Package server serves the adapter's resources to istiod over MCP-over-xDS:
// go-control-plane's ADS server in front of this package's full-state Cache.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"go.uber.org/zap"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// Config is the xDS listener's configuration.
type Config struct {
	// Listen is the address istiod connects to (meshConfig.configSources
	// "xds://HOST:PORT").
	Listen string    `yaml:"listen"`
	TLS    TLSConfig `yaml:"tls"`
	// KeepaliveMinTime is the shortest client ping interval tolerated.
	// istiod pings every 30 s; grpc-go's default (5 min) answers its pings
	// with GOAWAY too_many_pings after about two minutes, which forces a
	// reconnect and a full resync.
	KeepaliveMinTime time.Duration `yaml:"keepaliveMinTime"`
	// Shards spreads the resources over this many listeners, shard i on the
	// Listen port + i, each one xds:// config source in istiod: a push then
	// costs istiod the decode of one shard instead of the whole set.
	Shards int `yaml:"shards"`
	// MaxConnections bounds the connections each listener holds; more wait
	// in the kernel's accept queue until one closes. Each istiod replica
	// holds one per listener.
	MaxConnections int `yaml:"maxConnections"`
	// MaxConcurrentStreams is gRPC's per-connection stream limit; istiod
	// opens one stream per connection.
	MaxConcurrentStreams int `yaml:"maxConcurrentStreams"`
}

// maxConnectionsLimit and maxConcurrentStreamsLimit are sanity limits for the
// two settings, not measured optima.
const (
	maxConnectionsLimit       = 100000
	maxConcurrentStreamsLimit = 1000
)

// MaxShards bounds server.shards. It is a sanity limit, not a measured
// optimum: each shard costs a port, a gRPC server and one stream per istiod.
const MaxShards = 64

// ListenAddrs returns the address of each shard: the Listen port + i on the
// Listen host. Port 0 stays 0 for every shard, so each takes its own
// ephemeral port (tests; Server.Addrs tells which).
func (c *Config) ListenAddrs() ([]string, error) {
	shards := max(c.Shards, 1)
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("server.listen %q: %w", c.Listen, err)
	}
	if shards == 1 {
		return []string{c.Listen}, nil
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return nil, fmt.Errorf("server.listen %q: with server.shards %d the port must be a number (shard i listens on port + i)", c.Listen, shards)
	}
	if p != 0 && p+shards-1 > 65535 {
		return nil, fmt.Errorf("server.listen %q: server.shards %d needs ports %d-%d, beyond 65535", c.Listen, shards, p, p+shards-1)
	}
	addrs := make([]string, shards)
	for i := range addrs {
		n := p
		if p != 0 {
			n = p + i
		}
		addrs[i] = net.JoinHostPort(host, strconv.Itoa(n))
	}
	return addrs, nil
}

// TLSConfig enables server-side TLS. istiod can only verify the server
// (tlsSettings mode SIMPLE) and presents no client certificate, so there is
// no client authentication to configure here: restrict who can reach the
// port with a NetworkPolicy.
type TLSConfig struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:15010"
	}
	if c.KeepaliveMinTime == 0 {
		c.KeepaliveMinTime = 10 * time.Second
	}
	if c.Shards == 0 {
		c.Shards = 1
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("server.listen %q: %w", c.Listen, err)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("server.tls: certFile and keyFile must be set together")
	}
	if c.KeepaliveMinTime < 0 || c.KeepaliveMinTime > 30*time.Second {
		return fmt.Errorf("server.keepaliveMinTime %s: must be at most 30s, istiod's ping interval", c.KeepaliveMinTime)
	}
	if c.Shards < 1 || c.Shards > MaxShards {
		return fmt.Errorf("server.shards %d: must be between 1 and %d", c.Shards, MaxShards)
	}
	if _, err := c.ListenAddrs(); err != nil {
		return err
	}
	if c.MaxConnections < 1 || c.MaxConnections > maxConnectionsLimit {
		return fmt.Errorf("server.maxConnections %d: must be between 1 and %d", c.MaxConnections, maxConnectionsLimit)
	}
	if c.MaxConcurrentStreams < 1 || c.MaxConcurrentStreams > maxConcurrentStreamsLimit {
		return fmt.Errorf("server.maxConcurrentStreams %d: must be between 1 and %d", c.MaxConcurrentStreams, maxConcurrentStreamsLimit)
	}
	return nil
}

// Server is the MCP-over-xDS gRPC server: one listener, gRPC server and
// Cache per shard. Shards share the TLS key pair, the keepalive policy and the
// metric collectors (each under its own shard label).
type Server struct {
	cfg    Config
	log    *zap.Logger
	shards []*shard
	tls    *tls.Config
	certs  *certReloader
}

// shard is one listener and what it serves.
type shard struct {
	index   int
	cache   *Cache
	clients *clients

	mu   sync.Mutex
	addr net.Addr
	up   bool
}

// New builds a single-listener server for cache; m is used as given, so a
// shard's view (Metrics.Shard) keeps its label.
func New(cfg Config, cache *Cache, m *Metrics, log *zap.Logger) (*Server, error) {
	return newServer(cfg, []*Cache{cache}, []*Metrics{m}, log)
}

// NewSharded builds a server with one listener per cache; caches[i] is
// served on shard i's address (Config.ListenAddrs). Build each cache with
// NewCache(m.Shard(i)) so its metrics carry its shard. The TLS key pair, if
// configured, is loaded now so that a bad path fails at start rather than at
// istiod's first dial.
func NewSharded(cfg Config, caches []*Cache, m *Metrics, log *zap.Logger) (*Server, error) {
	ms := make([]*Metrics, len(caches))
	for i := range ms {
		ms[i] = m.Shard(i)
	}
	return newServer(cfg, caches, ms, log)
}

func newServer(cfg Config, caches []*Cache, ms []*Metrics, log *zap.Logger) (*Server, error) {
	if len(caches) == 0 || len(caches) > MaxShards {
		return nil, fmt.Errorf("server: %d caches, want 1 to %d", len(caches), MaxShards)
	}
	// A mismatch would serve some shard's hosts nowhere, or on the wrong port.
	if cfg.Shards > 0 && cfg.Shards != len(caches) {
		return nil, fmt.Errorf("server: server.shards is %d but there are %d caches", cfg.Shards, len(caches))
	}
	s := &Server{cfg: cfg, log: log}
	for i, c := range caches {
		s.shards = append(s.shards, &shard{index: i, cache: c, clients: newClients(log, ms[i], c, i)})
	}
	if cfg.TLS.CertFile != "" {
		r, err := newCertReloader(cfg.TLS.CertFile, cfg.TLS.KeyFile, log)
		if err != nil {
			return nil, err
		}
		s.certs = r
		s.tls = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
	}
	return s, nil
}

// NewCaches returns k empty caches, cache i counted under shard i.
func NewCaches(k int, m *Metrics) []*Cache {
	out := make([]*Cache, k)
	for i := range out {
		out[i] = NewCache(m.Shard(i))
	}
	return out
}

// Shards is the number of listeners.
func (s *Server) Shards() int { return len(s.shards) }

// Run listens on every shard's address and serves until ctx is done, then
// stops gracefully. If any address cannot be bound, none is served.
func (s *Server) Run(ctx context.Context) error {
	cfg := s.cfg
	cfg.Shards = len(s.shards)
	addrs, err := cfg.ListenAddrs()
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	lis := make([]net.Listener, 0, len(addrs))
	for i, addr := range addrs {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range lis {
				_ = l.Close()
			}
			return fmt.Errorf("server: shard %d: listen %s: %w", i, addr, err)
		}
		lis = append(lis, l)
	}
	return s.Serve(ctx, lis...)
}

// Serve serves shard i on lis[i] until ctx is done, or until any listener
// fails, which stops them all: a shard that is down leaves istiod without
// its share of the resources, and the process should restart rather than
// limp along.
func (s *Server) Serve(ctx context.Context, lis ...net.Listener) error {
	if len(lis) != len(s.shards) {
		for _, l := range lis {
			_ = l.Close()
		}
		return fmt.Errorf("server: %d listeners for %d shards", len(lis), len(s.shards))
	}
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             s.cfg.KeepaliveMinTime,
			PermitWithoutStream: true,
		}),
		// Our own pings find istiods that vanished without closing the stream.
		// A connection without a stream is not istiod's (it opens its stream
		// at once): it is closed after a while rather than holding one of
		// MaxConnections.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second, MaxConnectionIdle: 2 * time.Minute}),
		grpc.MaxConcurrentStreams(uint32(max(s.cfg.MaxConcurrentStreams, 1))),
		// A connection that never completes its handshake gives its slot back.
		grpc.ConnectionTimeout(10 * time.Second),
	}
	if s.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.tls)))
	}
	// Streams end when xdsCtx does; GracefulStop alone would wait forever on
	// istiod's long-lived streams.
	xdsCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		shard int
		err   error
	}
	errc := make(chan result, len(s.shards))
	servers := make([]*grpc.Server, len(s.shards))
	for i, sh := range s.shards {
		g := grpc.NewServer(append(slices.Clip(opts), grpc.ForceServerCodecV2(newResponseCodec(sh.cache.records)))...)
		discovery.RegisterAggregatedDiscoveryServiceServer(g, serverv3.NewServer(xdsCtx, sh.cache, sh.clients))
		servers[i] = g
		sh.setUp(lis[i].Addr())
		fields := []zap.Field{zap.String("address", lis[i].Addr().String()), zap.Bool("tls", s.tls != nil)}
		if len(s.shards) > 1 {
			fields = append(fields, zap.Int("shard", i), zap.Int("shards", len(s.shards)))
		}
		s.log.Info("serving MCP-over-xDS", fields...)
		if s.tls == nil && !isLoopbackAddr(lis[i].Addr()) {
			// istiod presents no credentials, so TLS is what keeps a network
			// peer from reading every served address and identity, or from
			// posing as this server to istiod.
			s.log.Warn("serving xDS in plaintext on a non-loopback address: anyone on the network path can read "+
				"every served address and identity, and can alter what istiod receives; set server.tls "+
				"(and tlsSettings mode SIMPLE in istiod's configSources)", fields...)
		}
		l := lis[i]
		if s.cfg.MaxConnections > 0 {
			l = netutil.LimitListener(l, s.cfg.MaxConnections)
		}
		go func() { errc <- result{i, g.Serve(l)} }()
	}

	var failed error
	pending := len(s.shards)
	select {
	case r := <-errc:
		pending--
		s.shards[r.shard].setDown()
		failed = fmt.Errorf("server: shard %d: serve: %w", r.shard, r.err)
		s.log.Error("a listener failed; stopping every shard", zap.Int("shard", r.shard), zap.Error(r.err))
	case <-ctx.Done():
	}
	for _, sh := range s.shards {
		sh.setDown()
	}
	cancel()
	// Every shard drains in parallel within one grace period.
	stopped := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, g := range servers {
			wg.Go(g.GracefulStop)
		}
		wg.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		for _, g := range servers {
			g.Stop()
		}
		<-stopped
	}
	for range pending {
		<-errc
	}
	s.log.Info("stopped serving")
	return failed
}

// isLoopbackAddr reports whether a listener's address can only be reached
// from this host. A wildcard address (0.0.0.0, ::) is reachable from anywhere.
func isLoopbackAddr(a net.Addr) bool {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.IsLoopback()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (sh *shard) setUp(addr net.Addr) {
	sh.mu.Lock()
	sh.addr, sh.up = addr, true
	sh.mu.Unlock()
}

func (sh *shard) setDown() {
	sh.mu.Lock()
	sh.up = false
	sh.mu.Unlock()
}

func (sh *shard) status() ShardStatus {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := ShardStatus{Shard: sh.index, Serving: sh.up, Clients: sh.clients.count()}
	if sh.addr != nil {
		st.Address = sh.addr.String()
	}
	return st
}

// ShardStatus is one listener's state, as /readyz shows it.
type ShardStatus struct {
	Shard   int    `json:"shard"`
	Address string `json:"address,omitempty"`
	Serving bool   `json:"serving"`
	Clients int    `json:"clients"`
}

// Status returns every shard's state, in shard order.
func (s *Server) Status() []ShardStatus {
	out := make([]ShardStatus, len(s.shards))
	for i, sh := range s.shards {
		out[i] = sh.status()
	}
	return out
}

// Addr is shard 0's listening address once serving (nil before).
func (s *Server) Addr() net.Addr {
	sh := s.shards[0]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.addr
}

// Addrs are every shard's listening addresses, in shard order, once serving
// (nil entries before).
func (s *Server) Addrs() []net.Addr {
	out := make([]net.Addr, len(s.shards))
	for i, sh := range s.shards {
		sh.mu.Lock()
		out[i] = sh.addr
		sh.mu.Unlock()
	}
	return out
}

// Serving reports whether every shard's listener is up: istiod needs all of
// its config sources to become ready, so one shard down is not serving.
func (s *Server) Serving() bool {
	for _, sh := range s.shards {
		sh.mu.Lock()
		up := sh.up
		sh.mu.Unlock()
		if !up {
			return false
		}
	}
	return true
}

// Clients returns the connected clients of every shard, by shard then
// stream id (stream ids are per listener).
func (s *Server) Clients() []ClientInfo {
	var out []ClientInfo
	for _, sh := range s.shards {
		out = append(out, sh.clients.snapshot()...)
	}
	if out == nil {
		out = []ClientInfo{}
	}
	return out
}

// certReloader serves the key pair on disk, reloading it when either file
// changes, so rotated certificates (cert-manager, a mounted Secret) take effect
// without a restart.
type certReloader struct {
	certFile, keyFile string
	log               *zap.Logger
	// minInterval rate-limits the stat calls made during handshakes.
	minInterval time.Duration

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

func newCertReloader(certFile, keyFile string, log *zap.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log, minInterval: time.Second}
	if _, err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func fileStamp(paths ...string) (string, error) {
	stamp := ""
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
	}
	return stamp, nil
}

func (r *certReloader) load() (*tls.Certificate, error) {
	stamp, err := fileStamp(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("server: tls: %w", err)
	}
	if r.cert != nil && stamp == r.stamp {
		return r.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("server: tls: load %s: %w", r.certFile, err)
	}
	if r.cert != nil {
		r.log.Info("reloaded TLS certificate", zap.String("certFile", r.certFile))
	}
	r.cert, r.stamp = &cert, stamp
	return r.cert, nil
}

// GetCertificate checks the files at most once per minInterval; a broken rotation
// (say, a key written before its certificate) keeps the previous pair.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) < r.minInterval && r.cert != nil {
		return r.cert, nil
	}
	r.checked = time.Now()
	cert, err := r.load()
	if err != nil {
		r.log.Warn("keeping the previous TLS certificate", zap.Error(err))
		return r.cert, nil
	}
	return cert, nil
}

// CertificateNotAfter is the expiry of the TLS certificate the listeners
// present now (after picking up a rotated pair, as a handshake would); false
// without TLS. It feeds registry_adapter_server_tls_cert_expiry_timestamp_seconds.
func (s *Server) CertificateNotAfter() (time.Time, bool) {
	if s.certs == nil {
		return time.Time{}, false
	}
	cert, _ := s.certs.GetCertificate(nil)
	if cert == nil || cert.Leaf == nil {
		return time.Time{}, false
	}
	return cert.Leaf.NotAfter, true
}
