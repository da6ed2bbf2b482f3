package floor_test

// Prototypes of two server-side optimisations, measured against the floors
// (see BENCHMARKS.md, "Recommended changes").

import (
	"fmt"
	"slices"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/registry-adapter/registry-adapter/bench/floor"
)

// BenchmarkEncodeShared is a response encoded from a resources section
// serialized once per version and shared by every client and every push of
// that version: only version, type URL and nonce are encoded per send. With a
// gRPC codec returning the cached section as a mem.Buffer it needs no copy at
// all; here it is appended (one memmove), the upper bound.
func BenchmarkEncodeShared(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			anys := floor.Serialized(resources(n))
			// The resources field (2) of DiscoveryResponse, encoded once.
			var section []byte
			for _, a := range anys {
				m, err := proto.Marshal(a)
				if err != nil {
					b.Fatal(err)
				}
				section = protowire.AppendTag(section, 2, protowire.BytesType)
				section = protowire.AppendBytes(section, m)
			}
			full, _ := floor.Build(seType, "v1", anys)
			b.ReportAllocs()
			b.ResetTimer()
			var out []byte
			for b.Loop() {
				head, err := proto.Marshal(&discovery.DiscoveryResponse{VersionInfo: "v1", TypeUrl: seType, Nonce: "1"})
				if err != nil {
					b.Fatal(err)
				}
				out = append(append(make([]byte, 0, len(head)+len(section)), head...), section...)
			}
			if len(out) != len(full) {
				b.Fatalf("shared encoding is %d bytes, full %d", len(out), len(full))
			}
			var check discovery.DiscoveryResponse
			if err := proto.Unmarshal(out, &check); err != nil || len(check.Resources) != n {
				b.Fatalf("shared encoding does not decode: %v", err)
			}
		})
	}
}

// entry mirrors served.Entry's layout (two strings and a pointer).
type entry struct {
	Name, Version string
	Resource      *anypb.Any
}

// BenchmarkSnapshot compares the cache's snapshot rebuild after a change
// (a pass over the entries copying each pointer) with a clone of a pointer
// slice kept in step with the entries.
func BenchmarkSnapshot(b *testing.B) {
	for _, n := range sizes {
		es := make([]entry, n)
		ptrs := make([]*anypb.Any, n)
		for i := range es {
			es[i] = entry{Name: fmt.Sprint(i), Version: "v", Resource: &anypb.Any{}}
			ptrs[i] = es[i].Resource
		}
		b.Run(fmt.Sprintf("rebuild/N=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				snap := make([]*anypb.Any, len(es))
				for i, e := range es {
					snap[i] = e.Resource
				}
				_ = snap
			}
		})
		b.Run(fmt.Sprintf("clone/N=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = slices.Clone(ptrs)
			}
		})
	}
}
