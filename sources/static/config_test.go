package static

import (
	"strings"
	"testing"

	"github.com/registry-adapter/registry-adapter/sources"
)

var _ sources.Config = (*Config)(nil)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		svc  Service
		want string
	}{
		{Service{Ports: []Port{{Number: 80}}}, "services[0].name: required"},
		{Service{Name: "a", Host: "a b", Ports: []Port{{Number: 80}}}, `services[0].host "a b": not a host name`},
		{Service{Name: "a"}, "services[0].ports: at least one port is required"},
		{Service{Name: "a", Ports: []Port{{Number: 80, Protocol: "htp"}}}, `services[0].ports[0].protocol "htp": not an Istio protocol`},
		{Service{Name: "a", Ports: []Port{{Number: 80}}, Instances: []Instance{{}}}, "services[0].instances[0].address: required"},
		{Service{Name: "a", Ports: []Port{{Number: 80}}, Instances: []Instance{{Address: "10.0.0.1", Ports: map[uint32]uint32{81: 1}}}},
			"services[0].instances[0].ports: 81 is not a port of the service"},
	} {
		c := Config{Services: []Service{tc.svc}}
		c.SetDefaults()
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want %q", err, tc.want)
		}
	}
}
