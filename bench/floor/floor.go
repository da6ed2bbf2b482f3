// Package floor holds the three floors every benchmark figure is compared
// with: serializing N resources, building (and encoding) a response from
// resources already serialized, and istiod's decode of a full response.
package floor

import (
	"fmt"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	mcp "istio.io/api/mcp/v1alpha1"

	"github.com/registry-adapter/registry-adapter/served"
)

// Envelopes returns the MCP envelopes of rs with their bodies not yet
// serialized: what Marshal starts from.
func Envelopes(rs []*served.Resource) []*mcp.Resource {
	out := make([]*mcp.Resource, len(rs))
	for i, r := range rs {
		out[i] = &mcp.Resource{
			Metadata: &mcp.Metadata{
				Name: r.Key(), CreateTime: timestamppb.New(r.CreateTime()), Version: r.Version,
				Labels: r.Labels, Annotations: r.Annotations,
			},
			Body: &anypb.Any{TypeUrl: "type.googleapis.com/" + string(r.Spec.ProtoReflect().Descriptor().FullName())},
		}
	}
	return out
}

// Marshal is floor 1: proto.Marshal of every resource, the spec into the
// body and then the MCP envelope, as a cache that serializes everything on
// every change would. It returns the serialized resources.
func Marshal(specs []proto.Message, envs []*mcp.Resource) ([]*anypb.Any, error) {
	out := make([]*anypb.Any, len(envs))
	for i, env := range envs {
		body, err := proto.Marshal(specs[i])
		if err != nil {
			return nil, err
		}
		env.Body.Value = body
		b, err := proto.Marshal(env)
		if err != nil {
			return nil, err
		}
		out[i] = &anypb.Any{TypeUrl: served.MCPResourceTypeURL, Value: b}
	}
	return out, nil
}

// Specs returns the specs of rs.
func Specs(rs []*served.Resource) []proto.Message {
	out := make([]proto.Message, len(rs))
	for i, r := range rs {
		out[i] = r.Spec
	}
	return out
}

// Serialized returns the served form of rs (each serialized once).
func Serialized(rs []*served.Resource) []*anypb.Any {
	out := make([]*anypb.Any, len(rs))
	for i, r := range rs {
		e, err := r.Entry()
		if err != nil {
			panic(err)
		}
		out[i] = e.Resource
	}
	return out
}

// Build is floor 2: a response built from resources already serialized,
// encoded for the wire (what gRPC does with every response it sends).
func Build(typeURL, version string, resources []*anypb.Any) ([]byte, error) {
	resp := &discovery.DiscoveryResponse{
		VersionInfo: version,
		Resources:   resources,
		TypeUrl:     typeURL,
		Nonce:       "1",
	}
	return proto.Marshal(resp)
}

// Decode is floor 3: what istiod does with a full response (pkg/adsc): the
// wire decode of the DiscoveryResponse, then per resource UnmarshalTo an MCP
// Resource and the body into its spec type. It returns the resources decoded.
func Decode(wire []byte) (int, error) {
	var resp discovery.DiscoveryResponse
	if err := proto.Unmarshal(wire, &resp); err != nil {
		return 0, err
	}
	return DecodeResources(resp.GetResources())
}

// DecodeResources is Decode after the wire decode, as a client that already
// holds the DiscoveryResponse does it.
func DecodeResources(resources []*anypb.Any) (int, error) {
	for _, a := range resources {
		var m mcp.Resource
		if err := a.UnmarshalTo(&m); err != nil {
			return 0, fmt.Errorf("decode envelope: %w", err)
		}
		if _, err := m.GetBody().UnmarshalNew(); err != nil {
			return 0, fmt.Errorf("decode body of %s: %w", m.GetMetadata().GetName(), err)
		}
	}
	return len(resources), nil
}
