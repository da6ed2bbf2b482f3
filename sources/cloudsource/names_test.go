package cloudsource

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitServices(t *testing.T) {
	names, invalid := SplitServices(" Web, api;web  billing.v2 bad_name "+strings.Repeat("x", 64), ",; \t\n")
	if !reflect.DeepEqual(names, []string{"web", "api", "billing.v2"}) ||
		!reflect.DeepEqual(invalid, []string{"bad_name", strings.Repeat("x", 64)}) {
		t.Fatalf("names %q invalid %q", names, invalid)
	}
}

func TestAutoRegistrationKey(t *testing.T) {
	for k, want := range map[string]bool{
		"istio.io/autoRegistrationGroup": true,
		"istio-io-autoregistrationgroup": true,
		"istio_io_autoRegistrationGroup": true,
		"istio.io-autoRegistrationGroup": true,
		"autoregistrationgroup":          false,
		"mesh-service":                   false,
	} {
		if got := IsAutoRegistrationKey(k); got != want {
			t.Errorf("IsAutoRegistrationKey(%q) = %v", k, got)
		}
	}
}
