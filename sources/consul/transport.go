package consul

// The HTTP client toward Consul. It counts its connections, notes the
// protocol of every answer (over HTTP/2 a request in flight is a stream, not
// a connection, which lifts Consul's per-client connection limit), bounds the
// error bodies it reads, and re-reads client certificates and the CA when a
// new connection is made, so that rotated files take effect without a
// restart.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// maxErrorBody is the most of an error answer's body that is read: Consul's
// error messages are a line; whoever sits on the network path could send
// gigabytes, which would all go into an error string.
const maxErrorBody = 16 << 10

// roundTripper wraps the transport: it reports the protocol of each answer
// and bounds every body: error bodies are cut at maxErrorBody, and an answer
// longer than maxBody fails (tooLargeError). The bound is on the bytes the
// decoder reads, so after decompression: the transport asks for gzip and
// undoes it below this wrapper (a 1.4 MB gzip answer made 245 MB of JSON).
type roundTripper struct {
	base    http.RoundTripper
	slots   *slots
	maxBody int64
	// connecting (TLS only; buffered 1) lets one request at a time get a
	// connection; see connect.
	connecting chan struct{}
}

// connectHold bounds how long one request holds the right to get a
// connection (a dial and TLS handshake take milliseconds on a loaded host).
const connectHold = 100 * time.Millisecond

// connect waits until no other request is getting a connection, and returns
// the request traced so that the right passes on once it has one. Go's
// transport dials a connection for every request that finds none with a free
// HTTP/2 stream (MaxConnsPerHost does not apply to HTTP/2 streams): 30,000
// blocking queries started at once (the bulk first read's watches) made
// thousands of dials and TLS handshakes, 44% of the adapter's CPU over a
// 135 s first sync at 30,000 services, where 120 connections of 250 streams
// are needed. One at a time, a request finds the connection the previous one
// dialled. The right passes on after connectHold at most, so a request that
// waits for a stream on a full connection does not hold the others.
func (rt *roundTripper) connect(req *http.Request) (*http.Request, func(), error) {
	select {
	case rt.connecting <- struct{}{}:
	case <-req.Context().Done():
		return nil, nil, req.Context().Err()
	}
	var once sync.Once
	release := func() { once.Do(func() { <-rt.connecting }) }
	t := time.AfterFunc(connectHold, release)
	done := func() { t.Stop(); release() }
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { done() }}
	return req.WithContext(httptrace.WithClientTrace(req.Context(), trace)), done, nil
}

func (rt *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if rt.connecting != nil {
		traced, done, err := rt.connect(req)
		if err != nil {
			return nil, err
		}
		defer done()
		req = traced
	}
	resp, err := rt.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	rt.slots.observe(resp.ProtoMajor == 2)
	if resp.StatusCode >= 300 {
		resp.Body = &limitedBody{r: io.LimitReader(resp.Body, maxErrorBody), c: resp.Body}
	} else {
		limit := rt.maxBody
		if m, ok := req.Context().Value(bodyScaleKey{}).(int64); ok {
			limit *= m
		}
		resp.Body = &boundedBody{rc: resp.Body, left: limit, limit: limit, request: req.Method + " " + req.URL.Path}
	}
	return resp, nil
}

// bodyScaleKey is a request context key: its int64 value multiplies the
// bound on the answer (maxResponseBytes), for an answer that holds many
// services' (the bulk first read).
type bodyScaleKey struct{}

type limitedBody struct {
	r io.Reader
	c io.Closer
}

func (b *limitedBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *limitedBody) Close() error               { return b.c.Close() }

// boundedBody reads at most limit bytes of a body, then fails with a
// tooLargeError instead of reading on.
type boundedBody struct {
	rc      io.ReadCloser
	left    int64
	limit   int64
	request string
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// At the limit: the body may end here, or go on.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, &tooLargeError{request: b.request, limit: b.limit}
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }

// tooLargeError is an answer longer than maxResponseBytes.
type tooLargeError struct {
	request string
	limit   int64
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("Consul's answer to %s is larger than maxResponseBytes (%d bytes, after decompression); "+
		"the rest was not read. If the catalog really is that large, raise maxResponseBytes", e.request, e.limit)
}

// redirectError is a redirect the source refused to follow.
type redirectError struct{ from, to string }

func (e *redirectError) Error() string {
	return fmt.Sprintf("Consul answered %s with a redirect to %s: not followed (the ACL token would go with it; "+
		"Consul's API does not redirect, so something else answers at the configured address)", e.from, e.to)
}

