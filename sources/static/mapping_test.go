package static

import (
	"reflect"
	"testing"

	"github.com/registry-adapter/registry-adapter/model"
)

func TestGroups(t *testing.T) {
	cfg := Config{Services: []Service{{
		Name: "web", Ports: []Port{{Number: 80, Protocol: "http"}, {Number: 9000}},
		Labels:    map[string]string{"team": "a"},
		Instances: []Instance{{Address: "10.0.0.1", Ports: map[uint32]uint32{80: 8080}, Weight: 3}},
	}}}
	cfg.SetDefaults()
	want := []model.Group{{Scope: "web", Services: []model.Service{{
		Name: "web", Host: "web.static", Labels: model.LabelsFromMap(map[string]string{"team": "a"}),
		Ports: []model.Port{{Number: 80, Protocol: model.ProtocolHTTP}, {Number: 9000, Protocol: model.ProtocolTCP}},
		Instances: []model.Instance{{ID: "10.0.0.1", Address: "10.0.0.1", Ports: model.TargetPortsFromMap(map[uint32]uint32{80: 8080}),
			Weight: 3, Health: model.HealthUnknown}},
	}}}}
	if got := groups(cfg); !reflect.DeepEqual(got, want) {
		t.Fatalf("groups:\n got %+v\nwant %+v", got, want)
	}
}
