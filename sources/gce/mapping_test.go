package gce

import (
	"reflect"
	"testing"
	"time"

	"github.com/registry-adapter/registry-adapter/model"
)

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in   string
		want []model.Port
		err  bool
	}{
		{in: "http:8080,grpc:9090", want: []model.Port{{Number: 8080, Protocol: model.ProtocolHTTP}, {Number: 9090, Protocol: model.ProtocolGRPC}}},
		{in: " HTTP:80 , 5432 ", want: []model.Port{{Number: 80, Protocol: model.ProtocolHTTP}, {Number: 5432, Protocol: model.ProtocolTCP}}},
		{in: "grpc-web:8081,http-admin:9901", want: []model.Port{{Number: 8081, Protocol: model.ProtocolGRPCWeb}, {Number: 9901, Protocol: model.ProtocolHTTP}}},
		{in: "htp:80", err: true},
		{in: "http:0", err: true},
		{in: "http:65536", err: true},
		{in: "http:80,tcp:80", err: true},
		{in: "http:", err: true},
		{in: " , ", err: true},
	}
	for _, tt := range tests {
		got, err := parsePorts(tt.in)
		if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parsePorts(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestSplitServices(t *testing.T) {
	names, invalid := splitServices("web_api__web_-bad", "_")
	if !reflect.DeepEqual(names, []string{"web", "api"}) || !reflect.DeepEqual(invalid, []string{"-bad"}) {
		t.Errorf("label: %q %q", names, invalid)
	}
	names, invalid = splitServices("Web, billing.v2 ,,cart_x", ",")
	if !reflect.DeepEqual(names, []string{"web", "billing.v2"}) || !reflect.DeepEqual(invalid, []string{"cart_x"}) {
		t.Errorf("metadata: %q %q", names, invalid)
	}
}

func TestAutoRegistrationKey(t *testing.T) {
	for k, want := range map[string]bool{
		"istio.io/autoRegistrationGroup": true,
		"istio-io-autoregistrationgroup": true,
		"istio_io_autoRegistrationGroup": true,
		"autoregistrationgroup":          false,
		"mesh-service":                   false,
	} {
		if got := isAutoRegistrationKey(k); got != want {
			t.Errorf("isAutoRegistrationKey(%q) = %v", k, got)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		"-1":                            0,
		"soon":                          0,
		"Thu, 02 Jan 2025 03:05:05 GMT": time.Minute,
		"Thu, 02 Jan 2025 03:00:00 GMT": 0,
	} {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}
