package ec2

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

func TestConfigYAMLAndDefaults(t *testing.T) {
	const doc = `
region: eu-west-1
endpoint: https://ec2.eu-west-1.amazonaws.com
refreshInterval: 45s
filters:
  vpc-id: [vpc-0abc]
  tag:env: [prod, staging]
tags:
  team: [payments]
pageSize: 200
serviceTag: svc
portsTag: svc-ports
ports:
- {number: 8080, protocol: http}
hostTemplate: "{{.Service}}.aws.example.com"
addressType: ipv6
network: prod-net
optOutTag: svc-exclude
health:
  enabled: true
  targetGroups: [arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/9181365d0715f61c]
  elbv2Endpoint: https://elasticloadbalancing.eu-west-1.amazonaws.com
assumeRoleArn: arn:aws:iam::123456789012:role/mesh-reader
assumeRoleExternalId: ext-1
stsEndpoint: https://sts.eu-west-1.amazonaws.com
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.RefreshInterval != 45*time.Second || c.Timeout != time.Minute || c.Region != "eu-west-1" ||
		c.Filters["tag:env"][1] != "staging" || c.Tags["team"][0] != "payments" || c.PageSize != 200 ||
		c.ServiceTag != "svc" || c.PortsTag != "svc-ports" || c.OptOutTag != "svc-exclude" ||
		c.AddressType != cloudsource.AddressIPv6 || c.Network != "prod-net" || c.AssumeRoleExternalID != "ext-1" ||
		c.Ports[0].Number != 8080 || !c.Health.Enabled || len(c.Health.TargetGroups) != 1 || c.Health.ELBv2Endpoint == "" {
		t.Fatalf("decoded %+v", c)
	}

	d := Config{Region: "us-east-1"}
	d.SetDefaults()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.ServiceTag != "mesh-service" || d.PortsTag != "mesh-ports" || d.OptOutTag != "mesh-exclude" ||
		d.HostTemplate != "{{.Service}}.{{.Region}}.ec2" || d.AddressType != "private" || d.PageSize != 1000 ||
		d.RefreshInterval != 30*time.Second || d.Health.Enabled {
		t.Fatalf("defaults %+v", d)
	}
	// The server-side filters: running instances with the service tag.
	f := requestFilters(&d)
	if len(f) != 2 || *f[0].Name != "instance-state-name" || f[0].Values[0] != "running" ||
		*f[1].Name != "tag-key" || f[1].Values[0] != "mesh-service" {
		t.Fatalf("filters %+v", f)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no region", func(c *Config) { c.Region = "" }, "region: required"},
		{"bad region", func(c *Config) { c.Region = "US East" }, `region: "US East" is not an AWS region`},
		{"endpoint", func(c *Config) { c.Endpoint = "127.0.0.1:5000" }, "endpoint: "},
		{"filter name", func(c *Config) { c.Filters = map[string][]string{"Vpc Id": {"x"}} }, "filters[Vpc Id]: "},
		{"filter no values", func(c *Config) { c.Filters = map[string][]string{"vpc-id": nil} }, "filters[vpc-id]: at least one value"},
		{"tag filter twice", func(c *Config) {
			c.Filters = map[string][]string{"tag:env": {"a"}}
			c.Tags = map[string][]string{"env": {"b"}}
		}, "tags[env]: also set as filters[tag:env]"},
		{"page size", func(c *Config) { c.PageSize = 2000 }, "pageSize: 2000: must be 5-1000"},
		{"aws tag", func(c *Config) { c.ServiceTag = "aws:svc" }, `serviceTag: "aws:svc": the aws: prefix is reserved`},
		{"same tags", func(c *Config) { c.PortsTag = "mesh-service" }, "must differ"},
		{"port", func(c *Config) { c.Ports = []Port{{Number: 0}} }, "ports[0].number: 0: must be 1-65535"},
		{"protocol", func(c *Config) { c.Ports = []Port{{Number: 80, Protocol: "htp"}} }, `ports[0].protocol: "htp" is not an Istio protocol`},
		{"template syntax", func(c *Config) { c.HostTemplate = "{{.Service" }, "hostTemplate: "},
		{"template field", func(c *Config) { c.HostTemplate = "{{.Project}}.x" }, "hostTemplate: "},
		{"template not dns", func(c *Config) { c.HostTemplate = "_{{if false}}{{.Service}}{{end}}" }, "is empty after sanitizing"},
		{"address type", func(c *Config) { c.AddressType = "elastic" }, `addressType: "elastic": must be private, public or ipv6`},
		{"role", func(c *Config) { c.AssumeRoleARN = "mesh-reader" }, "assumeRoleArn: "},
		{"external id alone", func(c *Config) { c.AssumeRoleExternalID = "x" }, "assumeRoleExternalId: set without assumeRoleArn"},
		{"refresh", func(c *Config) { c.RefreshInterval = time.Millisecond }, "refreshInterval"},
		{"target groups without health", func(c *Config) {
			c.Health.TargetGroups = []string{"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/9181365d0715f61c"}
		}, "health.targetGroups: set without health.enabled"},
		{"target group arn", func(c *Config) {
			c.Health.Enabled = true
			c.Health.TargetGroups = []string{"web"}
		}, `health.targetGroups[0]: "web" is not a target group ARN`},
		{"elbv2 endpoint", func(c *Config) { c.Health.ELBv2Endpoint = "elb:443" }, "health.elbv2Endpoint: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Region: "us-east-1"}
			tc.mod(&c)
			c.SetDefaults()
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
			if _, err := New(c, sourcesOptions()); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

// The adapter wires a source with kindOf("ec2", ..., ec2.New): these are the
// signatures it needs.
var (
	_ func(Config, sources.Options) (*Source, error) = New
	_ interface {
		SetDefaults()
		Validate() error
	} = (*Config)(nil)
)
