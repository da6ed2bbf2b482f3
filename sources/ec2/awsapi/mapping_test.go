package awsapi

import (
	"reflect"
	"strings"
	"testing"

	"github.com/registry-adapter/registry-adapter/model"
)

func TestParsePorts(t *testing.T) {
	got, err := ParsePorts("grpc:9090, http:8080 8443 http-admin:9901 GRPC-Web:7000")
	if err != nil {
		t.Fatal(err)
	}
	want := []model.Port{
		{Number: 7000, Protocol: model.ProtocolGRPCWeb}, {Number: 8080, Protocol: model.ProtocolHTTP},
		{Number: 8443, Protocol: model.ProtocolTCP}, {Number: 9090, Protocol: model.ProtocolGRPC},
		{Number: 9901, Protocol: model.ProtocolHTTP},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v", got)
	}
	for _, bad := range []string{"", " , ", "http:", "http:0", "http:70000", "foo:80", "80,80", "http:80x"} {
		if _, err := ParsePorts(bad); err == nil {
			t.Errorf("ParsePorts(%q) accepted", bad)
		}
	}
}

func TestSplitServices(t *testing.T) {
	names, invalid := SplitServices(" Web, api;web  billing.v2 bad_name " + strings.Repeat("x", 64))
	if !reflect.DeepEqual(names, []string{"web", "api", "billing.v2"}) ||
		!reflect.DeepEqual(invalid, []string{"bad_name", strings.Repeat("x", 64)}) {
		t.Fatalf("names %q invalid %q", names, invalid)
	}
}

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

func TestCheckPorts(t *testing.T) {
	ports, errs := CheckPorts("ports", []uint32{9090, 80, 80, 0}, []string{"grpc", "", "http", "htp"})
	if len(errs) != 3 || !strings.Contains(errs[0].Error(), "ports[2].number: 80: defined twice") ||
		!strings.Contains(errs[2].Error(), `ports[3].protocol: "htp"`) {
		t.Fatalf("errs %v", errs)
	}
	if ports[0].Number != 0 || ports[1] != (model.Port{Number: 80, Protocol: model.ProtocolTCP}) {
		t.Fatalf("ports %v", ports)
	}
}
