package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/structpb"
)

// debugTypeURL is the xDS type istiod serves its debug API under
// (pilot/pkg/xds/debuggen.go): a resource named "registryz" is the body
// /debug/registryz answers.
const debugTypeURL = "istio.io/debug"

// xdsDebugClient is an HTTP client for istiod's debug API that speaks xDS to
// istiod's secure port (15012) instead of HTTP to its monitoring port
// (15014), which serves only plain HTTP. It is what check uses from inside
// the cluster: the connection is TLS, verified against istiod's root
// certificate (caFile, the istio-ca-root-cert ConfigMap's root-cert.pem) for
// serverName, and the token goes in each call's metadata, which gRPC sends
// only over a secure connection. istiod answers a caller whose token it
// verifies (audience istio-ca) and whose namespace is its own.
func xdsDebugClient(addr, caFile, serverName, tokenFile string) (*http.Client, func() error, error) {
	if caFile == "" {
		return nil, nil, fmt.Errorf("--istiod-xds needs --istiod-ca-file: istiod's root certificate (root-cert.pem of the istio-ca-root-cert ConfigMap)")
	}
	if tokenFile == "" {
		return nil, nil, fmt.Errorf("--istiod-xds needs --istiod-token-file: istiod's xDS port answers debug requests only to an authenticated caller")
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--istiod-ca-file: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("--istiod-ca-file %s: no PEM certificate", caFile)
	}
	if serverName == "" {
		serverName = "istiod.istio-system.svc"
	}
	tok := &bearerTransport{file: tokenFile}
	first, err := tok.token()
	if err != nil {
		return nil, nil, err
	}
	ns, err := tokenNamespace(first)
	if err != nil {
		return nil, nil, fmt.Errorf("--istiod-token-file %s: %w", tokenFile, err)
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12})),
		grpc.WithPerRPCCredentials(tokenCredentials{tok}))
	if err != nil {
		return nil, nil, fmt.Errorf("--istiod-xds %s: %w", addr, err)
	}
	t := &xdsDebugTransport{ads: discovery.NewAggregatedDiscoveryServiceClient(conn), node: debugNode(ns)}
	return &http.Client{Transport: t}, conn.Close, nil
}

// tokenCredentials puts the token file's current token on every call.
type tokenCredentials struct{ t *bearerTransport }

func (c tokenCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	tok, err := c.t.token()
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity: never over plain text.
func (tokenCredentials) RequireTransportSecurity() bool { return true }

// tokenNamespace reads the namespace a Kubernetes service-account token
// names (its "sub", system:serviceaccount:NS:NAME), unverified: only to
// name the caller in its node, which istiod checks against the verified
// identity.
func tokenNamespace(tok string) (string, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("not a JWT: %w", err)
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", fmt.Errorf("not a JWT: %w", err)
	}
	f := strings.Split(claims.Sub, ":")
	if len(f) != 4 || f[0] != "system" || f[1] != "serviceaccount" || f[2] == "" {
		return "", fmt.Errorf("not a Kubernetes service-account token (its subject is %q)", claims.Sub)
	}
	return f[2], nil
}

// debugNode is the node check presents: a sidecar-shaped id in the token's
// namespace, which istiod requires to match the token's identity.
func debugNode(ns string) *core.Node {
	host, _ := os.Hostname()
	if host == "" {
		host = "registry-adapter-check"
	}
	meta, _ := structpb.NewStruct(map[string]any{"NAMESPACE": ns})
	return &core.Node{Id: fmt.Sprintf("sidecar~127.0.0.1~%s.%s~%s.svc.cluster.local", host, ns, ns), Metadata: meta}
}

// xdsDebugTransport answers GET /debug/NAME?QUERY with the istio.io/debug
// resource "NAME?QUERY", one ADS stream per request.
type xdsDebugTransport struct {
	ads  discovery.AggregatedDiscoveryServiceClient
	node *core.Node
}

func (t *xdsDebugTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	name, ok := strings.CutPrefix(req.URL.Path, "/debug/")
	if !ok || req.Method != http.MethodGet {
		return nil, fmt.Errorf("istiod over xDS: only GET /debug/... is asked for, not %s %s", req.Method, req.URL.Path)
	}
	if req.URL.RawQuery != "" {
		name += "?" + req.URL.RawQuery
	}
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	stream, err := t.ads.StreamAggregatedResources(ctx)
	if err != nil {
		return nil, fmt.Errorf("istiod over xDS: %w", err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: t.node, TypeUrl: debugTypeURL, ResourceNames: []string{name}}); err != nil {
		return nil, fmt.Errorf("istiod over xDS: %w", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("istiod over xDS, debug %s: %w", name, err)
	}
	if len(resp.GetResources()) != 1 {
		return nil, fmt.Errorf("istiod over xDS, debug %s: %d resources in the answer, want 1", name, len(resp.GetResources()))
	}
	body := resp.GetResources()[0].GetValue()
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: req,
	}, nil
}

// hostPort checks that addr is host:port.
func hostPort(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("--istiod-xds %q: want host:port (istiod's secure xDS port, 15012): %w", addr, err)
	}
	return nil
}
