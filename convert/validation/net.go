package validation

import "net/netip"

// isValidIPAddress ports pkg/util/net/ip.go's IsValidIPAddress.
func isValidIPAddress(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.IsValid()
}
