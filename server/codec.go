package server

import (
	"fmt"
	"sync"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the "proto" codec this one defers to
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/registry-adapter/registry-adapter/served"
)

// discoveryResponseResources is the field number of DiscoveryResponse.resources.
const discoveryResponseResources = 2

// records holds the encoded records (served.Entry.Record) of each kind's
// current snapshot. The cache publishes a snapshot's records when it builds
// the snapshot and withdraws them when the set changes; the codec only reads.
// Data flows one way, cache -> records -> codec, and the codec never takes
// the cache's lock.
type records struct {
	mu   sync.Mutex
	sets map[served.Kind]recordSet
}

// recordSet pairs a snapshot (a resource slice the cache made) with the
// same resources encoded, in the same order.
type recordSet struct {
	snapshot []*anypb.Any
	records  []mem.Buffer
}

func newRecords() *records { return &records{sets: make(map[served.Kind]recordSet)} }

func (r *records) publish(kind served.Kind, snapshot []*anypb.Any, recs []mem.Buffer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if recs == nil {
		delete(r.sets, kind)
		return
	}
	r.sets[kind] = recordSet{snapshot: snapshot, records: recs}
}

func (r *records) withdraw(kind served.Kind) {
	r.mu.Lock()
	delete(r.sets, kind)
	r.mu.Unlock()
}

// of returns the encoded records of resources when resources is a published
// snapshot, and nil otherwise (an older snapshot, or a slice the cache did
// not make).
func (r *records) of(resources []*anypb.Any) []mem.Buffer {
	if len(resources) == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sets {
		if len(s.snapshot) == len(resources) && &s.snapshot[0] == &resources[0] {
			return s.records
		}
	}
	return nil
}

// responseCodec is the gRPC codec of the xDS server. A state-of-the-world
// reply carries every resource of its type, and go-control-plane's server
// would marshal the whole set again for every client and every push (one
// full copy, 36 MB at 50k ServiceEntries, each time). For a reply whose
// resources are a published snapshot, this codec encodes only the few other
// fields and hands gRPC the resources' records, encoded once when they
// changed, without copying them: gRPC's transport reads the buffers straight
// into its HTTP/2 frames. Anything else goes to the proto codec.
type responseCodec struct {
	records *records
	proto   encoding.CodecV2
}

func newResponseCodec(r *records) responseCodec {
	return responseCodec{records: r, proto: encoding.GetCodecV2("proto")}
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
	recs := c.records.of(resp.GetResources())
	if recs == nil {
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
	out := make(mem.BufferSlice, 0, len(recs)+1)
	out = append(out, mem.SliceBuffer(hb))
	return append(out, recs...), nil
}
