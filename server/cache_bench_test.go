package server

import (
	"fmt"
	"sync"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/registry-adapter/registry-adapter/bench/floor"
	"github.com/registry-adapter/registry-adapter/bench/gen"
	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/served"
)

var benchSizes = []int{1000, 10000, 50000}

var (
	benchMu      sync.Mutex
	benchEntries = map[int][]served.Entry{}
)

// entriesFor returns n served inline-mode ServiceEntries (two ports, three
// endpoints, about 700 bytes each), built once per size.
func entriesFor(b *testing.B, n int) []served.Entry {
	b.Helper()
	benchMu.Lock()
	defer benchMu.Unlock()
	if es, ok := benchEntries[n]; ok {
		return es
	}
	rs := gen.Resources(gen.Services(n), gen.Options(convert.ModeInline))
	es := make([]served.Entry, len(rs))
	for i, r := range rs {
		e, err := r.Entry()
		if err != nil {
			b.Fatal(err)
		}
		es[i] = e
	}
	benchEntries[n] = es
	return es
}

func readyCache(b *testing.B, n int) (*Cache, []served.Entry) {
	es := entriesFor(b, n)
	c := NewCache(nil)
	c.Apply(served.KindServiceEntry, es, nil)
	c.MarkReady()
	return c, es
}

// flip returns e with a different version and content of the same size, so
// that Apply sees a change.
func flip(e served.Entry, i int) served.Entry {
	e.Version = fmt.Sprintf("%s-%d", e.Version, i&1)
	return e
}

// BenchmarkCacheApply is the cache's own cost of one changed resource with
// no client connected: the O(1) update (the snapshot is built lazily).
func BenchmarkCacheApply(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			c, es := readyCache(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				c.Apply(served.KindServiceEntry, []served.Entry{flip(es[n/2], i)}, nil)
			}
		})
	}
}

// BenchmarkCacheApplyNotify is one changed resource with one client
// waiting (istiod's steady state): the update, the response handed to the
// stream, the shared snapshot rebuilt when the stream takes the response's
// content (on the stream's goroutine, not the adapter's), and the client's
// next watch parked.
func BenchmarkCacheApplyNotify(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			c, es := readyCache(b, n)
			out := make(chan cache.Response, 1)
			typeURL := "networking.istio.io/v1/ServiceEntry"
			park := func() func() {
				req := &cache.Request{TypeUrl: typeURL, VersionInfo: c.Version(served.KindServiceEntry), ResponseNonce: "n"}
				cancel, err := c.CreateWatch(req, nil, out)
				if err != nil {
					b.Fatal(err)
				}
				return cancel
			}
			cancel := park()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				c.Apply(served.KindServiceEntry, []served.Entry{flip(es[n/2], i)}, nil)
				resp := <-out
				if _, err := resp.GetDiscoveryResponse(); err != nil {
					b.Fatal(err)
				}
				cancel()
				cancel = park()
			}
			cancel()
		})
	}
}

// BenchmarkResponseEncode is what gRPC does with every response the cache
// hands out: the DiscoveryResponse around the shared snapshot, encoded by the
// server's codec, then copied through a 16 KB buffer as the HTTP/2 writer
// frames it. "proto" is the encoding without the shared records, as before
// responseCodec. Compare with floor.Build.
func BenchmarkResponseEncode(b *testing.B) {
	for _, n := range benchSizes {
		c, _ := readyCache(b, n)
		r := &sotwResponse{req: &discovery.DiscoveryRequest{TypeUrl: seV1}, cache: c, kind: served.KindServiceEntry}
		codec := newResponseCodec(c.records)
		b.Run(fmt.Sprintf("codec/N=%d", n), func(b *testing.B) {
			frame := make([]byte, 16<<10)
			b.ReportAllocs()
			for b.Loop() {
				resp, _ := r.GetDiscoveryResponse()
				bs, err := codec.Marshal(resp)
				if err != nil {
					b.Fatal(err)
				}
				if len(bs) != n+1 {
					b.Fatal("the codec did not use the shared records")
				}
				rd := bs.Reader()
				for {
					if _, err := rd.Read(frame); err != nil {
						break
					}
				}
			}
		})
		b.Run(fmt.Sprintf("proto/N=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, _ := r.GetDiscoveryResponse()
				if _, err := proto.Marshal(resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFloorBuildServer is floor.Build on this package's entries, so the
// package's figures have their floor in the same run.
func BenchmarkFloorBuildServer(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			es := entriesFor(b, n)
			snap := make([]*anypb.Any, len(es))
			for i, e := range es {
				snap[i] = e.Resource
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := floor.Build("networking.istio.io/v1/ServiceEntry", "v", snap); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
