package cloudsource

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/registry-adapter/registry-adapter/model"
)

// Port is a port declared in a source's configuration.
type Port struct {
	Number   uint32 `yaml:"number"`
	Protocol string `yaml:"protocol"`
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
// protocol, TCP when empty) and converts them, sorted by number; errors name
// the field.
func CheckPorts(field string, ports []Port) ([]model.Port, []error) {
	var errs []error
	var out []model.Port
	seen := map[uint32]bool{}
	for i, p := range ports {
		f := fmt.Sprintf("%s[%d]", field, i)
		if p.Number == 0 || p.Number > 65535 {
			errs = append(errs, fmt.Errorf("%s.number: %d: must be 1-65535", f, p.Number))
		} else if seen[p.Number] {
			errs = append(errs, fmt.Errorf("%s.number: %d: defined twice", f, p.Number))
		}
		seen[p.Number] = true
		proto := model.ProtocolTCP
		if p.Protocol != "" {
			pr, ok := model.ParseProtocol(p.Protocol)
			if !ok {
				errs = append(errs, fmt.Errorf("%s.protocol: %q is not an Istio protocol", f, p.Protocol))
			}
			proto = pr
		}
		out = append(out, model.Port{Number: p.Number, Protocol: proto})
	}
	slices.SortFunc(out, func(a, b model.Port) int { return cmp.Compare(a.Number, b.Number) })
	return out, errs
}
