package cloudsource

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

	tests := []struct {
		in   string
		want []model.Port
		err  bool
	}{
		{in: "http:8080,grpc:9090", want: []model.Port{{Number: 8080, Protocol: model.ProtocolHTTP}, {Number: 9090, Protocol: model.ProtocolGRPC}}},
		{in: " HTTP:80 , 5432 ", want: []model.Port{{Number: 80, Protocol: model.ProtocolHTTP}, {Number: 5432, Protocol: model.ProtocolTCP}}},
		{in: "grpc-web:8081,http-admin:9901", want: []model.Port{{Number: 8081, Protocol: model.ProtocolGRPCWeb}, {Number: 9901, Protocol: model.ProtocolHTTP}}},
		{in: "TLS:443 3306", want: []model.Port{{Number: 443, Protocol: model.ProtocolTLS}, {Number: 3306, Protocol: model.ProtocolTCP}}},
		{in: "http-metrics:9102", want: []model.Port{{Number: 9102, Protocol: model.ProtocolHTTP}}},
		{in: "htp:80", err: true},
		{in: "web:80", err: true},
		{in: "http:0", err: true},
		{in: "http:65536", err: true},
		{in: "http:80,tcp:80", err: true},
		{in: "http:80,http:80", err: true},
		{in: "http:", err: true},
		{in: "http:x", err: true},
		{in: " , ", err: true},
		{in: "", err: true},
	}
	for _, tt := range tests {
		got, err := ParsePorts(tt.in)
		if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParsePorts(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestCheckPorts(t *testing.T) {
	ports, errs := CheckPorts("ports", []Port{{9090, "grpc"}, {80, ""}, {80, "http"}, {0, "htp"}})
	if len(errs) != 3 || !strings.Contains(errs[0].Error(), "ports[2].number: 80: defined twice") ||
		!strings.Contains(errs[2].Error(), `ports[3].protocol: "htp"`) {
		t.Fatalf("errs %v", errs)
	}
	if ports[0].Number != 0 || ports[1] != (model.Port{Number: 80, Protocol: model.ProtocolTCP}) {
		t.Fatalf("ports %v", ports)
	}
}
