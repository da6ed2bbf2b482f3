package sources

import (
	"strings"
	"testing"
)

func TestHostTemplate(t *testing.T) {
	type data struct{ Service string }
	if _, err := ParseHostTemplate("hostTemplate", "{{.Service}}.{{.Nope}}", data{"a"}); err == nil ||
		!strings.HasPrefix(err.Error(), "hostTemplate: ") {
		t.Fatalf("unknown field: %v; want an error naming the field", err)
	}
	if _, err := ParseHostTemplate("peerHostTemplate", "{{.Service", data{"a"}); err == nil ||
		!strings.HasPrefix(err.Error(), "peerHostTemplate: ") {
		t.Fatalf("bad syntax: %v; want an error naming the field", err)
	}
	tmpl, err := ParseHostTemplate("hostTemplate", "{{.Service}}.Example.COM.", data{"a"})
	if err != nil {
		t.Fatal(err)
	}
	if h, err := RenderHost(tmpl, data{"Web"}); err != nil || h != "web.example.com" {
		t.Fatalf("%q %v", h, err)
	}
	// One policy for every source (model.SanitizeHost): sanitized, not refused.
	if h, err := RenderHost(tmpl, data{"a_b"}); err != nil || h != "a-b.example.com" {
		t.Fatalf("a_b: %q %v", h, err)
	}
	if _, err := RenderHost(tmpl, data{"."}); err != nil {
		t.Fatalf(".: %v", err)
	}
	if h, err := RenderHost(tmpl, data{"_"}); err != nil || h != "example.com" {
		t.Fatalf("_: %q %v", h, err)
	}
}
