package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/fidelity"
)

func sortStrings(s []string) []string { slices.Sort(s); return s }

func nopLogger() *zap.Logger { return zap.NewNop() }

const staticConfig = `
server: {listen: "{{XDS}}", debugListen: "{{DEBUG}}"}
debounce: {quiet: 50ms, max: 200ms}
sources:
- name: vms
  static:
    services:
    - name: billing
      host: billing.vms.example.com
      ports: [{number: 8080, protocol: http}, {number: 9090, protocol: grpc}, {number: 5432, protocol: tcp}]
      instances:
      - {id: billing-1, address: 10.0.1.10, labels: {version: v1}, locality: us-east-1/us-east-1a}
      - {id: billing-2, address: 10.0.1.11, ports: {8080: 18080}, labels: {version: v2}, weight: 50}
    - name: cache
      host: cache.vms.example.com
      ports: [{number: 6379, protocol: redis}]
      instances:
      - {address: 10.0.2.20}
`

// staticWant is staticConfig written out by hand as istiod must hold it:
// unnamed ports are named <protocol>-<number>, billing-2 listens on 18080 for
// 8080, and each instance keeps its labels, locality and weight. extra adds
// cache instances.
func staticWant(extraCache ...string) fidelity.View {
	ports := map[string]fidelity.Port{
		"http-8080": {Number: 8080, Protocol: "HTTP"}, "grpc-9090": {Number: 9090, Protocol: "GRPC"}, "tcp-5432": {Number: 5432, Protocol: "TCP"},
	}
	billing := placed(&fidelity.Service{Host: "billing.vms.example.com", Ports: ports, Endpoints: map[string]fidelity.Endpoint{}})
	for _, e := range []fidelity.Endpoint{
		{Address: "10.0.1.10", PortName: "http-8080", Port: 8080},
		{Address: "10.0.1.10", PortName: "grpc-9090", Port: 9090},
		{Address: "10.0.1.10", PortName: "tcp-5432", Port: 5432},
		{Address: "10.0.1.11", PortName: "http-8080", Port: 18080},
		{Address: "10.0.1.11", PortName: "grpc-9090", Port: 9090},
		{Address: "10.0.1.11", PortName: "tcp-5432", Port: 5432},
	} {
		if e.Address == "10.0.1.10" {
			e.Labels, e.Locality = map[string]string{"version": "v1"}, "us-east-1/us-east-1a"
		} else {
			e.Labels, e.Weight = map[string]string{"version": "v2"}, 50
		}
		billing.Endpoints[e.Address+"/"+e.PortName] = e
	}
	return expect(billing, service("cache.vms.example.com", "Redis", 6379, 0, append([]string{"10.0.2.20"}, extraCache...)...))
}

// TestIstiodHoldsExactlyWhatIsServed: istiod becomes ready through the
// adapter, and holds the resources the adapter serves, at the same versions,
// with ports, protocols, target ports, labels, localities and weights intact,
// in both output modes.
func TestIstiodHoldsExactlyWhatIsServed(t *testing.T) {
	t.Parallel()
	bothModes(t, testIstiodHoldsExactlyWhatIsServed)
}

func testIstiodHoldsExactlyWhatIsServed(t *testing.T, mode string) {
	a := startAdapter(t, withMode(staticConfig, mode), 0)
	p := startIstiod(t, meshFor(a.xdsAddr))
	p.waitReady(t)
	eventually(t, 30*time.Second, "istiod holds the served set", func() error {
		if got, want := p.configs(t), a.served(t); !slices.Equal(got, want) {
			return fmt.Errorf("istiod %v\nadapter %v", got, want)
		}
		return nil
	})
	eventually(t, 30*time.Second, "istiod holds what was configured", func() error { return holds(t, a, p, staticWant()) })

	// Every type istiod asked for was answered, ServiceEntry at the v1 URL.
	_, body, err := httpGet("http://" + a.debugAddr + "/debug/clients")
	if err != nil {
		t.Fatal(err)
	}
	var clients []struct {
		NodeID string
		Types  map[string]struct{ AckedVersion string }
	}
	if err := json.Unmarshal(body, &clients); err != nil || len(clients) != 1 {
		t.Fatalf("clients %s (%v)", body, err)
	}
	if n := len(clients[0].Types); n != 16 {
		t.Errorf("istiod subscribed to %d types, want 16: %v", n, clients[0].Types)
	}
	if clients[0].Types["networking.istio.io/v1/ServiceEntry"].AckedVersion == "" || !strings.HasPrefix(clients[0].NodeID, "sidecar~") {
		t.Errorf("istiod client %+v", clients[0])
	}
}

