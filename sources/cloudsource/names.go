package cloudsource

import (
	"slices"
	"strings"

	"github.com/registry-adapter/registry-adapter/model"
)

// SplitServices splits a list of service names on any rune of separators
// (which differ by cloud: GCE label values cannot hold a comma, so they
// use '_'), lower-cases the names and drops duplicates. It returns the valid
// names (at most 63 characters, and already hosts by the one host policy,
// model.SanitizeHost: a service name is a scope key and part of the host)
// and the invalid ones.
func SplitServices(v, separators string) (names, invalid []string) {
	for _, n := range strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(separators, r) }) {
		n = strings.ToLower(n)
		switch {
		case len(n) > 63 || !isHost(n):
			invalid = append(invalid, n)
		case !slices.Contains(names, n):
			names = append(names, n)
		}
	}
	return names, invalid
}

// AutoRegistrationGroup is the key that marks an instance registering itself
// with istiod through a WorkloadGroup: a source leaves it out to avoid a
// duplicate.
const AutoRegistrationGroup = "istio.io/autoRegistrationGroup"

// IsAutoRegistrationKey reports whether k spells AutoRegistrationGroup in
// any of the forms a cloud allows for label, tag or metadata keys (which
// cannot all hold '.' or '/'): compared case-insensitively on letters and
// digits only, so "istio-io-autoregistrationgroup" also matches.
func IsAutoRegistrationKey(k string) bool {
	var b strings.Builder
	for _, r := range strings.ToLower(k) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	return b.String() == "istioioautoregistrationgroup"
}

// IsAutoRegistrationTag reports whether k is AutoRegistrationGroup in any
// case: the match of a cloud whose keys can spell it (EC2 tags, Cloud Map
// attributes).
func IsAutoRegistrationTag(k string) bool { return strings.EqualFold(k, AutoRegistrationGroup) }

// isHost reports whether n is a host as model.SanitizeHost makes them.
func isHost(n string) bool {
	h, err := model.SanitizeHost(n)
	return err == nil && h == n
}

// SkipReasons are the reasons a VM source (ec2, gce, azure) leaves an
// instance out, and the source's own extra ones: the values of its skipped
// metric's "reason" label.
func SkipReasons(extra ...string) []string {
	return append([]string{
		SkipNotRunning, SkipOptOut, SkipAutoRegistered, SkipNoService, SkipInvalidService,
		SkipNoPorts, SkipInvalidPorts, SkipNoAddress, SkipUnhealthy,
	}, extra...)
}

// SetOf returns the set of values, each by key(value) (key nil: as it
// is), or nil when there are none: a filter that is not set.
func SetOf(values []string, key func(string) string) map[string]bool {
	if len(values) == 0 {
		return nil
	}
	set := make(map[string]bool, len(values))
	for _, v := range values {
		if key != nil {
			v = key(v)
		}
		set[v] = true
	}
	return set
}
