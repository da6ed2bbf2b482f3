package main

import (
	"bytes"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/types/known/anypb"
	mcp "istio.io/api/mcp/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/registry-adapter/registry-adapter/convert"
)

// The stand-in must differ from the adapter only in the versions: every
// resource's Metadata.Version is emptied, and its name, labels and body
// bytes are kept.
func TestStandInStripsOnlyVersions(t *testing.T) {
	body, err := anypb.New(&networking.ServiceEntry{Hosts: []string{"a.example"}, Ports: []*networking.ServicePort{{Number: 80, Name: "http", Protocol: "HTTP"}}})
	if err != nil {
		t.Fatal(err)
	}
	var resources []*anypb.Any
	for _, version := range []string{"v1", ""} {
		a, err := anypb.New(&mcp.Resource{Metadata: &mcp.Metadata{Name: "ns/a", Version: version, Labels: map[string]string{"k": "v"}}, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		resources = append(resources, a)
	}
	resp := &discovery.DiscoveryResponse{VersionInfo: "set-1", TypeUrl: "networking.istio.io/v1/ServiceEntry", Resources: resources}
	s := &standIn{}
	if err := s.strip(resp); err != nil {
		t.Fatal(err)
	}
	if got := s.stripped.Load(); got != 1 {
		t.Errorf("stripped %d resources, want 1 (the other had no version)", got)
	}
	if resp.GetVersionInfo() != "set-1" {
		t.Errorf("reply version %q changed", resp.GetVersionInfo())
	}
	for i, a := range resp.GetResources() {
		var r mcp.Resource
		if err := a.UnmarshalTo(&r); err != nil {
			t.Fatalf("resource %d: %v", i, err)
		}
		if r.GetMetadata().GetVersion() != "" {
			t.Errorf("resource %d keeps version %q", i, r.GetMetadata().GetVersion())
		}
		if r.GetMetadata().GetName() != "ns/a" || r.GetMetadata().GetLabels()["k"] != "v" {
			t.Errorf("resource %d metadata changed: %v", i, r.GetMetadata())
		}
		if !bytes.Equal(r.GetBody().GetValue(), body.GetValue()) || r.GetBody().GetTypeUrl() != body.GetTypeUrl() {
			t.Errorf("resource %d body changed", i)
		}
	}
	bad := &discovery.DiscoveryResponse{Resources: []*anypb.Any{{TypeUrl: "type.googleapis.com/istio.mcp.v1alpha1.Resource", Value: []byte{0xff}}}}
	if err := s.strip(bad); err == nil {
		t.Error("an undecodable resource: no error")
	}
}

func TestParseWay(t *testing.T) {
	for _, tc := range []struct {
		way         string
		mode        convert.Mode
		versionless bool
		err         bool
	}{
		{"inline", convert.ModeInline, false, false},
		{"inline-versionless", convert.ModeInline, true, false},
		{"workloadentry", convert.ModeWorkloadEntry, false, false},
		{"workloadentry-versionless", convert.ModeWorkloadEntry, true, false},
		{"versionless", "", false, true},
		{"inline-versioned", "", false, true},
	} {
		mode, vl, err := parseWay(tc.way)
		if (err != nil) != tc.err || mode != tc.mode || vl != tc.versionless {
			t.Errorf("parseWay(%q) = %q, %v, %v; want %q, %v, error %v", tc.way, mode, vl, err, tc.mode, tc.versionless, tc.err)
		}
	}
}
