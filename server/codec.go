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

	"github.com/registry-adapter/registry-adapter/convert"
)

// discoveryResponseResources is the field number of DiscoveryResponse.resources.
const discoveryResponseResources = 2

// recordHeadroom is room enough in front of a marshalled MCP resource for its
// record's header: three tags, the type URL and its length, two varints.
const recordHeadroom = 1 + 5 + 1 + 1 + len(convert.MCPResourceTypeURL) + 1 + 5

// NewEntry serializes an MCP resource (istio.mcp.v1alpha1.Resource) straight
// into its record (see responseCodec), without the copy Apply would make of
// an Entry built from an Any.
func NewEntry(name, version string, mcpResource proto.Message) (Entry, error) {
	// Size first, so that the buffer is allocated once and exactly; the
	// marshal then reuses the sizes it cached.
	size := proto.Size(mcpResource)
	buf, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(make([]byte, recordHeadroom, recordHeadroom+size), mcpResource)
	if err != nil {
		return Entry{}, fmt.Errorf("server: marshal %s: %w", name, err)
	}
	value := buf[recordHeadroom:]
	var hb [recordHeadroom]byte
	head := appendRecordHeader(hb[:0], convert.MCPResourceTypeURL, len(value))
	start := recordHeadroom - len(head)
	copy(buf[start:], head)
	return Entry{
		Name: name, Version: version,
		Resource: &anypb.Any{TypeUrl: convert.MCPResourceTypeURL, Value: value[:len(value):len(value)]},
		record:   mem.SliceBuffer(buf[start:]),
	}, nil
}

// appendRecordHeader appends what precedes an Any's value in its record: the
// DiscoveryResponse.resources tag and length, then the Any's type URL field
// and its value's tag and length.
func appendRecordHeader(b []byte, typeURL string, valueLen int) []byte {
	anySize := protowire.SizeTag(1) + protowire.SizeBytes(len(typeURL)) +
		protowire.SizeTag(2) + protowire.SizeBytes(valueLen)
	b = protowire.AppendTag(b, discoveryResponseResources, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(anySize))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, typeURL)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(valueLen))
}

// withRecord encodes e's resource once, as field 2 of a DiscoveryResponse,
// and points e.Resource's value into that encoding, so that the record costs
// no more memory than the resource did. Entries made by NewEntry have theirs.
func withRecord(e Entry) Entry {
	a := e.Resource
	if a == nil || e.record != nil {
		return e
	}
	b := appendRecordHeader(make([]byte, 0, recordHeadroom+len(a.Value)), a.TypeUrl, len(a.Value))
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
