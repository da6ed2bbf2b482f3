package azure

import (
	"strings"
	"testing"
	"time"

	"github.com/registry-adapter/registry-adapter/sources/cloudsource/cloudsourcetest"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

func TestConfigDefaults(t *testing.T) {
	c := Config{SubscriptionID: subscription}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Config != (poll.Config{RefreshInterval: 30 * time.Second, Timeout: time.Minute, MaxBackoff: 5 * time.Minute}) ||
		c.ServiceTag != "mesh-service" || c.PortsTag != "mesh-ports" || c.OptOutTag != "mesh-opt-out" ||
		c.HostTemplate != "{{.Service}}.azure.internal" || c.AddressType != "private" {
		t.Errorf("defaults %+v", c)
	}
}

func TestConfigValidateNamesTheField(t *testing.T) {
	tests := []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.SubscriptionID = "" }, "subscriptionId: required"},
		{func(c *Config) { c.SubscriptionID = "prod" }, "subscriptionId: \"prod\" is not a subscription ID"},
		{func(c *Config) { c.ResourceGroups = []string{"rg-a", "bad/rg"} }, "resourceGroups[1]: "},
		{func(c *Config) { c.ResourceGroups = []string{"rg-a", "RG-A"} }, "resourceGroups[1]: \"RG-A\" listed twice"},
		{func(c *Config) { c.ResourceGroups = []string{"ends."} }, "resourceGroups[0]: "},
		{func(c *Config) { c.ServiceTag = "istio.io/service" }, "serviceTag: "},
		{func(c *Config) { c.PortsTag = "a?b" }, "portsTag: "},
		{func(c *Config) { c.OptOutTag = " x" }, "optOutTag: "},
		{func(c *Config) { c.Ports = []Port{{Number: 70000}} }, "ports[0].number: 70000: must be 1-65535"},
		{func(c *Config) { c.Ports = []Port{{Number: 80}, {Number: 80}} }, "ports[1].number: 80: defined twice"},
		{func(c *Config) { c.Ports = []Port{{Number: 80, Protocol: "htp"}} }, "ports[0].protocol: \"htp\" is not an Istio protocol"},
		{func(c *Config) { c.HostTemplate = "{{.Project}}" }, "hostTemplate: "},
		{func(c *Config) { c.AddressType = "external" }, "addressType: \"external\": must be private, public or ipv6"},
		{func(c *Config) { c.Endpoint = "management.azure.com" }, "endpoint: "},
		{func(c *Config) { c.TenantID = "contoso" }, "tenantId: "},
		{func(c *Config) { c.ClientID = "app" }, "clientId: "},
		{func(c *Config) { c.Network = "a b" }, "network: "},
		{func(c *Config) { c.Timeout = -time.Second }, "must be positive"},
	}
	for _, tt := range tests {
		c := Config{SubscriptionID: subscription}
		tt.mutate(&c)
		c.SetDefaults()
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
		}
	}
	c := Config{SubscriptionID: subscription, ResourceGroups: []string{"MC_aks(1)_rg.x", "rg-ö"}, TenantID: tenant,
		Endpoint: "https://management.usgovcloudapi.net", ServiceTag: "Mesh Service"}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v", c, err)
	}
}

// TestREADMEExample decodes the README's configuration example strictly, as
// the adapter does, so that the documented keys stay the real ones.
func TestREADMEExample(t *testing.T) {
	c := cloudsourcetest.READMEConfig[Config](t, "azure")
	if c.SubscriptionID != subscription || c.MaxBackoff != 5*time.Minute || len(c.ResourceGroups) != 2 || c.Ports[0].Number != 8080 {
		t.Errorf("decoded %+v", c)
	}
}