// TestTwoIstiodsConverge: two istiod replicas on one adapter both converge.
func TestTwoIstiodsConverge(t *testing.T) {
	t.Parallel()
	a := startAdapter(t, staticConfig, 0)
	p1 := startIstiod(t, meshFor(a.xdsAddr))
	p2 := startIstiod(t, meshFor(a.xdsAddr))
	for _, p := range []*istiodProc{p1, p2} {
		p.waitReady(t)
		eventually(t, 30*time.Second, "istiod holds what was configured", func() error { return holds(t, a, p, staticWant()) })
	}
	if got := metric(t, "http://"+a.debugAddr+"/metrics", "registry_adapter_server_connected_clients"); got != 2 {
		t.Errorf("adapter sees %v clients, want 2", got)
	}
}

// TestAdapterRestart: while the adapter is gone istiod keeps its config;
// when it is back (with a changed registry) istiod converges on the new state.
func TestAdapterRestart(t *testing.T) {
	t.Parallel()
	a := startAdapter(t, staticConfig, 0)
	p := startIstiod(t, meshFor(a.xdsAddr))
	p.waitReady(t)
	eventually(t, 30*time.Second, "istiod holds what was configured", func() error { return holds(t, a, p, staticWant()) })
	before := p.configs(t)
	first := vips(t, p)
	if len(first) != 2 {
		t.Fatalf("addresses of %v, want both hosts", first)
	}

	disconnects := strings.Count(p.log(), "connection closed")
	a.stop()
	eventually(t, 30*time.Second, "istiod notices the adapter is gone", func() error {
		if strings.Count(p.log(), "connection closed") <= disconnects {
			return fmt.Errorf("no reconnect attempt logged yet")
		}
		return nil
	})
	if got := p.configs(t); !slices.Equal(got, before) {
		t.Fatalf("istiod dropped config while the adapter was away:\nbefore %v\nafter  %v", before, got)
	}

	// The registry changed while the adapter was down: one instance more.
	cfg, err := os.ReadFile(a.configPath)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(cfg), "      - {address: 10.0.2.20}", "      - {address: 10.0.2.20}\n      - {address: 10.0.2.21}", 1)
	if err := os.WriteFile(a.configPath, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	a.restart(t)
	eventually(t, 90*time.Second, "istiod converges after the restart", func() error {
		if got, want := p.configs(t), a.served(t); !slices.Equal(got, want) {
			return fmt.Errorf("istiod %v\nadapter %v", got, want)
		}
		return holds(t, a, p, staticWant("10.0.2.21"))
	})
	restarted := vips(t, p)
	if !maps.Equal(restarted, first) {
		t.Errorf("addresses moved across an adapter restart:\nbefore %v\nafter  %v", first, restarted)
	}

	// The registry lists the same services and instances in another order.
	head, rest, _ := strings.Cut(changed, "    services:\n")
	billing, cache, _ := strings.Cut(rest, "    - name: cache\n")
	b1 := billing[strings.Index(billing, "      - {id: billing-1"):]
	b1, b2, _ := strings.Cut(b1, "\n")
	b2 = strings.TrimSuffix(b2, "\n")
	billing = strings.Replace(billing, b1+"\n"+b2, b2+"\n"+b1, 1)
	cache = strings.Replace(cache, "      - {address: 10.0.2.20}\n      - {address: 10.0.2.21}", "      - {address: 10.0.2.21}\n      - {address: 10.0.2.20}", 1)
	reordered := head + "    services:\n    - name: cache\n" + cache + billing
	if strings.Index(reordered, "10.0.2.21") > strings.Index(reordered, "10.0.2.20") ||
		strings.Index(reordered, "billing-2") > strings.Index(reordered, "billing-1") ||
		strings.Index(reordered, "name: cache") > strings.Index(reordered, "name: billing") || len(reordered) != len(changed) {
		t.Fatalf("re-ordering the config went wrong:\n%s", reordered)
	}
	if err := os.WriteFile(a.configPath, []byte(reordered), 0o600); err != nil {
		t.Fatal(err)
	}
	a.restart(t)
	eventually(t, 90*time.Second, "istiod converges on the re-ordered registry", func() error {
		return holds(t, a, p, staticWant("10.0.2.21"))
	})
	if again := vips(t, p); !maps.Equal(again, first) {
		t.Errorf("addresses moved when the registry listed its services in another order:\nbefore %v\nafter  %v", first, again)
	}
}

// istioAutoAllocate is the range istiod allocates service addresses from
// itself (PILOT_IP_AUTOALLOCATE_IPV4_PREFIX's default, Istio's docs): an
// address of the adapter's must never be in it.
var istioAutoAllocate = netip.MustParsePrefix("240.240.0.0/16")

