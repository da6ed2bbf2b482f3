package validation

import (
	"errors"
	"fmt"
	"strings"
)

// Ports pkg/config/labels/instance.go. Istio's label syntax differs from
// Kubernetes' (apimachinery.go) in three ways: label keys' DNS prefixes may
// be mixed case, label values have no length limit, and its DNS-1123 labels
// (used for port names and hosts) are mixed case.

// isDNS1123Label is Istio's labels.IsDNS1123Label: a mixed-case RFC 1123
// label of at most 63 characters.
func isDNS1123Label(v string) bool {
	return len(v) <= DNS1123LabelMaxLength && dns1123Label(v, true)
}

// isWildcardDNS1123Label is labels.IsWildcardDNS1123Label: "*", or a label
// optionally prefixed with "*" or "*-".
func isWildcardDNS1123Label(v string) bool {
	if len(v) > DNS1123LabelMaxLength {
		return false
	}
	switch {
	case v == "*":
		return true
	case strings.HasPrefix(v, "*-"):
		// "*-" followed by a label; a label cannot start with '-', so "*"
		// followed by one cannot begin this way either.
		return dns1123Label(v[2:], true)
	case strings.HasPrefix(v, "*"):
		return dns1123Label(v[1:], true)
	}
	return dns1123Label(v, true)
}

// validateLabels ports labels.Instance.Validate. Keys follow the label-key
// syntax (optional DNS prefix <= 253, name <= 63). Values must match the
// qualified-name syntax or be empty; unlike Kubernetes, Istio puts no length
// limit on values, so neither do we.
func validateLabels(labels map[string]string) error {
	valid := true
	for k, v := range labels {
		if validateTagKey(k) != nil || v != "" && !qualifiedName(v) {
			valid = false
			break
		}
	}
	if valid {
		// The common case needs no order; sorting every label map was a
		// measurable share of conversion.
		return nil
	}
	var errs []error
	for _, k := range sortedKeys(labels) {
		if err := validateTagKey(k); err != nil {
			errs = append(errs, err)
		}
		if v := labels[k]; v != "" && !qualifiedName(v) {
			errs = append(errs, fmt.Errorf("invalid tag value %q (key %q)", v, k))
		}
	}
	return errors.Join(errs...)
}

// validateTagKey ports labels.validateTagKey.
func validateTagKey(k string) error {
	// The syntax is an optional DNS-name prefix and '/', then a qualified
	// name; neither part may contain '/', so the split is unambiguous.
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		prefix, name = "", k
	}
	if hasPrefix && !dns1123Subdomain(prefix, true) || !qualifiedName(name) {
		return fmt.Errorf("invalid tag key %q", k)
	}
	if len(prefix) > DNS1123SubdomainMaxLength {
		return fmt.Errorf("invalid tag key %q (DNS prefix is too long)", k)
	}
	if len(name) > DNS1123LabelMaxLength {
		return fmt.Errorf("invalid tag key %q (name is too long)", k)
	}
	return nil
}
