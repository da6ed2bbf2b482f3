package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue writes a server key pair for dnsName into dir and returns its serial.
func (ca *testCA) issue(t *testing.T, dir, dnsName string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, block *pem.Block) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("tls.key", &pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	write("tls.crt", &pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestTLS(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	ca.issue(t, dir, "registry-adapter.istio-system.svc", 10)
	s := startServer(t, Config{TLS: TLSConfig{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}})
	s.srv.certs.minInterval = 0
	s.cache.MarkReady()

	handshake := func(serverName string, maxVersion uint16) (*x509.Certificate, error) {
		conn, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: ca.pool, ServerName: serverName, MaxVersion: maxVersion, NextProtos: []string{"h2"}})
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0], nil
	}

	// istiod verifies the SAN it is told to expect (subjectAltNames).
	if _, err := handshake("registry-adapter.istio-system.svc", 0); err != nil {
		t.Fatalf("handshake with the right SAN: %v", err)
	}
	if _, err := handshake("wrong.example.com", 0); err == nil {
		t.Error("handshake with a wrong SAN succeeded")
	}
	if _, err := handshake("registry-adapter.istio-system.svc", tls.VersionTLS11); err == nil {
		t.Error("TLS 1.1 accepted; the minimum is 1.2")
	}

	// An xDS stream works over TLS.
	creds := credentials.NewTLS(&tls.Config{RootCAs: ca.pool, ServerName: "registry-adapter.istio-system.svc"})
	c := dial(t, s.addr, grpc.WithTransportCredentials(creds))
	c.request(seV1, "", "")
	if r := c.next(); r.TypeUrl != seV1 {
		t.Errorf("reply %s", r.TypeUrl)
	}

	// A rotated certificate is picked up without a restart.
	ca.issue(t, dir, "registry-adapter.istio-system.svc", 11)
	cert, err := handshake("registry-adapter.istio-system.svc", 0)
	if err != nil {
		t.Fatal(err)
	}
	if cert.SerialNumber.Int64() != 11 {
		t.Errorf("served certificate serial %d after rotation, want 11", cert.SerialNumber.Int64())
	}
	// A broken rotation keeps serving the last good pair.
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cert, err := handshake("registry-adapter.istio-system.svc", 0); err != nil || cert.SerialNumber.Int64() != 11 {
		t.Errorf("after a broken rotation: cert %v, err %v; want the previous pair", cert, err)
	}
}

func TestNewFailsOnMissingKeyPair(t *testing.T) {
	_, err := New(Config{TLS: TLSConfig{CertFile: "/nonexistent/tls.crt", KeyFile: "/nonexistent/tls.key"}}, NewCache(nil), nil, zaptest.NewLogger(t))
	if err == nil {
		t.Fatal("a missing key pair was accepted at start")
	}
}

// TestKeepaliveToleratesIstiodPings runs a client that pings as often as
// grpc-go allows (every 10 s; istiod pings every 30 s) for long enough that
// grpc-go's default policy would have sent GOAWAY too_many_pings, and checks
// that the connection never dropped. A control server with the default
// policy shows the test can fail.
func TestKeepaliveToleratesIstiodPings(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 35 s")
	}
	run := func(t *testing.T, minTime time.Duration) (dropped bool) {
		s := startServer(t, Config{KeepaliveMinTime: minTime})
		s.cache.MarkReady()
		c := dial(t, s.addr, grpc.WithTransportCredentials(insecureCreds()),
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}))
		c.request(seV1, "", "")
		r := c.next()
		c.ack(r)
		// Three strikes of pings closer than MinTime make grpc-go close the
		// connection; 35 s of 10 s pings is four pings.
		select {
		case _, ok := <-c.recv:
			return !ok
		case <-time.After(35 * time.Second):
			return false
		}
	}
	t.Run("configured", func(t *testing.T) {
		t.Parallel()
		if run(t, 10*time.Second) {
			t.Error("the stream was closed despite a 10 s MinTime")
		}
	})
	t.Run("grpc-default-control", func(t *testing.T) {
		t.Parallel()
		if !run(t, 5*time.Minute) {
			t.Error("with grpc-go's default policy the stream survived; the test would not catch a regression")
		}
	})
}

func insecureCreds() credentials.TransportCredentials { return insecure.NewCredentials() }

// addrListener reports addr as its address: a loopback listener that says it
// is bound to a wildcard or public address, so that the start-up warning can
// be tested without binding one.
type addrListener struct {
	net.Listener
	addr net.Addr
}

func (l addrListener) Addr() net.Addr { return l.addr }

func TestPlaintextOnNonLoopbackWarns(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	ca.issue(t, dir, "registry-adapter.istio-system.svc", 1)
	tlsCfg := TLSConfig{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	for _, c := range []struct {
		name string
		addr net.Addr
		tls  bool
		warn bool
	}{
		{"plaintext on 0.0.0.0", &net.TCPAddr{IP: net.IPv4zero, Port: 15010}, false, true},
		{"plaintext on ::", &net.TCPAddr{IP: net.IPv6unspecified, Port: 15010}, false, true},
		{"plaintext on a pod IP", &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 15010}, false, true},
		{"plaintext on 127.0.0.1", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 15010}, false, false},
		{"plaintext on ::1", &net.TCPAddr{IP: net.IPv6loopback, Port: 15010}, false, false},
		{"TLS on 0.0.0.0", &net.TCPAddr{IP: net.IPv4zero, Port: 15010}, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			core, logs := observer.New(zap.WarnLevel)
			cfg := Config{Listen: "127.0.0.1:0"}
			if c.tls {
				cfg.TLS = tlsCfg
			}
			cfg.SetDefaults()
			srv, err := New(cfg, NewCache(nil), nil, zap.New(core))
			if err != nil {
				t.Fatal(err)
			}
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx, addrListener{lis, c.addr}) }()
			waitFor(t, "serving", srv.Serving)
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			warned := logs.FilterMessageSnippet("plaintext").Len() > 0
			if warned != c.warn {
				t.Errorf("plaintext warning logged: %v, want %v (logs %v)", warned, c.warn, logs.All())
			}
		})
	}
}
