package convert

import (
	"regexp"
	"strings"
	"testing"
)

// The regular expressions Istio and Kubernetes define these syntaxes with
// (pkg/config/labels, apimachinery validation). validate.go matches them with
// loops; these tests hold the loops to exactly the same language.
var (
	refK8sLabel     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	refK8sSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	refTag          = regexp.MustCompile("^(" + istioDNSNamePrefixFmt + ")?(" + istioQualifiedNameFmt + ")$")
	refLabelValue   = regexp.MustCompile("^" + "(" + istioQualifiedNameFmt + ")?" + "$")
	refDNS1123Label = regexp.MustCompile("^" + istioDNS1123LabelFmt + "$")
	refWildcard     = regexp.MustCompile("^" + istioWildcardPrefix + "$")
)

// refTagKeyErr is the original regexp-based istioValidateTagKey verdict.
func refTagKeyOK(k string) bool {
	m := refTag.FindStringSubmatch(k)
	return m != nil && !(len(m[1]) > 0 && len(m[1])-1 > istioDNSNamePrefixMaxLength) && len(m[2]) <= istioDNS1123LabelMaxLength
}

func checkSyntaxAgrees(t *testing.T, s string) {
	t.Helper()
	checks := []struct {
		name      string
		loop, ref bool
	}{
		{"k8s label", isDNS1123Label(s, false), refK8sLabel.MatchString(s)},
		{"k8s subdomain", isDNS1123Subdomain(s, false), refK8sSubdomain.MatchString(s)},
		{"istio label", istioIsDNS1123Label(s), len(s) <= istioDNS1123LabelMaxLength && refDNS1123Label.MatchString(s)},
		{"wildcard label", istioIsWildcardDNS1123Label(s), len(s) <= istioDNS1123LabelMaxLength && refWildcard.MatchString(s)},
		{"label value", s == "" || isQualifiedName(s), refLabelValue.MatchString(s)},
		{"tag key", istioValidateTagKey(s) == nil, refTagKeyOK(s)},
		{"subdomain as sanitizing keeps it", isSubdomain(s), s != "" && len(s) <= maxNameLen && sanitizeSubdomain(s) == s},
	}
	for _, c := range checks {
		if c.loop != c.ref {
			t.Errorf("%s %q: loop says %v, regexp says %v", c.name, s, c.loop, c.ref)
		}
	}
}

func TestSyntaxMatchesRegexps(t *testing.T) {
	cases := []string{
		"", "a", "A", "0", "-", "a-", "-a", "a-b", "a--b", "a.b", "a..b", ".a", "a.", "A.b", "a_b", "a.b_c", "_a",
		"*", "*a", "*-a", "*-", "**", "*.a", "a*", "*A-b", "*--a",
		"a/b", "/b", "a/", "a/b/c", "a.b/c", "a..b/c", "A.B/c_d.e", "-a/b", "a-/b", "example.com/name", "x/-y",
		"ünï", "a\x00", "a b", strings.Repeat("a", 63), strings.Repeat("a", 64),
		strings.Repeat("a", 63) + "/" + strings.Repeat("b", 63), strings.Repeat("a.", 126) + "a/b",
		strings.Repeat("a.", 127) + "a/b", "a/" + strings.Repeat("b", 64),
	}
	for _, s := range cases {
		checkSyntaxAgrees(t, s)
	}
}

func FuzzSyntaxMatchesRegexps(f *testing.F) {
	for _, s := range []string{"a", "a.b/c_d", "*-a", "a..b", "-", "x/y/z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkSyntaxAgrees(t, s) })
}
