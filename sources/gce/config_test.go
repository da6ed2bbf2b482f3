package gce

import (
	"strings"
	"testing"
	"time"

	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource/cloudsourcetest"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

func TestConfigDefaults(t *testing.T) {
	c := Config{Project: "my-project"}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := Config{
		Config:           poll.Config{RefreshInterval: 30 * time.Second, Timeout: time.Minute, MaxBackoff: 5 * time.Minute},
		Project:          "my-project",
		ServiceLabel:     "mesh-service",
		PortsMetadataKey: "mesh-ports",
		OptOutLabel:      "mesh-opt-out",
		MappingConfig:    cloudsource.MappingConfig{HostTemplate: "{{.Service}}.gce.internal", AddressType: "private"},
	}
	if c.Config != want.Config || c.ServiceLabel != want.ServiceLabel || c.PortsMetadataKey != want.PortsMetadataKey ||
		c.OptOutLabel != want.OptOutLabel || c.HostTemplate != want.HostTemplate || c.AddressType != want.AddressType {
		t.Errorf("defaults %+v, want %+v", c, want)
	}
}

func TestConfigValidateNamesTheField(t *testing.T) {
	tests := []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.Project = "" }, "project: required"},
		{func(c *Config) { c.Project = "My_Project" }, "project: "},
		{func(c *Config) { c.Zones = []string{"us-central1-a", "us-central1"} }, "zones[1]: "},
		{func(c *Config) { c.Zones = []string{"us-central1-a", "us-central1-a"} }, "zones[1]: \"us-central1-a\" listed twice"},
		{func(c *Config) { c.ServiceLabel = "Mesh.Service" }, "serviceLabel: "},
		{func(c *Config) { c.OptOutLabel = "istio.io/x" }, "optOutLabel: "},
		{func(c *Config) { c.PortsMetadataKey = "mesh ports" }, "portsMetadataKey: "},
		{func(c *Config) { c.Ports = []Port{{Number: 0}} }, "ports[0].number: 0: must be 1-65535"},
		{func(c *Config) { c.Ports = []Port{{Number: 80}, {Number: 80}} }, "ports[1].number: 80: defined twice"},
		{func(c *Config) { c.Ports = []Port{{Number: 80, Protocol: "htp"}} }, "ports[0].protocol: \"htp\" is not an Istio protocol"},
		{func(c *Config) { c.HostTemplate = "{{.Name}}.x" }, "hostTemplate: "},
		{func(c *Config) { c.HostTemplate = "{{.Service" }, "hostTemplate: "},
		{func(c *Config) { c.HostTemplate = "_{{if false}}{{.Service}}{{end}}" }, "hostTemplate: "},
		{func(c *Config) { c.AddressType = "external" }, "addressType: \"external\": must be private, public or ipv6"},
		{func(c *Config) { c.Endpoint = "127.0.0.1:8080" }, "endpoint: "},
		{func(c *Config) { c.Network = "my net" }, "network: "},
		{func(c *Config) { c.RefreshInterval = time.Millisecond }, "refreshInterval 1ms: must be at least 1s"},
		{func(c *Config) { c.Health.Enabled = true }, "health.backendServices: required with health.enabled"},
		{func(c *Config) { c.Health.BackendServices = []string{"web-bs", "Web_BS"} }, "health.backendServices[1]: "},
		{func(c *Config) { c.Health.BackendServices = []string{"regions/us-central1"} }, "health.backendServices[0]: "},
		{func(c *Config) { c.Health.BackendServices = []string{"regions/us-central1-a/web"} }, "health.backendServices[0]: "},
		{func(c *Config) { c.Health.BackendServices = []string{"web", "web"} }, "health.backendServices[1]: \"web\" listed twice"},
	}
	for _, tt := range tests {
		c := Config{Project: "my-project"}
		tt.mutate(&c)
		c.SetDefaults()
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
		}
	}
	for _, ok := range []func(*Config){
		func(c *Config) { c.Project = "example.com:my-project" },
		func(c *Config) { c.Project = "123456789012" },
		func(c *Config) { c.Endpoint = "https://compute-psc.p.googleapis.com" },
		func(c *Config) { c.Zones = []string{"northamerica-northeast1-a", "europe-west4-b"} },
		func(c *Config) { c.Ports = []Port{{Number: 8080, Protocol: "grpc-web"}, {Number: 9000}} },
		func(c *Config) {
			c.Health.Enabled = true
			c.Health.BackendServices = []string{"web-bs", "regions/europe-west4/api-bs"}
		},
	} {
		c := Config{Project: "my-project"}
		ok(&c)
		c.SetDefaults()
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", c, err)
		}
	}
}

func TestEndpointURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8080":                           "http://127.0.0.1:8080/compute/v1/",
		"https://compute-psc.p.googleapis.com/":           "https://compute-psc.p.googleapis.com/compute/v1/",
		"https://compute-psc.p.googleapis.com/compute/v1": "https://compute-psc.p.googleapis.com/compute/v1/",
	} {
		if got := endpointURL(in); got != want {
			t.Errorf("endpointURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestREADMEExample decodes the README's configuration example strictly, as
// the adapter does, so that the documented keys stay the real ones.
func TestREADMEExample(t *testing.T) {
	c := cloudsourcetest.READMEConfig[Config](t, "gce")
	if c.Project != "mesh-prod-1" || c.RefreshInterval != 30*time.Second || len(c.Zones) != 2 || c.Ports[0].Number != 8080 {
		t.Errorf("decoded %+v", c)
	}
}
