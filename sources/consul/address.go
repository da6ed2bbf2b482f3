package consul

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"
)

// Addresses: each instance's (tagged, service or node address) and the
// service's own virtual IPs.

// chooseAddress picks an instance's address: the first configured tagged
// address found on the service, then on the node; else the service address,
// falling back to the node address. A service tagged address may carry its
// own port, returned as port (0 = keep the registered port).
func chooseAddress(prefs []string, svc *api.AgentService, node *api.Node) (addr string, port int) {
	for _, key := range prefs {
		if ta, ok := svc.TaggedAddresses[key]; ok && ta.Address != "" {
			return ta.Address, ta.Port
		}
		if a := node.TaggedAddresses[key]; a != "" {
			return a, 0
		}
	}
	if svc.Address != "" {
		return svc.Address, 0
	}
	return node.Address, 0
}

// normalizeAddress validates an address: an IP address (without zone) or a
// DNS hostname, which is returned in lower case.
func normalizeAddress(a string) (string, error) {
	if a == "" {
		return "", fmt.Errorf("no address (neither service nor node address is set)")
	}
	if ip, err := netip.ParseAddr(a); err == nil {
		if ip.Zone() != "" {
			return "", fmt.Errorf("address %q has an IPv6 zone", a)
		}
		return ip.String(), nil
	}
	h := strings.TrimSuffix(strings.ToLower(a), ".")
	if len(h) > 253 {
		return "", fmt.Errorf("address %q is not an IP address or a DNS name", a)
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("address %q is not an IP address or a DNS name", a)
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !isAlnum(c) && c != '-' && c != '_' {
				return "", fmt.Errorf("address %q is not an IP address or a DNS name", a)
			}
		}
	}
	return h, nil
}

func isAlnum(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// consulVirtual is the tagged address in which Consul gives a service its
// virtual IP (transparent proxy): Consul writes it on Connect-native services
// and on sidecar proxies (structs.TaggedAddressVirtualIP).
const consulVirtual = "consul-virtual"

// virtualAddresses are the service's own virtual IPs: Consul's
// consul-virtual tagged address, then the value of the configured meta key
// (or key=value tag), each the most common among the instances. Only IP
// addresses count; anything else is reported and left out.
func (m *mapper) virtualAddresses(cands []candidate, problem func(reason, format string, args ...any)) []string {
	var vips, keyed []string
	for _, c := range cands {
		s := c.e.Service
		if a := s.TaggedAddresses[consulVirtual].Address; a != "" {
			vips = append(vips, a)
		}
		if m.vipKey == "" {
			continue
		}
		if v := s.Meta[m.vipKey]; v != "" {
			keyed = append(keyed, v)
			continue
		}
		for _, t := range s.Tags {
			if k, v, ok := splitTag(t); ok && k == m.vipKey && v != "" {
				keyed = append(keyed, v)
				break
			}
		}
	}
	var out []string
	for _, group := range []struct {
		what string
		vals []string
	}{{consulVirtual, vips}, {m.vipKey, keyed}} {
		v, ok := mostCommon(group.vals)
		if !ok {
			continue
		}
		ip, err := netip.ParseAddr(v)
		if err != nil || ip.Zone() != "" || ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast() {
			problem("address", "virtual address %q (%s) is not a usable IP address; left out", v, group.what)
			continue
		}
		if a := ip.Unmap().String(); !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}
