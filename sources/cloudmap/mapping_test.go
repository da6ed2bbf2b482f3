package cloudmap

import (
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/servicediscovery/types"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

func testMapper(t *testing.T, mod func(*Config)) *mapper {
	t.Helper()
	c := Config{Region: "eu-west-1", Namespace: "prod.local"}
	if mod != nil {
		mod(&c)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	m, err := newMapper(&c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func summary(id string, health types.HealthStatus, attrs map[string]string) types.HttpInstanceSummary {
	return types.HttpInstanceSummary{InstanceId: aws.String(id), HealthStatus: health, Attributes: attrs}
}

func TestMapService(t *testing.T) {
	m := testMapper(t, func(c *Config) { c.Ports = []Port{{Number: 80, Protocol: "http"}, {Number: 443, Protocol: "https"}} })
	res := m.mapService("Web", []types.HttpInstanceSummary{
		summary("b", types.HealthStatusUnhealthy, map[string]string{AttrIPv4: "10.0.0.2", AttrPort: "8080"}),
		summary("a", types.HealthStatusHealthy, map[string]string{AttrIPv4: "10.0.0.1", "mesh-ports": "grpc:80", "team": "x"}),
		summary("c", "", map[string]string{AttrIPv4: "10.0.0.3", "mesh-ports": "80x"}),
		summary("d", "", map[string]string{AttrIPv4: "10.0.0.4", AutoRegistrationAttribute: "g"}),
		summary("e", "", map[string]string{AttrIPv4: "fe80::1"}),
	})
	want := &model.Group{Scope: "Web", Services: []model.Service{{
		Name: "Web", Host: "web.prod.local",
		// a (lowest ID) says 80 is grpc; b's http:80 from the config
		// conflicts and loses.
		Ports: []model.Port{{Number: 80, Protocol: model.ProtocolGRPC}, {Number: 443, Protocol: model.ProtocolHTTPS}},
		Instances: []model.Instance{
			{ID: "a", Address: "10.0.0.1", Labels: map[string]string{"mesh-ports": "grpc:80", "team": "x"},
				Locality: "eu-west-1", Health: model.HealthPassing},
			// Several configured ports: AWS_INSTANCE_PORT is not a target.
			{ID: "b", Address: "10.0.0.2", Locality: "eu-west-1", Health: model.HealthCritical},
		},
	}}}
	if !reflect.DeepEqual(res.group, want) {
		t.Fatalf("got  %+v\nwant %+v", res.group, want)
	}
	wantSkipped := map[string]int{skipInvalidPorts: 1, skipAutoRegistered: 1, skipNoAddress: 1, skipPortConflict: 1}
	if !reflect.DeepEqual(res.skipped, wantSkipped) || res.seen != 5 {
		t.Fatalf("skipped %v seen %d", res.skipped, res.seen)
	}

	// A service name the template cannot make a host of.
	res = m.mapService("bad_name", []types.HttpInstanceSummary{summary("a", "", map[string]string{AttrIPv4: "10.0.0.1"})})
	if res.group != nil || res.skipped[skipInvalidService] != 1 || !strings.Contains(res.problems["service/bad_name"].detail, "not a DNS name") {
		t.Fatalf("%+v", res)
	}
}

func TestMapAddressTypes(t *testing.T) {
	attrs := map[string]string{AttrIPv4: "10.0.0.1", AttrIPv6: "2001:DB8::1", AttrCNAME: "Host.Example.com.", AttrPort: "80"}
	for typ, want := range map[string]string{AddressIPv4: "10.0.0.1", AddressIPv6: "2001:db8::1", AddressCNAME: "host.example.com"} {
		res := testMapper(t, func(c *Config) { c.AddressType = typ }).mapService("web", []types.HttpInstanceSummary{summary("a", "", attrs)})
		if res.group == nil || res.group.Services[0].Instances[0].Address != want {
			t.Errorf("%s: %+v", typ, res.group)
		}
	}
	res := testMapper(t, func(c *Config) { c.AddressType = AddressCNAME }).mapService("web",
		[]types.HttpInstanceSummary{summary("a", "", map[string]string{AttrCNAME: "not a host", AttrPort: "80"})})
	if res.group != nil || res.skipped[skipNoAddress] != 1 {
		t.Errorf("bad cname: %+v", res)
	}
}

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

// The adapter wires a source with kindOf("cloudmap", ..., cloudmap.New):
// these are the signatures it needs.
var (
	_ func(Config, sources.Options) (*Source, error) = New
	_ interface {
		SetDefaults()
		Validate() error
	} = (*Config)(nil)
)
