package floor_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/registry-adapter/registry-adapter/bench/floor"
	"github.com/registry-adapter/registry-adapter/bench/gen"
	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/served"
)

var sizes = []int{1000, 10000, 50000}

const seType = "networking.istio.io/v1/ServiceEntry"

var (
	mu    sync.Mutex
	built = map[int][]*served.Resource{}
)

// resources returns n inline-mode ServiceEntries (two ports, three endpoints).
func resources(n int) []*served.Resource {
	mu.Lock()
	defer mu.Unlock()
	if rs, ok := built[n]; ok {
		return rs
	}
	rs := gen.Resources(gen.Services(n), gen.Options(convert.ModeInline))
	built[n] = rs
	return rs
}

func BenchmarkFloorMarshal(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			rs := resources(n)
			specs, envs := floor.Specs(rs), floor.Envelopes(rs)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := floor.Marshal(specs, envs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFloorBuild(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			anys := floor.Serialized(resources(n))
			b.ReportAllocs()
			b.ResetTimer()
			var size int
			for b.Loop() {
				wire, err := floor.Build(seType, "v1", anys)
				if err != nil {
					b.Fatal(err)
				}
				size = len(wire)
			}
			b.ReportMetric(float64(size), "bytes/push")
		})
	}
}

func BenchmarkFloorDecode(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			wire, err := floor.Build(seType, "v1", floor.Serialized(resources(n)))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if got, err := floor.Decode(wire); err != nil || got != n {
					b.Fatalf("decoded %d of %d: %v", got, n, err)
				}
			}
		})
	}
}
