package static

import (
	"strings"
	"testing"

	"github.com/registry-adapter/registry-adapter/sources"
)

var _ sources.Config = (*Config)(nil)

// A name the default host is made of is made a host by the one policy.
func TestDefaultHostSanitized(t *testing.T) {
	c := Config{Services: []Service{{Name: "Billing_API", Ports: []Port{{Number: 80}}}}}
	c.SetDefaults()
	if err := c.Validate(); err != nil || c.Services[0].Host != "billing-api.static" {
		t.Errorf("host %q, %v; want billing-api.static", c.Services[0].Host, err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		svc  Service
		want string
	}{
		{Service{Ports: []Port{{Number: 80}}}, "services[0].name: required"},
		{Service{Name: "a", Host: "a b", Ports: []Port{{Number: 80}}}, `services[0].host "a b": not a host name as the adapter serves them (lower case, labels of a-z, 0-9 and '-'); write "a-b"`},
		// The one host policy of every source (model.SanitizeHost).
		{Service{Name: "a", Host: "Billing.VMs.example.com", Ports: []Port{{Number: 80}}}, `write "billing.vms.example.com"`},
		{Service{Name: "a", Host: "*.example.com", Ports: []Port{{Number: 80}}}, `write "example.com"`},
		{Service{Name: "a", Host: "..", Ports: []Port{{Number: 80}}}, `services[0].host "..": not a host name: host "." is empty after sanitizing`},
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
