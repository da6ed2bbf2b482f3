package cloudmap

import (
	"strings"
	"testing"

	"github.com/registry-adapter/registry-adapter/sources"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Region = "" }, "region: required"},
		{func(c *Config) { c.Namespace = "" }, "namespace: required"},
		{func(c *Config) { c.Namespace = "a b" }, "namespace: "},
		{func(c *Config) { c.Services = []string{"web", "web"} }, `services[1]: "web" listed twice`},
		{func(c *Config) { c.OwnerAccount = "123" }, "ownerAccount: "},
		{func(c *Config) { c.QueryParameters = map[string]string{"k": ""} }, "queryParameters: "},
		{func(c *Config) { c.FullResync = 1 }, "fullResync: "},
		{func(c *Config) { c.PortsAttribute = "AWS_INSTANCE_PORT" }, "portsAttribute: "},
		{func(c *Config) { c.Ports = []Port{{Number: 70000}} }, "ports[0].number: 70000"},
		{func(c *Config) { c.HostTemplate = "{{.Project}}" }, "hostTemplate: "},
		{func(c *Config) { c.AddressType = "public" }, `addressType: "public"`},
		{func(c *Config) { c.Endpoint = "localhost" }, "endpoint: "},
		{func(c *Config) { c.STSEndpoint = "http://x" }, "stsEndpoint: set without assumeRoleArn"},
		{func(c *Config) { c.AssumeRoleARN = "role" }, "assumeRoleArn: "},
	} {
		c := Config{Region: "us-east-1", Namespace: "prod.local"}
		tc.mod(&c)
		c.SetDefaults()
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want %q", err, tc.want)
		}
		if _, err := New(c, sources.Options{}); err == nil {
			t.Errorf("New accepted %+v", c)
		}
	}
	c := Config{Region: "us-east-1", Namespace: "prod.local"}
	c.SetDefaults()
	if err := c.Validate(); err != nil || c.HostTemplate != DefaultHostTemplate || c.PortsAttribute != "mesh-ports" ||
		c.OptOutAttribute != "mesh-exclude" || c.AddressType != "ipv4" || c.FullResync != DefaultFullResync {
		t.Fatalf("defaults %+v: %v", c, err)
	}
}

// The kinds package lists the source by its config, a sources.Config.
var (
	_ func(Config, sources.Options) (*Source, error) = New
	_ sources.Config                                 = (*Config)(nil)
)
