package config

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/ec2"
	"github.com/registry-adapter/registry-adapter/sources/static"
)

// TestBuildSources: each entry becomes the source of its key, configured
// from its own section, and a source's metrics of its own reach the
// registry through sources.Options.
func TestBuildSources(t *testing.T) {
	cfg, err := Parse(strings.NewReader(`
sources:
- name: aws
  ec2: {region: us-east-1, pageSize: 50}
- name: vms
  static: {services: [{name: web, ports: [{number: 80}]}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := cfg.Sources[0].Registry.(*ec2.Config); !ok || c.PageSize != 50 || c.ServiceTag != ec2.DefaultServiceTag {
		t.Fatalf("sources[0] = %#v, want a defaulted ec2 config", cfg.Sources[0].Registry)
	}
	if _, ok := cfg.Sources[1].Registry.(*static.Config); !ok {
		t.Fatalf("sources[1] = %#v, want a static config", cfg.Sources[1].Registry)
	}
	reg := prometheus.NewPedanticRegistry()
	srcs, err := BuildSources(cfg, reg, zap.NewNop())
	if err != nil || len(srcs) != 2 || srcs[0].Name != "aws" || srcs[1].Name != "vms" {
		t.Fatalf("BuildSources = %v, %v", srcs, err)
	}
	if _, ok := srcs[0].Source.(*ec2.Source); !ok {
		t.Fatalf("sources[0] is a %T", srcs[0].Source)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range families {
		if f.GetName() == "registry_adapter_ec2_instances_seen" && len(f.Metric) == 1 {
			for _, l := range f.Metric[0].Label {
				found = found || (l.GetName() == "source" && l.GetValue() == "aws")
			}
		}
	}
	if !found {
		t.Errorf("registry_adapter_ec2_instances_seen{source=\"aws\"} not registered")
	}
	// A source whose metrics cannot be registered (here: another source of
	// the same name holds them) fails with an error that names it.
	reg = prometheus.NewPedanticRegistry()
	if _, err := (&ec2.Config{Region: "us-east-1"}).New(sources.Options{Name: "aws", Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := BuildSources(cfg, reg, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "sources[0] (aws): metrics:") {
		t.Errorf("conflicting registration: %v", err)
	}
}

// TestSourceKeyOrder: errors about several registries in one entry name them
// in the list's order, whatever the file's order, as they did when every
// registry was a field of SourceConfig.
func TestSourceKeyOrder(t *testing.T) {
	_, err := Parse(strings.NewReader("sources: [{name: x, consul: {}, static: {}}]\n"))
	if err == nil || !strings.Contains(err.Error(), "sources[0] (x): more than one registry configured (static and consul)") {
		t.Fatalf("err = %v", err)
	}
	_, err = Parse(strings.NewReader("sources: [{name: x, consul: }]\n"))
	if err == nil || !strings.Contains(err.Error(), "no registry configured: set one of static, consul, gce, azure, ec2, cloudmap") {
		t.Fatalf("null registry: err = %v", err)
	}
	_, err = Parse(strings.NewReader("sources: [{name: x, static: {services: [{name: 1, ports: oops}]}}]\n"))
	if err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("type error: err = %v", err)
	}
}
