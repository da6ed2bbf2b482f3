package validation

import "strings"

// Kubernetes' syntax rules for object names and label keys and values, from
// k8s.io/apimachinery/pkg/util/validation/validation.go. Kubernetes defines
// them with regular expressions (copied literally in syntax_test.go, which
// checks that these loops accept exactly the same strings). Matching the
// regular expressions was a fifth of a cold sync's CPU at 50k services.

const (
	// DNS1123LabelMaxLength is apimachinery's DNS1123LabelMaxLength; label
	// names and label values share it.
	DNS1123LabelMaxLength = 63
	// DNS1123SubdomainMaxLength is apimachinery's DNS1123SubdomainMaxLength.
	DNS1123SubdomainMaxLength = 253
)

// IsDNS1123Label reports whether v is a lowercase RFC 1123 label of at most
// 63 characters (a namespace name).
func IsDNS1123Label(v string) bool {
	return len(v) <= DNS1123LabelMaxLength && dns1123Label(v, false)
}

// IsDNS1123Subdomain reports whether v is lowercase RFC 1123 labels joined by
// dots, at most 253 characters (an object name).
func IsDNS1123Subdomain(v string) bool {
	return len(v) <= DNS1123SubdomainMaxLength && dns1123Subdomain(v, false)
}

// IsQualifiedName reports whether k is a valid label key: an optional
// lowercase DNS subdomain prefix and '/', then a name of at most 63 of
// [A-Za-z0-9_.-], alphanumeric at both ends.
func IsQualifiedName(k string) bool {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		name = prefix
	} else if !IsDNS1123Subdomain(prefix) {
		return false
	}
	return len(name) <= DNS1123LabelMaxLength && qualifiedName(name)
}

// IsValidLabelValue reports whether v is a valid label value: empty, or at
// most 63 characters of the qualified-name syntax.
func IsValidLabelValue(v string) bool {
	return v == "" || len(v) <= DNS1123LabelMaxLength && qualifiedName(v)
}

// dns1123Label matches [a-z0-9]([-a-z0-9]*[a-z0-9])?, or its mixed-case
// form, which Istio uses for port names and hosts. Length limits are the
// callers'.
func dns1123Label(v string, mixedCase bool) bool {
	alnum := IsLowerAlnum
	if mixedCase {
		alnum = IsAlnum
	}
	if v == "" || !alnum(v[0]) || !alnum(v[len(v)-1]) {
		return false
	}
	for i := 1; i < len(v)-1; i++ {
		if c := v[i]; c != '-' && !alnum(c) {
			return false
		}
	}
	return true
}

// dns1123Subdomain matches DNS-1123 labels joined by dots.
func dns1123Subdomain(v string, mixedCase bool) bool {
	for {
		label, rest, more := strings.Cut(v, ".")
		if !dns1123Label(label, mixedCase) {
			return false
		}
		if !more {
			return true
		}
		v = rest
	}
}

// qualifiedName matches (?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9], without
// a length limit (Istio puts none on label values).
func qualifiedName(v string) bool {
	if v == "" || !IsAlnum(v[0]) || !IsAlnum(v[len(v)-1]) {
		return false
	}
	for i := 1; i < len(v)-1; i++ {
		if c := v[i]; c != '-' && c != '_' && c != '.' && !IsAlnum(c) {
			return false
		}
	}
	return true
}

// IsAlnum reports an ASCII letter or digit.
func IsAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// IsLowerAlnum reports a lowercase ASCII letter or digit.
func IsLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
