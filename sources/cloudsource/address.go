package cloudsource

import (
	"fmt"
	"net/netip"
	"strings"
)

// The address types of a VM (ec2, gce, azure): which of its addresses is
// served.
const (
	// AddressPrivate is the primary private IPv4 address.
	AddressPrivate = "private"
	// AddressPublic is the public IPv4 address.
	AddressPublic = "public"
	// AddressIPv6 is the primary IPv6 address.
	AddressIPv6 = "ipv6"
)

// VMAddressTypes are the address types of a VM source, as listed in errors.
var VMAddressTypes = []string{AddressPrivate, AddressPublic, AddressIPv6}

// CheckAddressType reports an address type that is not one of types, as
// `"<v>": must be a, b or c`.
func CheckAddressType(v string, types ...string) error {
	for _, t := range types {
		if v == t {
			return nil
		}
	}
	list := strings.Join(types, ", ")
	if i := strings.LastIndex(list, ", "); i >= 0 {
		list = list[:i] + " or " + list[i+len(", "):]
	}
	return fmt.Errorf("%q: must be %s", v, list)
}

// ValidIP returns s in canonical form when it is an IPv6 address (v6) or an
// IPv4 address (!v6), else "".
func ValidIP(s string, v6 bool) string {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Is6() != v6 {
		return ""
	}
	return a.String()
}
