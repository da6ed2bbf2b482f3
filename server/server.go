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
	"sync"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"go.uber.org/zap"
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
	return nil
}

// Server is the MCP-over-xDS gRPC server.
type Server struct {
	cfg     Config
	log     *zap.Logger
	cache   *Cache
	clients *clients
	tls     *tls.Config
	certs   *certReloader

	mu   sync.Mutex
	addr net.Addr
	up   bool
}

// New builds a server for cache. The TLS key pair, if configured, is loaded
// now so that a bad path fails at start rather than at istiod's first dial.
func New(cfg Config, cache *Cache, m *Metrics, log *zap.Logger) (*Server, error) {
	s := &Server{cfg: cfg, log: log, cache: cache, clients: newClients(log, m, cache)}
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

// Run listens and serves until ctx is done, then stops gracefully.
func (s *Server) Run(ctx context.Context) error {
	lis, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: listen %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, lis)
}

// Serve serves on lis until ctx is done.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             s.cfg.KeepaliveMinTime,
			PermitWithoutStream: true,
		}),
		// Our own pings find istiods that vanished without closing the stream.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
	}
	if s.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.tls)))
	}
	g := grpc.NewServer(opts...)
	// Streams end when xdsCtx does; GracefulStop alone would wait forever on
	// istiod's long-lived streams.
	xdsCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	discovery.RegisterAggregatedDiscoveryServiceServer(g, serverv3.NewServer(xdsCtx, s.cache, s.clients))

	s.mu.Lock()
	s.addr, s.up = lis.Addr(), true
	s.mu.Unlock()
	s.log.Info("serving MCP-over-xDS", zap.String("address", lis.Addr().String()), zap.Bool("tls", s.tls != nil))

	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	select {
	case err := <-errc:
		s.setDown()
		return fmt.Errorf("server: serve: %w", err)
	case <-ctx.Done():
	}
	s.setDown()
	cancel()
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		g.Stop()
		<-stopped
	}
	<-errc
	s.log.Info("stopped serving")
	return nil
}

func (s *Server) setDown() {
	s.mu.Lock()
	s.up = false
	s.mu.Unlock()
}

// Addr is the listening address once serving (nil before).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Serving reports whether the listener is up.
func (s *Server) Serving() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up
}

// Clients returns the connected clients.
func (s *Server) Clients() []ClientInfo { return s.clients.snapshot() }

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
