package awsapi

import (
	"bytes"
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"github.com/registry-adapter/registry-adapter/model"
)

// The mapping helpers below are shared by the AWS sources, so that a tag
// on an EC2 instance and an attribute of a Cloud Map instance read alike.

// dnsNameRE is a lowercase DNS name: what hosts and service names must look
// like.
var dnsNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// ParseHostTemplate parses a host template and executes it once on sample,
// so that a reference to an unknown field fails at start.
func ParseHostTemplate(text string, sample any) (*template.Template, error) {
	t, err := template.New("hostTemplate").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	if _, err := RenderHost(t, sample); err != nil {
		return nil, err
	}
	return t, nil
}

// RenderHost executes a host template and checks that the result, lower
// cased and without a final dot, is a DNS name.
func RenderHost(t *template.Template, data any) (string, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	h := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(b.String())), ".")
	if len(h) > 253 || !dnsNameRE.MatchString(h) {
		return "", fmt.Errorf("%q is not a DNS name", h)
	}
	return h, nil
}

// SplitServices splits a list of service names on commas, semicolons and
// white space, lower-cases the names and drops duplicates. It returns the
// valid names (DNS names of labels of at most 63 characters) and the
// invalid ones.
func SplitServices(v string) (names, invalid []string) {
	for _, n := range strings.FieldsFunc(v, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == ';'
	}) {
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

// ParsePorts parses a port list such as "http:8080,grpc:9090": entries are
// "<protocol>:<number>" or a bare number (TCP), separated by commas or white
// space. The protocol is an Istio protocol name in any case; a name with a
// suffix ("http-admin") takes the protocol of its prefix. The result is
// sorted by number.
func ParsePorts(s string) ([]model.Port, error) {
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
		n, err := ParsePort(num)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", e, err)
		}
		if seen[n] {
			return nil, fmt.Errorf("%q: port %d listed twice", e, n)
		}
		seen[n] = true
		out = append(out, model.Port{Number: n, Protocol: proto})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q: no ports", s)
	}
	slices.SortFunc(out, func(a, b model.Port) int { return cmp.Compare(a.Number, b.Number) })
	return out, nil
}

// ParsePort parses a port number, 1-65535.
func ParsePort(s string) (uint32, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil || n == 0 || n > 65535 {
		return 0, fmt.Errorf("port %q must be 1-65535", s)
	}
	return uint32(n), nil
}

// CheckPorts validates ports declared in a configuration (number and
// protocol) and converts them, sorted by number; errors name the field.
func CheckPorts(field string, numbers []uint32, protocols []string) ([]model.Port, []error) {
	var errs []error
	var out []model.Port
	seen := map[uint32]bool{}
	for i, n := range numbers {
		f := fmt.Sprintf("%s[%d]", field, i)
		if n == 0 || n > 65535 {
			errs = append(errs, fmt.Errorf("%s.number: %d: must be 1-65535", f, n))
		} else if seen[n] {
			errs = append(errs, fmt.Errorf("%s.number: %d: defined twice", f, n))
		}
		seen[n] = true
		proto := model.ProtocolTCP
		if protocols[i] != "" {
			p, ok := model.ParseProtocol(protocols[i])
			if !ok {
				errs = append(errs, fmt.Errorf("%s.protocol: %q is not an Istio protocol", f, protocols[i]))
			}
			proto = p
		}
		out = append(out, model.Port{Number: n, Protocol: proto})
	}
	slices.SortFunc(out, func(a, b model.Port) int { return cmp.Compare(a.Number, b.Number) })
	return out, errs
}
