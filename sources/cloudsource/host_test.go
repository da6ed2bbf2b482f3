package cloudsource

import "testing"

func TestHostTemplate(t *testing.T) {
	type data struct{ Service string }
	if _, err := ParseHostTemplate("{{.Service}}.{{.Nope}}", data{"a"}); err == nil {
		t.Fatal("unknown field accepted")
	}
	tmpl, err := ParseHostTemplate("{{.Service}}.Example.COM.", data{"a"})
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
