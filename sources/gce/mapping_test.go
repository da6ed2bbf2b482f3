package gce

import (
	"reflect"
	"testing"

	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

func TestSplitServices(t *testing.T) {
	names, invalid := cloudsource.SplitServices("web_api__web_-bad", labelServiceSeparators)
	if !reflect.DeepEqual(names, []string{"web", "api"}) || !reflect.DeepEqual(invalid, []string{"-bad"}) {
		t.Errorf("label: %q %q", names, invalid)
	}
	names, invalid = cloudsource.SplitServices("Web, billing.v2 ,,cart_x", metadataServiceSeparators)
	if !reflect.DeepEqual(names, []string{"web", "billing.v2"}) || !reflect.DeepEqual(invalid, []string{"cart_x"}) {
		t.Errorf("metadata: %q %q", names, invalid)
	}
}
