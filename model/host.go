package model

import (
	"fmt"
	"strings"
)

// MaxHostLen is the longest host a DNS name allows.
const MaxHostLen = 253

// SanitizeHost is the one policy by which a registry's names become a
// service host, for every source: surrounding space and a final dot
// removed, lower case, every character other than [a-z0-9-] replaced by
// '-', each label trimmed of leading and trailing '-' and cut to 63
// characters, empty labels dropped. A host that is already a lower-case
// DNS name comes back unchanged. It fails when nothing is left or the host
// is longer than 253 characters.
//
// Registry data can hold anything (a Consul service name "Web API", a
// template over a cloud tag): sanitizing keeps such a service served under
// a predictable name rather than dropped; two names that sanitize alike
// then meet as one host, which the adapter's host-conflict rule settles.
func SanitizeHost(s string) (string, error) {
	s = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
	var labels []string
	for _, l := range strings.Split(s, ".") {
		b := []byte(l)
		for i, c := range b {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				b[i] = '-'
			}
		}
		// A multi-byte rune becomes several '-': nothing is collapsed, only
		// trimmed at the ends.
		l = strings.Trim(string(b), "-")
		if len(l) > 63 {
			l = strings.TrimRight(l[:63], "-")
		}
		if l != "" {
			labels = append(labels, l)
		}
	}
	host := strings.Join(labels, ".")
	switch {
	case host == "":
		return "", fmt.Errorf("host %q is empty after sanitizing", s)
	case len(host) > MaxHostLen:
		return "", fmt.Errorf("host %q is longer than %d characters", host, MaxHostLen)
	}
	return host, nil
}
