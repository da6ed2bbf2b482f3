package convert

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"

	"github.com/registry-adapter/registry-adapter/convert/validation"
)

const (
	maxNameLen       = validation.DNS1123SubdomainMaxLength // Kubernetes object names
	maxLabelValueLen = validation.DNS1123LabelMaxLength
	maxLabelNameLen  = validation.DNS1123LabelMaxLength
	hashSuffixLen    = 10 // hex digits of the disambiguating hash
)

// ResourceName turns a registry string into a DNS-1123 subdomain usable as a
// Kubernetes object name. A string that is already valid is kept as it is, so
// names stay readable. Any string that had to change (case, characters,
// length) gets a suffix hashed from the original, so two different originals
// that sanitize alike ("Web_1" and "web-1") still get distinct names, and the
// same original always gets the same name.
func ResourceName(raw string) string {
	if isSubdomain(raw) {
		return raw
	}
	clean := sanitizeSubdomain(raw)
	if clean == raw && len(raw) <= maxNameLen && raw != "" {
		return raw
	}
	return withHash(clean, raw, maxNameLen, '-')
}

// LabelValue turns s into a valid Kubernetes label value (at most 63
// characters of [A-Za-z0-9_.-], beginning and ending alphanumeric), with the
// same keep-if-valid, hash-if-changed rule as ResourceName.
func LabelValue(s string) string {
	if validation.IsValidLabelValue(s) {
		return s
	}
	clean := sanitizeLabelName(s)
	return withHash(clean, s, maxLabelValueLen, '_')
}

// LabelKey turns k into a valid Kubernetes label key: an optional DNS
// subdomain prefix and a slash, then a name as for values. It reports false
// when nothing usable is left (e.g. a key of only punctuation).
func LabelKey(k string) (string, bool) {
	if IsLabelKey(k) {
		return k, true
	}
	prefix, name := "", k
	if i := strings.LastIndexByte(k, '/'); i >= 0 {
		prefix, name = k[:i], k[i+1:]
	}
	name = sanitizeLabelName(name)
	if name == "" {
		return "", false
	}
	if prefix != "" {
		prefix = sanitizeSubdomain(prefix)
		if prefix == "" || len(prefix) > maxNameLen {
			prefix = ""
		}
	}
	// A changed key is hashed so two keys that clean up alike stay distinct.
	name = withHash(name, k, maxLabelNameLen, '_')
	if prefix != "" {
		return prefix + "/" + name, true
	}
	return name, true
}

// IsLabelKey reports whether k is a valid Kubernetes label key.
func IsLabelKey(k string) bool { return validation.IsQualifiedName(k) }

// IsLabelValue reports whether v is a valid Kubernetes label value.
func IsLabelValue(v string) bool { return validation.IsValidLabelValue(v) }

// isSubdomain is sanitizeSubdomain(s) == s for a non-empty s of at most 253
// characters, without building the sanitized string (names_test.go checks
// the equivalence).
func isSubdomain(s string) bool { return validation.IsDNS1123Subdomain(s) }

// IsResourceName reports whether s is a valid DNS-1123 subdomain.
func IsResourceName(s string) bool { return isSubdomain(s) }

// sortedKeys returns m's keys in order. Unlike slices.Sorted(maps.Keys(m)) it
// allocates once: label maps are small and converted by the tens of thousands.
func sortedKeys[V any](m map[string]V) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// sanitizeSubdomain lowercases s, turns every other character into '-', and
// repairs dots so that every dot-separated label starts and ends alphanumeric.
func sanitizeSubdomain(s string) string {
	labels := strings.Split(strings.ToLower(s), ".")
	out := labels[:0]
	for _, l := range labels {
		b := []byte(l)
		for i, c := range b {
			if !validation.IsLowerAlnum(c) && c != '-' {
				b[i] = '-'
			}
		}
		l = strings.Trim(string(b), "-")
		if l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, ".")
}

func sanitizeLabelName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !validation.IsAlnum(c) && c != '-' && c != '_' && c != '.' {
			b[i] = '_'
		}
	}
	return strings.TrimFunc(string(b), func(r rune) bool { return r == '-' || r == '_' || r == '.' })
}

// withHash shortens clean to fit max with a hash of raw appended.
func withHash(clean, raw string, max int, sep byte) string {
	sum := sha256.Sum256([]byte(raw))
	h := hex.EncodeToString(sum[:])[:hashSuffixLen]
	keep := max - hashSuffixLen - 1
	if len(clean) > keep {
		clean = clean[:keep]
	}
	// Cutting may leave a separator at the end, which no name may end with.
	clean = strings.TrimRight(clean, "-_.")
	if clean == "" {
		return h
	}
	return clean + string(sep) + h
}
