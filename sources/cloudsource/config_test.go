package cloudsource

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/registry-adapter/registry-adapter/model"
)

func TestMappingConfig(t *testing.T) {
	type host struct{ Service, Region string }
	c := MappingConfig{Ports: []Port{{Number: 9090, Protocol: "grpc"}, {Number: 80}}}
	c.SetDefaults("{{.Service}}.{{.Region}}", AddressPrivate)
	if c.HostTemplate != "{{.Service}}.{{.Region}}" || c.AddressType != AddressPrivate {
		t.Fatalf("defaults %+v", c)
	}
	if err := c.Validate(host{"web", "r1"}, VMAddressTypes...); err != nil {
		t.Fatal(err)
	}
	want := []model.Port{{Number: 80, Protocol: model.ProtocolTCP}, {Number: 9090, Protocol: model.ProtocolGRPC}}
	if got := c.ConfigPorts(); !reflect.DeepEqual(got, want) {
		t.Fatalf("ConfigPorts %v", got)
	}

	c = MappingConfig{Ports: []Port{{Number: 0}}, HostTemplate: "{{.Project}}", AddressType: "elastic", Network: "a b"}
	err := c.Validate(host{"web", "r1"}, VMAddressTypes...)
	msgs := strings.Split(err.Error(), "\n")
	if len(msgs) != 4 || msgs[0] != "ports[0].number: 0: must be 1-65535" || !strings.HasPrefix(msgs[1], "hostTemplate: ") ||
		msgs[2] != `addressType: "elastic": must be private, public or ipv6` || msgs[3] != `network: "a b" must not contain white space` {
		t.Fatalf("errors %q", msgs)
	}
	if err := CheckAddressType("ipv5", "ipv4", "ipv6", "cname"); err == nil || err.Error() != `"ipv5": must be ipv4, ipv6 or cname` {
		t.Fatalf("CheckAddressType: %v", err)
	}
}

func TestValidIP(t *testing.T) {
	for _, tt := range []struct {
		in   string
		v6   bool
		want string
	}{
		{"10.0.0.1", false, "10.0.0.1"},
		{"10.0.0.1", true, ""},
		{"2001:DB8::1", true, "2001:db8::1"},
		{"2001:db8::1", false, ""},
		{"", false, ""},
		{"host", false, ""},
	} {
		if got := ValidIP(tt.in, tt.v6); got != tt.want {
			t.Errorf("ValidIP(%q, %v) = %q, want %q", tt.in, tt.v6, got, tt.want)
		}
	}
}

func TestCheckEndpoint(t *testing.T) {
	for v, ok := range map[string]bool{
		"": true, "https://compute.example.com": true, "http://127.0.0.1:5000/x": true,
		"127.0.0.1:5000": false, "ftp://example.com": false, "https://": false,
	} {
		err := CheckEndpoint("endpoint", v)
		if (err == nil) != ok || (err != nil && err.Error() != fmt.Sprintf("endpoint: %q is not an http(s) URL", v)) {
			t.Errorf("CheckEndpoint(%q) = %v", v, err)
		}
	}
}
