package sources

import (
	"strings"
	"testing"
)

// TestHostTemplateRisk: a template that is the service name alone, or that
// puts hosts in the Kubernetes cluster domain, lets a registrant choose a
// host that is not the registry's; one with a fixed domain of its own does
// not.
func TestHostTemplateRisk(t *testing.T) {
	cases := []struct {
		name   string
		render func(string) string
		want   string // a word of the reason; "" for none
	}{
		{"{{.Service}}", func(s string) string { return s }, "alone"},
		{"{{.Service}}.svc.cluster.local", func(s string) string { return s + ".svc.cluster.local" }, "cluster domain"},
		{"{{.Service}}.default.svc", func(s string) string { return s + ".default.svc" }, "cluster domain"},
		{"{{.Service}}.service.consul", func(s string) string { return s + ".service.consul" }, ""},
		{"{{.Service}}.{{.Region}}.ec2", func(s string) string { return s + ".us-east-1.ec2" }, ""},
		{"vm-{{.Service}}.internal", func(s string) string { return "vm-" + s + ".internal" }, ""},
		{"web.example.com (constant)", func(string) string { return "web.example.com" }, ""},
	}
	for _, c := range cases {
		got := HostTemplateRisk(func(s string) (string, error) { return c.render(s), nil })
		if (got == "") != (c.want == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want a reason with %q", c.name, got, c.want)
		}
	}
}
