package convert

import (
	"fmt"
	"strings"
	"testing"

	"github.com/registry-adapter/registry-adapter/model"
)

func TestResourceName(t *testing.T) {
	cases := []struct {
		in       string
		want     string // exact, when the input is already valid
		wantHash bool
	}{
		{in: "web.service.consul", want: "web.service.consul"},
		{in: "web-1", want: "web-1"},
		{in: "Web", wantHash: true},
		{in: "web_1", wantHash: true},
		{in: "node1/web", wantHash: true},
		{in: "-lead", wantHash: true},
		{in: "a..b", wantHash: true},
		{in: "ünïcode", wantHash: true},
		{in: strings.Repeat("a", 300), wantHash: true},
		{in: "", wantHash: true},
		{in: "...", wantHash: true},
	}
	for _, c := range cases {
		got := ResourceName(c.in)
		if !IsResourceName(got) || len(got) > maxNameLen {
			t.Errorf("ResourceName(%q) = %q: not a DNS-1123 subdomain", c.in, got)
		}
		if c.want != "" && got != c.want {
			t.Errorf("ResourceName(%q) = %q, want it unchanged", c.in, got)
		}
		if c.wantHash && got == c.in {
			t.Errorf("ResourceName(%q) kept an invalid name", c.in)
		}
		if ResourceName(c.in) != got {
			t.Errorf("ResourceName(%q) is not stable", c.in)
		}
	}
	// Inputs that clean up alike must still get distinct names.
	alike := []string{"Web_1", "web-1", "web_1", "WEB-1", "web 1"}
	seen := map[string]string{}
	for _, in := range alike {
		out := ResourceName(in)
		if prev, ok := seen[out]; ok {
			t.Errorf("%q and %q both became %q", prev, in, out)
		}
		seen[out] = in
	}
}

func TestLabels(t *testing.T) {
	keys := []struct {
		in   string
		ok   bool
		same bool
	}{
		{"version", true, true},
		{"app.kubernetes.io/name", true, true},
		{"Env", true, true},
		{"env!", true, false},
		{"", false, false},
		{"!!!", false, false},
		{"a/b/c", true, false},
		{strings.Repeat("k", 70), true, false},
		{"Bad_Prefix/name", true, false},
	}
	for _, k := range keys {
		got, ok := LabelKey(k.in)
		if ok != k.ok {
			t.Errorf("LabelKey(%q) ok=%v, want %v", k.in, ok, k.ok)
			continue
		}
		if ok && !IsLabelKey(got) {
			t.Errorf("LabelKey(%q) = %q: invalid label key", k.in, got)
		}
		if ok && (got == k.in) != k.same {
			t.Errorf("LabelKey(%q) = %q, unchanged=%v want %v", k.in, got, got == k.in, k.same)
		}
	}
	for _, v := range []string{"", "v1", "prod!", strings.Repeat("v", 64), "-x-", "a b"} {
		got := LabelValue(v)
		if !IsLabelValue(got) {
			t.Errorf("LabelValue(%q) = %q: invalid", v, got)
		}
		if IsLabelValue(v) && got != v {
			t.Errorf("LabelValue(%q) changed a valid value to %q", v, got)
		}
	}
	if LabelValue("a b") == LabelValue("a_b") {
		t.Error("values that clean up alike collide")
	}
}

func TestOptionsValidateExportTo(t *testing.T) {
	for _, c := range []struct {
		exportTo []string
		ok       bool
	}{
		{nil, true}, {[]string{"*"}, true}, {[]string{".", "team-a"}, true},
		{[]string{".", DefaultNamespace}, false}, {[]string{"*", "team-a"}, false}, {[]string{"a", "a"}, false},
		{[]string{"Bad_NS"}, false},
	} {
		o := testOpts(func(o *Options) { o.ExportTo = c.exportTo })
		if err := o.Validate(); (err == nil) != c.ok {
			t.Errorf("exportTo %q: err %v, want ok=%v", c.exportTo, err, c.ok)
		}
	}
}

// TestReservedMetadataDropped: reserved keys are dropped and reported in
// both modes; an inline endpoint has no annotations of its own, but its
// instance's reserved ones are reported all the same.
func TestReservedMetadataDropped(t *testing.T) {
	for _, mode := range []Mode{ModeWorkloadEntry, ModeInline} {
		t.Run(string(mode), func(t *testing.T) {
			svc := web(inst("n1/web", "10.0.0.1"))
			svc.Labels = svc.Labels.With("istio.io/rev", "canary")
			svc.Annotations = model.LabelsFromMap(map[string]string{"internal.istio.io/parents": "x", "istio.io/dry-run": "true", "keep": "me"})
			svc.Instances[0].Annotations = model.LabelsFromMap(map[string]string{"internal.istio.io/parent-namespace": "y", "fine": "z"})
			res, rejected := Service("web.service.consul", []Contribution{{"dc1", svc}}, testOpts(func(o *Options) { o.Mode = mode }))
			want := 2
			if mode == ModeInline {
				want = 1
			}
			if len(res) != want {
				t.Fatalf("%d resources served, want %d", len(res), want)
			}
			var keys []string
			for _, r := range rejected {
				if r.Code == CodeReserved {
					keys = append(keys, r.Reason)
				}
			}
			if len(keys) != 4 || !strings.Contains(strings.Join(keys, "; "), "internal.istio.io/parent-namespace") {
				t.Errorf("%d reserved keys reported, want 4 with the instance's: %v", len(keys), rejected)
			}
			if _, ok := res[0].Labels["istio.io/rev"]; ok || res[0].Annotations["keep"] != "me" {
				t.Errorf("labels %v annotations %v", res[0].Labels, res[0].Annotations)
			}
		})
	}
}

// isSubdomain promises the same verdict as "sanitizing keeps it".
func TestIsSubdomainMatchesSanitizing(t *testing.T) {
	for _, s := range []string{
		"", "a", "A", "-", "a-", "a.b", "a..b", ".a", "a.", "a_b", "ünï", "a b",
		strings.Repeat("a", 253), strings.Repeat("a", 254), strings.Repeat("a.", 126) + "a",
	} {
		want := s != "" && len(s) <= maxNameLen && sanitizeSubdomain(s) == s
		if got := isSubdomain(s); got != want {
			t.Errorf("isSubdomain(%q) = %v, sanitizing keeps it: %v", s, got, want)
		}
	}
}

// TestPortNameLowersEveryProtocol: PortName's table of lower-case protocols
// says what strings.ToLower says.
func TestPortNameLowersEveryProtocol(t *testing.T) {
	for _, p := range []model.Protocol{model.ProtocolHTTP, model.ProtocolHTTP2, model.ProtocolHTTPS, model.ProtocolGRPC,
		model.ProtocolGRPCWeb, model.ProtocolTCP, model.ProtocolTLS, model.ProtocolMongo, model.ProtocolRedis,
		model.ProtocolMySQL, model.ProtocolUDP, "Odd"} {
		want := fmt.Sprintf("%s-%d", strings.ToLower(string(p)), 8080)
		if got := PortName(model.Port{Number: 8080, Protocol: p}); got != want {
			t.Errorf("PortName(%s) = %q, want %q", p, got, want)
		}
	}
}
