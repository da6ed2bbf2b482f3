package azure

import (
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

func TestSplitServices(t *testing.T) {
	names, invalid := cloudsource.SplitServices("Web, api;web  billing_v2,", serviceSeparators)
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
		if cloudsource.IsAutoRegistrationKey(k) != want {
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
		if got := cloudsource.RetryAfterHeader(tt.h, now, msRetryHeaders...); got != tt.want {
			t.Errorf("retryAfter(%v) = %s, want %s", tt.h, got, tt.want)
		}
	}
}
