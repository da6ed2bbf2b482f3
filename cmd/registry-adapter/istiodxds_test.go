package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// fakeSecureIstiod answers istio.io/debug requests over ADS on TLS, like
// istiod's port 15012, to a caller presenting want as its bearer token.
type fakeSecureIstiod struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	want string
	mu   sync.Mutex
	seen []string // "authorization|node id|resource"
}

func (f *fakeSecureIstiod) StreamAggregatedResources(s discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	md, _ := metadata.FromIncomingContext(s.Context())
	auth := strings.Join(md.Get("authorization"), ",")
	req, err := s.Recv()
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.seen = append(f.seen, auth+"|"+req.GetNode().GetId()+"|"+strings.Join(req.GetResourceNames(), ","))
	f.mu.Unlock()
	if auth != "Bearer "+f.want {
		return status.Error(codes.Unauthenticated, "authentication required")
	}
	if req.GetTypeUrl() != debugTypeURL || len(req.GetResourceNames()) != 1 {
		return status.Error(codes.InvalidArgument, "exactly one debug request is required")
	}
	body := map[string]string{"registryz": "[]", "endpointShardz": "{}"}[req.GetResourceNames()[0]]
	return s.Send(&discovery.DiscoveryResponse{TypeUrl: debugTypeURL,
		Resources: []*anypb.Any{{TypeUrl: debugTypeURL, Value: []byte(body)}}})
}

// serveSecureIstiod starts f on TLS with a certificate for
// istiod.istio-system.svc and returns its address and the CA file.
func serveSecureIstiod(t *testing.T, f *fakeSecureIstiod) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "istiod"},
		DNSNames: []string{"istiod.istio-system.svc"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "root-cert.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12})))
	discovery.RegisterAggregatedDiscoveryServiceServer(srv, f)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), ca
}

// saToken is a JWT-shaped token of service account sa in ns (unsigned: the
// fake istiod compares it whole).
func saToken(ns, sa string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(fmt.Sprintf(`{"sub":"system:serviceaccount:%s:%s"}`, ns, sa))) + ".c2ln"
}

// TestCheckOverSecureXDS: from inside a cluster, check reads istiod's debug
// API over xDS on its TLS port, the token in each call's metadata, istiod's
// certificate verified, and names itself in the token's namespace (istiod
// requires both to match). A wrong CA or server name sends nothing.
func TestCheckOverSecureXDS(t *testing.T) {
	tok := saToken("istio-system", "registry-adapter")
	f := &fakeSecureIstiod{want: tok}
	addr, ca := serveSecureIstiod(t, f)
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := Main(append([]string{"check", "--config", "../../examples/static.yaml", "--timeout", "20s", "--log-level", "error"}, args...), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	// The fake istiod holds nothing of examples/static.yaml: exit 3.
	if code, out := check("--istiod-xds", addr, "--istiod-ca-file", ca, "--istiod-token-file", tokFile); code != exitDifferences || !strings.Contains(out, "differences") {
		t.Fatalf("over xDS: exit %d, %q; want exit 3 and the differences", code, out)
	}
	f.mu.Lock()
	seen := append([]string(nil), f.seen...)
	f.seen = nil
	f.mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("istiod saw %q, want the two debug requests", seen)
	}
	for _, s := range seen {
		auth, rest, _ := strings.Cut(s, "|")
		node, res, _ := strings.Cut(rest, "|")
		if auth != "Bearer "+tok || !strings.HasSuffix(node, ".istio-system~istio-system.svc.cluster.local") || (res != "registryz" && res != "endpointShardz") {
			t.Errorf("istiod saw token %q node %q resource %q", auth, node, res)
		}
	}

	other, _ := serveSecureIstiod(t, &fakeSecureIstiod{want: tok}) // a certificate from another CA
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no CA file", []string{"--istiod-xds", addr, "--istiod-token-file", tokFile}, "--istiod-ca-file"},
		{"no token", []string{"--istiod-xds", addr, "--istiod-ca-file", ca}, "--istiod-token-file"},
		{"not host:port", []string{"--istiod-xds", "https://istiod:15012", "--istiod-ca-file", ca, "--istiod-token-file", tokFile}, "host:port"},
		{"another CA", []string{"--istiod-xds", other, "--istiod-ca-file", ca, "--istiod-token-file", tokFile}, "certificate"},
		{"another name", []string{"--istiod-xds", addr, "--istiod-ca-file", ca, "--istiod-token-file", tokFile, "--istiod-server-name", "istiod.other.svc"}, "certificate"},
	} {
		if code, out := check(c.args...); code != exitError || !strings.Contains(out, c.want) {
			t.Errorf("%s: exit %d, %q; want exit 1 naming %q", c.name, code, out, c.want)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) != 0 {
		t.Errorf("the token reached istiod through a failed verification: %q", f.seen)
	}
	if _, err := tokenNamespace("not.a.jwt"); err == nil {
		t.Error("a token that is no JWT named a namespace")
	}
	if _, err := tokenNamespace(saToken("", "x")); err == nil {
		t.Error("a token without a namespace named one")
	}
}