// refuseRedirect is the client's CheckRedirect. Go's client carries custom
// headers across a redirect to any host (it drops only Authorization, Cookie
// and WWW-Authenticate), so following one would send X-Consul-Token to
// whatever host the answer names.
func refuseRedirect(req *http.Request, via []*http.Request) error {
	from := ""
	if len(via) > 0 {
		from = via[len(via)-1].Method + " " + via[len(via)-1].URL.Path
	}
	return &redirectError{from: from, to: req.URL.Scheme + "://" + req.URL.Host}
}

// connCounter counts the open connections to Consul and, when limit is set,
// holds a dial until fewer than cap(limit) are open.
//
// Why at the dial and not only in the slots: the slots bound the requests in
// flight, but over HTTP/1.1 a request cancelled in flight (a watch nudged into
// a read) closes its connection asynchronously, and the transport may dial for
// the next request before that close lands. A connection's permit is given
// back only by its Close, so the count never passes the limit, even for a
// moment. The transport's own MaxConnsPerHost was tried for this and stalled
// a feed's read (RELIABILITY.md).
type connCounter struct {
	gauge prometheus.Gauge
	limit chan struct{} // nil: no limit
}

type countedConn struct {
	net.Conn
	once  sync.Once
	gauge prometheus.Gauge
	limit chan struct{}
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.gauge.Dec()
		if c.limit != nil {
			<-c.limit
		}
	})
	return c.Conn.Close()
}

func (cc connCounter) dialer(unixPath string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if unixPath != "" {
			network, addr = "unix", unixPath
		}
		if cc.limit != nil {
			// The transport cancels this context when the request that
			// asked for the dial gives up before getting a connection.
			select {
			case cc.limit <- struct{}{}:
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for one of %d connections to Consul to close: %w", cap(cc.limit), ctx.Err())
			}
		}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			if cc.limit != nil {
				<-cc.limit
			}
			return nil, err
		}
		cc.gauge.Inc()
		return &countedConn{Conn: conn, gauge: cc.gauge, limit: cc.limit}, nil
	}
}

// tlsFiles is the TLS material toward Consul, read from files. The client
// certificate and the CA are re-read for every new connection (cheap: a new
// connection is rare, and over HTTP/2 a handful carry every watch); a file
// that cannot be read or parsed keeps the last good material, logged once.
type tlsFiles struct {
	caFile, caPath     string
	certFile, keyFile  string
	serverName         string
	insecureSkipVerify bool
	log                *zap.Logger

	mu       sync.Mutex
	caRaw    []byte
	pool     *x509.CertPool
	certRaw  []byte
	cert     *tls.Certificate
	failing  map[string]bool
	reloaded atomic.Int64 // times new material was taken after the first load
}

// newTLSFiles loads the material once; an error here is a configuration error.
func newTLSFiles(caFile, caPath, certFile, keyFile, serverName string, insecure bool, log *zap.Logger) (*tlsFiles, error) {
	f := &tlsFiles{caFile: caFile, caPath: caPath, certFile: certFile, keyFile: keyFile,
		serverName: serverName, insecureSkipVerify: insecure, log: log, failing: map[string]bool{}}
	if _, err := f.roots(); err != nil {
		return nil, err
	}
	if _, err := f.clientCert(); err != nil {
		return nil, err
	}
	f.reloaded.Store(0)
	return f, nil
}

func (f *tlsFiles) config() *tls.Config {
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: f.serverName,
		// Verification is done by VerifyConnection against the CA as it is
		// now on disk; Go's own verification would use a pool fixed at start.
		InsecureSkipVerify: true, //nolint:gosec // see VerifyConnection
	}
	if !f.insecureSkipVerify {
		c.VerifyConnection = f.verify
	}
	if f.certFile != "" {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if cert, err := f.clientCert(); cert != nil {
				return cert, nil
			} else if err != nil {
				return nil, err
			}
			return &tls.Certificate{}, nil
		}
	}
	return c
}

func (f *tlsFiles) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("consul presented no certificate")
	}
	pool, err := f.roots()
	if pool == nil && err != nil {
		return err
	}
	name := f.serverName
	if name == "" {
		name = cs.ServerName
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: name, Intermediates: inter})
	return err
}

// roots returns the CA pool (nil: the system's), re-read from disk.
func (f *tlsFiles) roots() (*x509.CertPool, error) {
	if f.caFile == "" && f.caPath == "" {
		return nil, nil
	}
	raw, err := f.readCA()
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil && !bytes.Equal(raw, f.caRaw) {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw) {
			err = fmt.Errorf("tls: no PEM certificate in %s", f.caSource())
		} else {
			if f.pool != nil {
				f.reloaded.Add(1)
				f.log.Info("Consul CA changed on disk; new connections verify with it", zap.String("ca", f.caSource()))
			}
			f.pool, f.caRaw = pool, raw
		}
	}
	f.noteLocked("ca", err)
	if f.pool == nil {
		return nil, err
	}
	return f.pool, nil
}

