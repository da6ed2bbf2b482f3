package azure

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/registry-adapter/registry-adapter/model"
)

// hostData is what hostTemplate sees.
type hostData struct {
	Service      string
	Subscription string
}

func parseHostTemplate(text string) (*template.Template, error) {
	t, err := template.New("hostTemplate").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	// Execute once so that a reference to an unknown field fails at start.
	if _, err := renderHost(t, hostData{Service: "web", Subscription: "00000000-0000-0000-0000-000000000000"}); err != nil {
		return nil, err
	}
	return t, nil
}

// dnsNameRE is a lower-case DNS name; service names (the scope key, and part
// of the host) follow it too.
var dnsNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

func renderHost(t *template.Template, d hostData) (string, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return "", err
	}
	h := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(b.String())), ".")
	if len(h) > 253 || !dnsNameRE.MatchString(h) {
		return "", fmt.Errorf("%q is not a DNS name", h)
	}
	return h, nil
}

// splitServices splits a comma- or space-separated list of service names,
// lower-cases them and drops duplicates. It returns the valid names and the
// invalid ones.
func splitServices(v string) (names, invalid []string) {
	for _, n := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == ';' }) {
		n = strings.ToLower(n)
		switch {
		case len(n) > 63 || !dnsNameRE.MatchString(n):
			invalid = append(invalid, n)
		case !slices.Contains(names, n):
			names = append(names, n)
		}
	}
	return names, invalid
}

// parsePorts parses a port list such as "http:8080,grpc:9090": entries are
// "<protocol>:<number>" or a bare number (TCP), separated by commas or
// spaces. The protocol is an Istio protocol name in any case; a name with a
// suffix ("http-admin") takes the protocol of its prefix.
func parsePorts(s string) ([]model.Port, error) {
	var out []model.Port
	seen := map[uint32]bool{}
	for _, e := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' }) {
		proto := model.ProtocolTCP
		num := e
		if name, n, ok := strings.Cut(e, ":"); ok {
			num = n
			p, ok := model.ParseProtocol(name)
			if !ok {
				prefix, _, _ := strings.Cut(name, "-")
				if p, ok = model.ParseProtocol(prefix); !ok {
					return nil, fmt.Errorf("%q: unknown protocol %q", e, name)
				}
			}
			proto = p
		}
		n, err := strconv.ParseUint(num, 10, 32)
		if err != nil || n == 0 || n > 65535 {
			return nil, fmt.Errorf("%q: port must be 1-65535", e)
		}
		if seen[uint32(n)] {
			return nil, fmt.Errorf("%q: port %d listed twice", e, n)
		}
		seen[uint32(n)] = true
		out = append(out, model.Port{Number: uint32(n), Protocol: proto})
	}
	if len(out) == 0 {
		return nil, errors.New("no ports")
	}
	return out, nil
}

// isAutoRegistrationKey reports whether k spells istio.io/autoRegistrationGroup
// in any form a tag name allows (Azure tag names cannot hold '/'): compared
// case-insensitively on letters and digits only, so
// "istio.io-autoRegistrationGroup" also matches.
func isAutoRegistrationKey(k string) bool {
	var b strings.Builder
	for _, r := range strings.ToLower(k) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	return b.String() == "istioioautoregistrationgroup"
}

// retryAfter returns the server's retry hint: retry-after-ms,
// x-ms-retry-after-ms, then Retry-After in seconds or as an HTTP date.
func retryAfter(h http.Header, now time.Time) time.Duration {
	for _, k := range []string{"Retry-After-Ms", "X-Ms-Retry-After-Ms"} {
		if v := strings.TrimSpace(h.Get(k)); v != "" {
			if ms, err := strconv.Atoi(v); err == nil && ms > 0 {
				return time.Duration(ms) * time.Millisecond
			}
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s > 0 {
			return time.Duration(s) * time.Second
		}
		return 0
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
