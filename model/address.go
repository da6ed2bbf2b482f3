package model

import (
	"net/netip"
	"strings"
)

// LocalAddress says why addr, an instance's address, names the host that
// connects to it rather than a workload: "loopback" (127.0.0.0/8, ::1,
// localhost and *.localhost), "link-local" (169.254.0.0/16, where cloud
// metadata services answer, and fe80::/10), "unspecified" (0.0.0.0, ::,
// which connect to the local host) or "multicast"; "" for any other address.
// Whoever registers an instance with such an address would send every
// sidecar's traffic for the service to the sidecar's own host: its admin
// port, its node's metadata service.
func LocalAddress(addr string) string {
	if ip, err := netip.ParseAddr(addr); err == nil {
		ip = ip.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
		switch {
		case ip.IsLoopback():
			return "loopback"
		case ip.IsLinkLocalUnicast():
			return "link-local"
		case ip.IsUnspecified():
			return "unspecified"
		case ip.IsMulticast():
			return "multicast"
		}
		return ""
	}
	h := strings.TrimSuffix(strings.ToLower(addr), ".")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return "loopback" // RFC 6761: resolves to loopback
	}
	return ""
}
