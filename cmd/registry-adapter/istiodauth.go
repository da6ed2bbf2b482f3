package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
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
//
// The token goes to istiodURL only, and never in clear text across a
// network: over HTTPS, or over plain HTTP to a loopback address (a
// port-forward, or istiod's own host). Such a token can ask istiod's CA for
// certificates of its service account, so whoever reads it off the wire can
// act as that workload. The client follows no redirect, which would send
// the token to whatever address the answer names.
func bearerClient(tokenFile, istiodURL string) (*http.Client, error) {
	u, err := url.Parse(istiodURL)
	if err != nil {
		return nil, fmt.Errorf("--istiod %q: %w", istiodURL, err)
	}
	if err := tokenSafe(u); err != nil {
		return nil, err
	}
	t := &bearerTransport{file: tokenFile, base: http.DefaultTransport, scheme: u.Scheme, host: u.Host}
	if _, err := t.token(); err != nil {
		return nil, err
	}
	return &http.Client{Transport: t, Timeout: time.Minute, CheckRedirect: refuseRedirect}, nil
}

// tokenSafe refuses an istiod URL the token would cross a network in clear
// text to.
func tokenSafe(u *url.URL) error {
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if h := u.Hostname(); h == "localhost" {
			return nil
		} else if ip, err := netip.ParseAddr(h); err == nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("--istiod %s with --istiod-token-file: plain HTTP to a non-loopback address would send the token in clear text; "+
			"reach istiod's debug API through a port-forward (kubectl -n istio-system port-forward deploy/istiod 15014, then --istiod http://127.0.0.1:15014, no token needed) or over HTTPS",
			u.Redacted())
	default:
		return fmt.Errorf("--istiod %s: the URL must be http:// or https://", u.Redacted())
	}
}

var errRedirect = errors.New("istiod answered with a redirect, which is not followed: it would carry the token elsewhere")

func refuseRedirect(req *http.Request, _ []*http.Request) error {
	return fmt.Errorf("%w (to %s)", errRedirect, req.URL.Redacted())
}

// bearerTransport re-reads the file on each request, because the kubelet
// rotates projected tokens in place. It adds the token only to requests
// for istiod's own scheme and host.
type bearerTransport struct {
	file         string
	base         http.RoundTripper
	scheme, host string
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
	if req.URL.Scheme != t.scheme || req.URL.Host != t.host {
		return nil, fmt.Errorf("not sending istiod's token to %s://%s, which is not --istiod", req.URL.Scheme, req.URL.Host)
	}
	tok, err := t.token()
	if err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return t.base.RoundTrip(r)
}