// vips reads each adapter host's address from istiod's registry and checks
// by hand what users rely on: one address per host, no two hosts with the
// same one, none in Istio's own auto-allocation range, and the sidecar's
// name table resolving each host to it.
func vips(t *testing.T, p *istiodProc) map[string]string {
	t.Helper()
	got, err := fidelity.Istiod(context.Background(), http.DefaultClient, "http://"+p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	out, owner := map[string]string{}, map[string]string{}
	for host, s := range got {
		if len(s.Addresses) != 1 {
			t.Errorf("host %s: addresses %v, want one", host, s.Addresses)
			continue
		}
		a := s.Addresses[0]
		if other, ok := owner[a]; ok {
			t.Errorf("hosts %s and %s share the address %s", host, other, a)
		}
		owner[a], out[host] = host, a
		if ip, err := netip.ParseAddr(a); err != nil || istioAutoAllocate.Contains(ip) {
			t.Errorf("host %s: address %s is in istiod's own auto-allocation range %s", host, a, istioAutoAllocate)
		}
	}
	px, err := p.sidecar(t)
	if err != nil {
		t.Fatal(err)
	}
	names := px.View().Names
	for host, a := range out {
		if !slices.Equal(names[host], []string{a}) {
			t.Errorf("host %s: the sidecar's name table resolves it to %v, istiod's registry says %s", host, names[host], a)
		}
	}
	return out
}

// writeKeyPair issues a CA and a server certificate for dnsName into dir and
// returns the CA certificate PEM.
func writeKeyPair(t *testing.T, dir, dnsName string) string {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	must(os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
}

func tlsMesh(xdsAddr, caPEM, san string) string {
	indented := "      " + strings.ReplaceAll(strings.TrimSpace(caPEM), "\n", "\n      ")
	return fmt.Sprintf(`rootNamespace: istio-system
trustDomain: cluster.local
configSources:
- address: xds://%s
  tlsSettings:
    mode: SIMPLE
    sni: %s
    subjectAltNames: [%s]
    caCertificates: |
%s
`, xdsAddr, san, san, indented)
}

// TestTLS: istiod with tlsSettings SIMPLE connects to the adapter's TLS
// listener when the SAN matches, and is refused when it does not.
func TestTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const san = "registry-adapter.istio-system.svc"
	caPEM := writeKeyPair(t, dir, san)
	cfg := strings.Replace(staticConfig, `server: {listen: "{{XDS}}", debugListen: "{{DEBUG}}"}`,
		fmt.Sprintf(`server: {listen: "{{XDS}}", debugListen: "{{DEBUG}}", tls: {certFile: %s, keyFile: %s}}`,
			filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")), 1)
	a := startAdapter(t, cfg, 0)

	good := startIstiod(t, tlsMesh(a.xdsAddr, caPEM, san))
	good.waitReady(t)
	eventually(t, 30*time.Second, "istiod holds what was configured, over TLS", func() error { return holds(t, a, good, staticWant()) })

	// With a name the certificate does not carry, istiod refuses the
	// adapter; at start that makes it exit.
	// The start script returns once istiod's HTTP port answers, which on a
	// loaded machine can come before istiod gives up on the source: then the
	// refusal is in its log.
	bad, err := startIstiodErr(t, tlsMesh(a.xdsAddr, caPEM, "someone-else.example.com"))
	eventually(t, 60*time.Second, "istiod with a wrong SAN refuses the adapter with a certificate error", func() error {
		if err != nil {
			if strings.Contains(err.Error(), "x509") {
				return nil
			}
			return fmt.Errorf("istiod failed otherwise: %v", err)
		}
		if strings.Contains(bad.log(), "x509") {
			return nil
		}
		return fmt.Errorf("no certificate error in istiod's log yet")
	})
	if err == nil && bad.ready() {
		t.Error("istiod with a wrong SAN became ready")
	}
	if got := metric(t, "http://"+a.debugAddr+"/metrics", "registry_adapter_server_connected_clients"); got != 1 {
		t.Errorf("adapter sees %v clients, want only the verified istiod", got)
	}
}

// TestKeepaliveHoldsStream: istiod pings every 30 s; grpc-go's default
// policy would answer GOAWAY too_many_pings after about two minutes. The
// stream must stay up, without reconnecting, for more than three minutes.
func TestKeepaliveHoldsStream(t *testing.T) {
	if testing.Short() {
		t.Skip("takes over 3 minutes")
	}
	t.Parallel()
	a := startAdapter(t, staticConfig, 0)
	p := startIstiod(t, meshFor(a.xdsAddr))
	p.waitReady(t)
	streamID := func() string {
		_, body, err := httpGet("http://" + a.debugAddr + "/debug/clients")
		if err != nil {
			t.Fatal(err)
		}
		var clients []struct {
			StreamID       int64
			ConnectedSince string
		}
		if err := json.Unmarshal(body, &clients); err != nil || len(clients) != 1 {
			t.Fatalf("clients: %s %v", body, err)
		}
		return fmt.Sprintf("%d@%s", clients[0].StreamID, clients[0].ConnectedSince)
	}
	first := streamID()
	deadline := time.Now().Add(3*time.Minute + 20*time.Second)
	for time.Now().Before(deadline) {
		if got := streamID(); got != first {
			t.Fatalf("istiod reconnected: stream %s became %s", first, got)
		}
		time.Sleep(5 * time.Second)
	}
	if log := p.log(); strings.Contains(log, "too_many_pings") || strings.Contains(log, "ENHANCE_YOUR_CALM") {
		t.Error("istiod logged a keepalive GOAWAY")
	}
}
