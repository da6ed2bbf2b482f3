package server

import (
	"fmt"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the "proto" codec this one defers to
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// discoveryResponseResources is the field number of DiscoveryResponse.resources.
const discoveryResponseResources = 2

// withRecord encodes e's resource once, as field 2 of a DiscoveryResponse,
// and points e.Resource's value into that encoding, so that the record costs
// no more memory than the resource did.
func withRecord(e Entry) Entry {
	a := e.Resource
	if a == nil {
		return e
	}
	anySize := protowire.SizeTag(1) + protowire.SizeBytes(len(a.TypeUrl)) +
		protowire.SizeTag(2) + protowire.SizeBytes(len(a.Value))
	b := make([]byte, 0, protowire.SizeTag(discoveryResponseResources)+protowire.SizeBytes(anySize))
	b = protowire.AppendTag(b, discoveryResponseResources, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(anySize))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, a.TypeUrl)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(a.Value)))
	valueAt := len(b)
	b = append(b, a.Value...)
	e.Resource = &anypb.Any{TypeUrl: a.TypeUrl, Value: b[valueAt:len(b):len(b)]}
	e.record = mem.SliceBuffer(b)
	return e
}

// responseCodec is the gRPC codec of the xDS server. A state-of-the-world
// reply carries every resource of its type, and go-control-plane's server
// would marshal the whole set again for every client and every push (one
// full copy, 36 MB at 50k ServiceEntries, each time). For a reply whose
// resources are the cache's current snapshot, this codec encodes only the
// few other fields and hands gRPC the resources' records, encoded once when
// they changed, without copying them: gRPC's transport reads the buffers
// straight into its HTTP/2 frames. Anything else goes to the proto codec.
type responseCodec struct {
	cache *Cache
	proto encoding.CodecV2
}

func newResponseCodec(cache *Cache) responseCodec {
	return responseCodec{cache: cache, proto: encoding.GetCodecV2("proto")}
}

// Name is the content subtype gRPC negotiates; this codec speaks plain proto.
func (c responseCodec) Name() string { return "proto" }

func (c responseCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return c.proto.Unmarshal(data, v)
}

func (c responseCodec) Marshal(v any) (mem.BufferSlice, error) {
	resp, ok := v.(*discovery.DiscoveryResponse)
	if !ok {
		return c.proto.Marshal(v)
	}
	records := c.cache.encodedResources(resp.GetResources())
	if records == nil {
		return c.proto.Marshal(v)
	}
	// Every field but the resources, whatever fields the type has now.
	head := &discovery.DiscoveryResponse{}
	hm := head.ProtoReflect()
	resp.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Number() != discoveryResponseResources {
			hm.Set(fd, v)
		}
		return true
	})
	hb, err := proto.Marshal(head)
	if err != nil {
		return nil, fmt.Errorf("xds codec: %w", err)
	}
	// Protobuf readers accept fields in any order, so the records can follow
	// the other fields.
	out := make(mem.BufferSlice, 0, len(records)+1)
	out = append(out, mem.SliceBuffer(hb))
	return append(out, records...), nil
}