func (f *tlsFiles) caSource() string {
	if f.caFile != "" {
		return f.caFile
	}
	return f.caPath
}

func (f *tlsFiles) readCA() ([]byte, error) {
	var raw []byte
	if f.caFile != "" {
		b, err := os.ReadFile(f.caFile)
		if err != nil {
			return nil, fmt.Errorf("tls.caFile: %w", err)
		}
		raw = append(raw, b...)
	}
	if f.caPath != "" {
		entries, err := os.ReadDir(f.caPath)
		if err != nil {
			return nil, fmt.Errorf("tls.caPath: %w", err)
		}
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(f.caPath, e.Name()))
			if err != nil {
				return nil, fmt.Errorf("tls.caPath: %w", err)
			}
			raw = append(append(raw, b...), '\n')
		}
	}
	return raw, nil
}

// clientCert returns the client certificate (nil when none is configured),
// re-read from disk.
func (f *tlsFiles) clientCert() (*tls.Certificate, error) {
	if f.certFile == "" {
		return nil, nil
	}
	cert, err := os.ReadFile(f.certFile)
	var key []byte
	if err == nil {
		key, err = os.ReadFile(f.keyFile)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("tls client certificate: %w", err)
	} else if raw := append(cert, key...); !bytes.Equal(raw, f.certRaw) {
		var kp tls.Certificate
		if kp, err = tls.X509KeyPair(cert, key); err != nil {
			// Usually the certificate and the key written one after the
			// other: the next connection tries again.
			err = fmt.Errorf("tls client certificate %s: %w", f.certFile, err)
		} else {
			if f.cert != nil {
				f.reloaded.Add(1)
				f.log.Info("Consul client certificate changed on disk; new connections present it", zap.String("certFile", f.certFile))
			}
			f.cert, f.certRaw = &kp, raw
		}
	}
	f.noteLocked("cert", err)
	if f.cert == nil {
		return nil, err
	}
	return f.cert, nil
}

// noteLocked logs a failing file once, and its recovery.
func (f *tlsFiles) noteLocked(what string, err error) {
	switch {
	case err != nil && !f.failing[what]:
		f.failing[what] = true
		f.log.Warn("cannot reload TLS material for Consul; keeping the last good one", zap.Error(err))
	case err == nil && f.failing[what]:
		delete(f.failing, what)
		f.log.Info("TLS material for Consul readable again", zap.String("what", what))
	}
}

// newTransport makes the transport toward the Consul of ac. A unix:// address
// is dialled by the transport itself (ac.Address then names no host).
func newTransport(ac *api.Config, sl *slots, m *metrics, log *zap.Logger) (*http.Transport, error) {
	unixPath := ""
	if p, ok := strings.CutPrefix(ac.Address, "unix://"); ok {
		unixPath = p
		ac.Address, ac.Scheme = "localhost", "http"
	}
	rest, tlsOn := strings.CutPrefix(ac.Address, "https://")
	tlsOn = unixPath == "" && (tlsOn || ac.Scheme == "https")
	cc := connCounter{gauge: m.connections}
	if !tlsOn {
		// Over HTTP/1.1 a request in flight is a connection: bound them to
		// the slots, which keeps the adapter under Consul's
		// limits.http_max_conns_per_client. (Not over TLS: there HTTP/2
		// carries up to 250 requests on each connection, and maxStreams,
		// not maxConcurrentQueries, sets how many are needed.)
		cc.limit = make(chan struct{}, sl.http1Capacity())
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         cc.dialer(unixPath),
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        sl.http1Capacity(),
		MaxIdleConnsPerHost: sl.http1Capacity(),
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	if !tlsOn {
		return tr, nil
	}
	host := strings.TrimPrefix(rest, "http://")
	host, _, _ = strings.Cut(host, "/")
	if ac.TLSConfig.Address != "" {
		host = ac.TLSConfig.Address
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	tc := ac.TLSConfig
	files, err := newTLSFiles(tc.CAFile, tc.CAPath, tc.CertFile, tc.KeyFile, host, tc.InsecureSkipVerify, log)
	if err != nil {
		return nil, err
	}
	tr.TLSClientConfig = files.config()
	return tr, nil
}

// plainHTTPToRemote reports whether requests go over plain HTTP to an
// address that is not loopback (where a token can be read on the network).
func (c *Config) plainHTTPToRemote(ac *api.Config) bool {
	addr := ac.Address
	switch {
	case strings.HasPrefix(addr, "unix://"), strings.HasPrefix(addr, "https://"), ac.Scheme == "https":
		return false
	}
	addr = strings.TrimPrefix(addr, "http://")
	addr, _, _ = strings.Cut(addr, "/")
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}
