package fidelity

import (
	"slices"
	"strings"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestEndpointDetailsAndSANs reads locality, weight and the Istio mutual TLS
// identities from protos shaped as istiod builds them.
func TestEndpointDetailsAndSANs(t *testing.T) {
	lb := func(addr string, port, weight uint32) *endpoint.LbEndpoint {
		return &endpoint.LbEndpoint{
			HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: &core.Address{Address: &core.Address_SocketAddress{
				SocketAddress: &core.SocketAddress{Address: addr, PortSpecifier: &core.SocketAddress_PortValue{PortValue: port}}}}}},
			LoadBalancingWeight: wrapperspb.UInt32(weight),
		}
	}
	cla := &endpoint.ClusterLoadAssignment{Endpoints: []*endpoint.LocalityLbEndpoints{
		{Locality: &core.Locality{Region: "us-east-1", Zone: "us-east-1a"}, LbEndpoints: []*endpoint.LbEndpoint{lb("10.0.0.1", 8080, 1)}},
		{LbEndpoints: []*endpoint.LbEndpoint{lb("10.0.0.2", 18080, 50)}},
	}}
	got := endpointDetails(cla)
	want := map[string]SidecarEndpoint{"10.0.0.1:8080": {Locality: "us-east-1/us-east-1a", Weight: 1}, "10.0.0.2:18080": {Weight: 50}}
	if len(got) != len(want) || got["10.0.0.1:8080"] != want["10.0.0.1:8080"] || got["10.0.0.2:18080"] != want["10.0.0.2:18080"] {
		t.Errorf("details %v, want %v", got, want)
	}

	tlsCtx, err := anypb.New(&tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchSubjectAltNames: []*matcher.StringMatcher{
				{MatchPattern: &matcher.StringMatcher_Exact{Exact: "spiffe://cluster.local/ns/entries/sa/billing"}},
			}},
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	match, _ := structpb.NewStruct(map[string]any{"tlsMode": "istio"})
	c := &cluster.Cluster{TransportSocketMatches: []*cluster.Cluster_TransportSocketMatch{
		{Name: "tlsMode-istio", Match: match, TransportSocket: &core.TransportSocket{Name: "tls", ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: tlsCtx}}},
		{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: &core.TransportSocket{Name: "raw"}},
	}}
	if got := istioMutualSANs(c); !slices.Equal(got, []string{"spiffe://cluster.local/ns/entries/sa/billing"}) {
		t.Errorf("SANs %v", got)
	}
}

// TestDiffSidecarEndpoints: each per-instance field a sidecar's view can
// lose is reported, naming the host and the endpoint.
func TestDiffSidecarEndpoints(t *testing.T) {
	want := View{"b.example.com": {Host: "b.example.com", Ports: map[string]Port{"http": {Number: 80, Protocol: "HTTP"}},
		Endpoints: map[string]Endpoint{
			"10.0.0.1/http": {Address: "10.0.0.1", PortName: "http", Port: 80, Labels: map[string]string{"version": "v1"}, Locality: "r/z", ServiceAccount: "ns/e/sa/b"},
			"10.0.0.2/http": {Address: "10.0.0.2", PortName: "http", Port: 8080, Labels: map[string]string{"version": "v2"}, Weight: 50},
		}}}
	subsets := Subsets{"v1": {"version": "v1"}, "v2": {"version": "v2"}}
	good := SidecarView{Clusters: map[string]SidecarCluster{
		"outbound|80||b.example.com": {Endpoints: []string{"10.0.0.1:80", "10.0.0.2:8080"},
			Details:         map[string]SidecarEndpoint{"10.0.0.1:80": {Locality: "r/z", Weight: 1}, "10.0.0.2:8080": {Weight: 50}},
			SubjectAltNames: []string{"spiffe://td/ns/e/sa/b"}},
		"outbound|80|v1|b.example.com": {Endpoints: []string{"10.0.0.1:80"}},
		"outbound|80|v2|b.example.com": {Endpoints: []string{"10.0.0.2:8080"}},
	}}
	if d := DiffSidecarEndpoints(want, good, subsets); len(d) > 0 {
		t.Fatalf("faithful view reported: %v", d)
	}
	bad := SidecarView{Clusters: map[string]SidecarCluster{
		"outbound|80||b.example.com": {Endpoints: []string{"10.0.0.1:80", "10.0.0.2:8080"},
			Details: map[string]SidecarEndpoint{"10.0.0.1:80": {Weight: 1}, "10.0.0.2:8080": {Weight: 1}}},
		"outbound|80|v1|b.example.com": {Endpoints: []string{"10.0.0.1:80", "10.0.0.2:8080"}},
	}}
	got := strings.Join(DiffSidecarEndpoints(want, bad, subsets), "\n")
	for _, w := range []string{
		`endpoint 10.0.0.1:80 in locality "", want "r/z"`,
		"endpoint 10.0.0.2:8080 load_balancing_weight 1, want 50",
		"endpoint 10.0.0.1:80 identity ns/e/sa/b not verified",
		"subset v1 map[version:v1] sends traffic to [10.0.0.1:80 10.0.0.2:8080], want [10.0.0.1:80]",
		"no subset cluster outbound|80|v2|b.example.com",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("diff lacks %q:\n%s", w, got)
		}
	}
}
