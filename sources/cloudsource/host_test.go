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
	if _, err := RenderHost(tmpl, data{"a_b"}); err == nil {
		t.Fatal("a_b.example.com accepted")
	}
}
