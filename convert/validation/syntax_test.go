package validation

import (
	"regexp"
	"strings"
	"testing"
)

// The reference definitions below are copied literally from upstream, not
// from this package, so that a drift between the loops in apimachinery.go and
// labels.go and the real definitions shows here. Re-copy them when upgrading.

// From istio/istio pkg/config/labels/instance.go (commit 0104d9d5, the
// release this package ports). Note Istio's own "[-a-z-A-Z0-9]": a literal
// '-' between two ranges, the same set as [-a-zA-Z0-9].
const (
	istioDNS1123LabelMaxLength  = 63
	istioDNS1123LabelFmt        = "[a-zA-Z0-9](?:[-a-z-A-Z0-9]*[a-zA-Z0-9])?"
	istioWildcardPrefix         = `(\*|(\*|\*-)?` + istioDNS1123LabelFmt + `)`
	istioQualifiedNameFmt       = "(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
	istioDNSNamePrefixFmt       = istioDNS1123LabelFmt + `(?:\.` + istioDNS1123LabelFmt + `)*/`
	istioDNSNamePrefixMaxLength = 253
)

var (
	istioTagRegexp            = regexp.MustCompile("^(" + istioDNSNamePrefixFmt + ")?(" + istioQualifiedNameFmt + ")$")
	istioLabelValueRegexp     = regexp.MustCompile("^" + "(" + istioQualifiedNameFmt + ")?" + "$")
	istioDNS1123LabelRegexp   = regexp.MustCompile("^" + istioDNS1123LabelFmt + "$")
	istioWildcardPrefixRegexp = regexp.MustCompile("^" + istioWildcardPrefix + "$")
)

// From k8s.io/apimachinery v0.36.1 pkg/api/validate/content/dns.go and
// kube.go (formerly pkg/util/validation/validation.go).
const (
	k8sDNS1123LabelFmt           string = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
	k8sDNS1123LabelMaxLength     int    = 63
	k8sDNS1123SubdomainFmt       string = k8sDNS1123LabelFmt + "(\\." + k8sDNS1123LabelFmt + ")*"
	k8sDNS1123SubdomainMaxLength int    = 253
	k8sLabelKeyCharFmt           string = "[A-Za-z0-9]"
	k8sLabelKeyExtCharFmt        string = "[-A-Za-z0-9_.]"
	k8sLabelKeyFmt               string = "(" + k8sLabelKeyCharFmt + k8sLabelKeyExtCharFmt + "*)?" + k8sLabelKeyCharFmt
	k8sLabelKeyMaxLength         int    = 63
	k8sLabelValueFmt             string = "(" + k8sLabelKeyFmt + ")?"
	k8sLabelValueMaxLength       int    = 63
)

var (
	k8sDNS1123LabelRegexp     = regexp.MustCompile("^" + k8sDNS1123LabelFmt + "$")
	k8sDNS1123SubdomainRegexp = regexp.MustCompile("^" + k8sDNS1123SubdomainFmt + "$")
	k8sLabelKeyRegexp         = regexp.MustCompile("^" + k8sLabelKeyFmt + "$")
	k8sLabelValueRegexp       = regexp.MustCompile("^" + k8sLabelValueFmt + "$")
)

// istioValidateTagKeyOK is Istio's validateTagKey verdict.
func istioValidateTagKeyOK(k string) bool {
	match := istioTagRegexp.FindStringSubmatch(k)
	if match == nil {
		return false
	}
	if len(match[1]) > 0 && len(match[1])-1 > istioDNSNamePrefixMaxLength {
		return false
	}
	return len(match[2]) <= istioDNS1123LabelMaxLength
}

func k8sIsDNS1123Label(v string) bool {
	return len(v) <= k8sDNS1123LabelMaxLength && k8sDNS1123LabelRegexp.MatchString(v)
}

func k8sIsDNS1123Subdomain(v string) bool {
	return len(v) <= k8sDNS1123SubdomainMaxLength && k8sDNS1123SubdomainRegexp.MatchString(v)
}

// k8sIsQualifiedName is apimachinery's IsQualifiedName (label keys).
func k8sIsQualifiedName(v string) bool {
	parts := strings.Split(v, "/")
	var name string
	switch len(parts) {
	case 1:
		name = parts[0]
	case 2:
		var prefix string
		prefix, name = parts[0], parts[1]
		if len(prefix) == 0 || !k8sIsDNS1123Subdomain(prefix) {
			return false
		}
	default:
		return false
	}
	return len(name) != 0 && len(name) <= k8sLabelKeyMaxLength && k8sLabelKeyRegexp.MatchString(name)
}

func k8sIsValidLabelValue(v string) bool {
	return len(v) <= k8sLabelValueMaxLength && k8sLabelValueRegexp.MatchString(v)
}

func checkSyntaxAgrees(t *testing.T, s string) {
	t.Helper()
	checks := []struct {
		name      string
		loop, ref bool
	}{
		{"k8s DNS-1123 label", IsDNS1123Label(s), k8sIsDNS1123Label(s)},
		{"k8s DNS-1123 subdomain", IsDNS1123Subdomain(s), k8sIsDNS1123Subdomain(s)},
		{"k8s label key", IsQualifiedName(s), k8sIsQualifiedName(s)},
		{"k8s label value", IsValidLabelValue(s), k8sIsValidLabelValue(s)},
		{"istio DNS-1123 label", isDNS1123Label(s), len(s) <= istioDNS1123LabelMaxLength && istioDNS1123LabelRegexp.MatchString(s)},
		{"istio wildcard label", isWildcardDNS1123Label(s), len(s) <= istioDNS1123LabelMaxLength && istioWildcardPrefixRegexp.MatchString(s)},
		{"istio label value", validateLabels(map[string]string{"k": s}) == nil, istioLabelValueRegexp.MatchString(s)},
		{"istio tag key", validateTagKey(s) == nil, istioValidateTagKeyOK(s)},
	}
	for _, c := range checks {
		if c.loop != c.ref {
			t.Errorf("%s %q: loop says %v, upstream's regexp says %v", c.name, s, c.loop, c.ref)
		}
	}
}

func TestSyntaxMatchesUpstream(t *testing.T) {
	cases := []string{
		"", "a", "A", "0", "-", "a-", "-a", "a-b", "a--b", "a.b", "a..b", ".a", "a.", "A.b", "a_b", "a.b_c", "_a",
		"*", "*a", "*-a", "*-", "**", "*.a", "a*", "*A-b", "*--a",
		"a/b", "/b", "a/", "a/b/c", "a.b/c", "a..b/c", "A.B/c_d.e", "-a/b", "a-/b", "example.com/name", "x/-y",
		"ünï", "a\x00", "a b", strings.Repeat("a", 63), strings.Repeat("a", 64),
		strings.Repeat("a", 63) + "/" + strings.Repeat("b", 63), strings.Repeat("a.", 126) + "a/b",
		strings.Repeat("a.", 127) + "a/b", "a/" + strings.Repeat("b", 64), strings.Repeat("a.", 126) + "a",
		strings.Repeat("a.", 127) + "a",
	}
	for _, s := range cases {
		checkSyntaxAgrees(t, s)
	}
}

func FuzzSyntaxMatchesUpstream(f *testing.F) {
	for _, s := range []string{"a", "a.b/c_d", "*-a", "a..b", "-", "x/y/z", "A.b/C"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkSyntaxAgrees(t, s) })
}
