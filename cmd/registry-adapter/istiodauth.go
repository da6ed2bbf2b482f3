package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

// bearerClient is an HTTP client that sends the token in tokenFile as
// "Authorization: Bearer ..." on every request. istiod serves its debug API
// to loopback callers freely; any other caller must carry a token one of
// its authenticators accepts. In a cluster that is a Kubernetes
// service-account token with the audience istio-ca (istiod's
// TOKEN_AUDIENCES), of a service account in istiod's namespace (or one in
// DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES): istiod checks it with a
// TokenReview (pilot/pkg/xds/debug.go, allowAuthenticatedOrLocalhost).
func bearerClient(tokenFile string) (*http.Client, error) {
	t := &bearerTransport{file: tokenFile, base: http.DefaultTransport}
	if _, err := t.token(); err != nil {
		return nil, err
	}
	return &http.Client{Transport: t, Timeout: time.Minute}, nil
}

// bearerTransport re-reads the file on each request, because the kubelet
// rotates projected tokens in place.
type bearerTransport struct {
	file string
	base http.RoundTripper
}

func (t *bearerTransport) token() (string, error) {
	b, err := os.ReadFile(t.file)
	if err != nil {
		return "", fmt.Errorf("--istiod-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		// The token itself is never printed: it is a credential.
		return "", fmt.Errorf("--istiod-token-file %s: not a single bearer token (%d bytes)", t.file, len(b))
	}
	return tok, nil
}

func (t *bearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.token()
	if err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return t.base.RoundTrip(r)
}
