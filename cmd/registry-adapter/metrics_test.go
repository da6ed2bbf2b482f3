package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/server"
)

// writeCert writes a self-signed pair valid until notAfter.
func writeCert(t *testing.T, dir string, notAfter time.Time) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "registry-adapter"},
		DNSNames: []string{"registry-adapter.istio-system.svc"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	crt, kf := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return crt, kf
}

// TestCertExpiryMetric: with TLS the served certificate's NotAfter is
// exported; without TLS there is no series,
// so the alert cannot fire on a plaintext adapter.
func TestCertExpiryMetric(t *testing.T) {
	notAfter := time.Now().Add(72 * time.Hour).Truncate(time.Second)
	dir := t.TempDir()
	crt, key := writeCert(t, dir, notAfter)
	newServer := func(tls bool) *server.Server {
		cfg := server.Config{Listen: "127.0.0.1:0"}
		if tls {
			cfg.TLS = server.TLSConfig{CertFile: crt, KeyFile: key}
		}
		m := server.NewMetrics(prometheus.NewRegistry())
		srv, err := server.NewSharded(cfg, server.NewCaches(1, m), m, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}

	reg := prometheus.NewRegistry()
	registerCertExpiry(reg, newServer(true))
	if got := testutil.ToFloat64(collectorOf(t, reg)); got != float64(notAfter.Unix()) {
		t.Errorf("expiry %v, want %v", got, notAfter.Unix())
	}

	plain := prometheus.NewRegistry()
	registerCertExpiry(plain, newServer(false))
	if n, err := testutil.GatherAndCount(plain); err != nil || n != 0 {
		t.Errorf("without TLS: %d series (%v), want none", n, err)
	}
}

func collectorOf(t *testing.T, g prometheus.Gatherer) prometheus.Collector {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "registry_adapter_server_tls_cert_expiry_timestamp_seconds" {
		t.Fatalf("gathered %v, %v", mfs, err)
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "x", Help: "x"}, func() float64 { return mfs[0].GetMetric()[0].GetGauge().GetValue() })
}
