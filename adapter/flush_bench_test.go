package adapter

import (
	"fmt"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/bench/gen"
	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
	"github.com/registry-adapter/registry-adapter/server"
)

// benchAdapter is an adapter whose store and cache hold n services, ready,
// without its Run loop: the benchmark drives apply and flush itself.
func benchAdapter(b *testing.B, n int, mode convert.Mode) (*Adapter, *server.Cache, *gen.Registry) {
	b.Helper()
	reg := gen.NewRegistry(gen.ServicesFor(n, mode))
	c := server.NewCache(nil)
	a := New([]NamedSource{{Name: "bench"}}, Settings{Output: gen.Options(mode)}, c, nil, zap.NewNop())
	a.apply(update{source: "bench", groups: gen.Groups(reg.Services), full: true})
	a.flush()
	c.MarkReady()
	return a, c, reg
}

// BenchmarkFlushOneChange is the adapter's cost of one endpoint change in a
// debounce window: store update, conversion of the one dirty host, diff,
// serialization of what changed and the cache update, with one client
// waiting for the change (its response handed over, not encoded).
func BenchmarkFlushOneChange(b *testing.B) {
	for _, mode := range []convert.Mode{convert.ModeInline, convert.ModeWorkloadEntry} {
		for _, n := range []int{1000, 10000, 50000} {
			b.Run(fmt.Sprintf("mode=%s/N=%d", mode, n), func(b *testing.B) {
				a, c, reg := benchAdapter(b, n, mode)
				kind := served.KindServiceEntry
				typeURL := "networking.istio.io/v1/ServiceEntry"
				if mode == convert.ModeWorkloadEntry {
					kind, typeURL = served.KindWorkloadEntry, "networking.istio.io/v1/WorkloadEntry"
				}
				out := make(chan cache.Response, 1)
				park := func() func() {
					cancel, err := c.CreateWatch(&cache.Request{TypeUrl: typeURL, VersionInfo: c.Version(kind), ResponseNonce: "n"}, nil, out)
					if err != nil {
						b.Fatal(err)
					}
					return cancel
				}
				cancel := park()
				services := len(reg.Services)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					i++
					g, _ := reg.MoveEndpoint((i * 7919) % services)
					a.apply(update{source: "bench", groups: []model.Group{g}})
					a.flush()
					<-out
					cancel()
					cancel = park()
				}
				cancel()
			})
		}
	}
}

// BenchmarkNoopRefresh is a source re-sending its whole state unchanged (a
// source restart): every host is converted again and nothing is published.
func BenchmarkNoopRefresh(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("mode=inline/N=%d", n), func(b *testing.B) {
			a, c, reg := benchAdapter(b, n, convert.ModeInline)
			v := c.Version(served.KindServiceEntry)
			groups := gen.Groups(reg.Services)
			b.ReportAllocs()
			for b.Loop() {
				a.apply(update{source: "bench", groups: groups, full: true})
				a.flush()
			}
			if c.Version(served.KindServiceEntry) != v {
				b.Fatal("a no-op refresh changed the served version")
			}
		})
	}
}

// BenchmarkColdFlush is the first publication of a source's whole state:
// every host converted, serialized and handed to an empty cache. It is most of
// the time istiod waits for its first reply after a restart.
func BenchmarkColdFlush(b *testing.B) {
	for _, n := range []int{10000, 50000} {
		b.Run(fmt.Sprintf("mode=inline/N=%d", n), func(b *testing.B) {
			reg := gen.NewRegistry(gen.ServicesFor(n, convert.ModeInline))
			groups := gen.Groups(reg.Services)
			b.ReportAllocs()
			for b.Loop() {
				c := server.NewCache(nil)
				a := New([]NamedSource{{Name: "bench"}}, Settings{Output: gen.Options(convert.ModeInline)}, c, nil, zap.NewNop())
				a.apply(update{source: "bench", groups: groups, full: true})
				a.flush()
			}
		})
	}
}
