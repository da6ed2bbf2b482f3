package cloudmap

import (
	"reflect"
	"strings"
	"testing"
	"text/template"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/servicediscovery/types"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
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
			{ID: "a", Address: "10.0.0.1", Labels: model.LabelsFromMap(map[string]string{"mesh-ports": "grpc:80", "team": "x"}),
				Locality: "eu-west-1", Health: model.HealthPassing},
			// Several configured ports: AWS_INSTANCE_PORT is not a target.
			{ID: "b", Address: "10.0.0.2", Locality: "eu-west-1", Health: model.HealthCritical},
		},
	}}}
	if !reflect.DeepEqual(res.group, want) {
		t.Fatalf("got  %+v\nwant %+v", res.group, want)
	}
	wantSkipped := map[string]int{cloudsource.SkipInvalidPorts: 1, cloudsource.SkipAutoRegistered: 1, cloudsource.SkipNoAddress: 1, cloudsource.SkipPortConflict: 1}
	if !reflect.DeepEqual(res.Skipped, wantSkipped) || res.Seen != 5 {
		t.Fatalf("skipped %v seen %d", res.Skipped, res.Seen)
	}

	// A service name that is not a DNS label is sanitized into the host, by
	// the one policy of every source (model.SanitizeHost).
	res = m.mapService("Bad_Name", []types.HttpInstanceSummary{summary("a", "", map[string]string{AttrIPv4: "10.0.0.1"})})
	if res.group == nil || res.group.Services[0].Host != "bad-name.prod.local" {
		t.Fatalf("%+v", res)
	}
	// One the template cannot make a host of at all.
	m.Template = template.Must(template.New("h").Parse("{{if false}}{{.Service}}{{end}}"))
	res = m.mapService("web", []types.HttpInstanceSummary{summary("a", "", map[string]string{AttrIPv4: "10.0.0.1"})})
	if res.group != nil || res.Skipped[cloudsource.SkipInvalidService] != 1 || !strings.Contains(res.Problems["service/web"].Detail, "empty after sanitizing") {
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
	if res.group != nil || res.Skipped[cloudsource.SkipNoAddress] != 1 {
		t.Errorf("bad cname: %+v", res)
	}
}
