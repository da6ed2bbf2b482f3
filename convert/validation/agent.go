package validation

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
)

// Ports pkg/config/validation/agent/validation.go.

func validatePort(port int) error {
	if 1 <= port && port <= 65535 {
		return nil
	}
	return fmt.Errorf("port number %d must be in the range 1..65535", port)
}

func checkDNS1123Preconditions(name string) error {
	if len(name) > 255 {
		return fmt.Errorf("domain name %q too long (max 255)", name)
	}
	if len(name) == 0 {
		return errors.New("empty domain name not allowed")
	}
	return nil
}

// validateDNS1123Labels: every label a DNS-1123 label, a trailing dot
// allowed, and an all-numeric top-level label refused (which is what keeps
// IPv4 addresses out of hosts).
//
// It walks the labels in place rather than splitting: it runs for every
// host of every ServiceEntry served.
func validateDNS1123Labels(domain string) error {
	tld := domain[strings.LastIndexByte(domain, '.')+1:]
	// strconv.Atoi accepts only an optional sign and digits; skipping it for
	// a label that starts otherwise spares its error's allocation and
	// decides the same.
	if tld != "" && (tld[0] == '+' || tld[0] == '-' || tld[0] >= '0' && tld[0] <= '9') {
		if _, err := strconv.Atoi(tld); err == nil {
			return fmt.Errorf("domain name %q invalid (top level domain %q cannot be all-numeric)", domain, tld)
		}
	}
	for rest := domain; ; {
		l, after, more := strings.Cut(rest, ".")
		if !more && l == "" {
			return nil // the trailing dot, or an empty domain's one label
		}
		if !isDNS1123Label(l) {
			return fmt.Errorf("domain name %q invalid (label %q invalid)", domain, l)
		}
		if !more {
			return nil
		}
		rest = after
	}
}

// validateFQDN: Istio's "FQDN" does not require a dot; it only rejects
// wildcards and malformed labels.
func validateFQDN(fqdn string) error {
	if err := checkDNS1123Preconditions(fqdn); err != nil {
		return err
	}
	return validateDNS1123Labels(fqdn)
}

// validateWildcardDomain: like FQDN but the first label may be a wildcard
// ("*", "*foo", "*-foo").
func validateWildcardDomain(domain string) error {
	if err := checkDNS1123Preconditions(domain); err != nil {
		return err
	}
	first, rest, more := strings.Cut(domain, ".")
	if !isWildcardDNS1123Label(first) {
		return fmt.Errorf("domain name %q invalid (label %q invalid)", domain, first)
	} else if more {
		return validateDNS1123Labels(rest)
	}
	return nil
}

func validateIPAddress(addr string) error {
	if _, err := netip.ParseAddr(addr); err != nil {
		return fmt.Errorf("%s is not a valid IP", addr)
	}
	return nil
}

// validateIPSubnet accepts "a.b.c.d", "a.b.c.d/xx" and the IPv6 forms.
func validateIPSubnet(subnet string) error {
	if strings.Count(subnet, "/") == 1 {
		if _, err := netip.ParsePrefix(subnet); err != nil {
			return fmt.Errorf("%s is not a valid CIDR block", subnet)
		}
		return nil
	}
	return validateIPAddress(subnet)
}

// validateDuration: at least 1ms, in whole milliseconds.
func validateDuration(pd *durationpb.Duration) error {
	d := pd.AsDuration()
	if d < time.Millisecond {
		return errors.New("duration must be greater than 1ms")
	}
	if d%time.Millisecond != 0 {
		return errors.New("only durations to ms precision are supported")
	}
	return nil
}
