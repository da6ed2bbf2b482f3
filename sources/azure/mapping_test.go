package azure

import (
	"net/http"
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
		{in: "TLS:443 3306", want: []model.Port{{Number: 443, Protocol: model.ProtocolTLS}, {Number: 3306, Protocol: model.ProtocolTCP}}},
		{in: "http-metrics:9102", want: []model.Port{{Number: 9102, Protocol: model.ProtocolHTTP}}},
		{in: "web:80", err: true},
		{in: "http:80,http:80", err: true},
		{in: "http:x", err: true},
		{in: "", err: true},
	}
	for _, tt := range tests {
		got, err := parsePorts(tt.in)
		if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parsePorts(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestSplitServices(t *testing.T) {
	names, invalid := splitServices("Web, api;web  billing_v2,")
	if !reflect.DeepEqual(names, []string{"web", "api"}) || !reflect.DeepEqual(invalid, []string{"billing_v2"}) {
		t.Errorf("splitServices: %q %q", names, invalid)
	}
}

func TestResourceIDs(t *testing.T) {
	id := "/subscriptions/s/resourceGroups/RG-1/providers/Microsoft.Network/virtualNetworks/v/subnets/default"
	if got := resourceGroupOf(id); got != "RG-1" {
		t.Errorf("resourceGroupOf = %q", got)
	}
	if got := vnetOf(id); got != "/subscriptions/s/resourceGroups/RG-1/providers/Microsoft.Network/virtualNetworks/v" {
		t.Errorf("vnetOf = %q", got)
	}
	if vnetOf("") != "" || resourceGroupOf("/subscriptions/s") != "" {
		t.Error("empty IDs")
	}
	for k, want := range map[string]bool{
		"istio.io-autoRegistrationGroup": true, "istio-io-autoregistrationgroup": true, "mesh-service": false,
	} {
		if isAutoRegistrationKey(k) != want {
			t.Errorf("isAutoRegistrationKey(%q) != %v", k, want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tt := range []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{}, 0},
		{http.Header{"Retry-After": {"30"}}, 30 * time.Second},
		{http.Header{"Retry-After": {"Thu, 02 Jan 2025 03:06:05 GMT"}}, 2 * time.Minute},
		{http.Header{"Retry-After-Ms": {"250"}, "Retry-After": {"30"}}, 250 * time.Millisecond},
		{http.Header{"X-Ms-Retry-After-Ms": {"750"}}, 750 * time.Millisecond},
		{http.Header{"Retry-After": {"0"}}, 0},
	} {
		if got := retryAfter(tt.h, now); got != tt.want {
			t.Errorf("retryAfter(%v) = %s, want %s", tt.h, got, tt.want)
		}
	}
}
