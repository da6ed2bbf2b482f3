package convert_test

import (
	"testing"

	"github.com/registry-adapter/registry-adapter/bench/gen"
	"github.com/registry-adapter/registry-adapter/convert"
)

// BenchmarkService is the conversion of one host (two ports, three
// instances): build, validate with istiod's rules, serialize the specs and
// hash the versions.
func BenchmarkService(b *testing.B) {
	for _, mode := range []convert.Mode{convert.ModeInline, convert.ModeWorkloadEntry} {
		b.Run("mode="+string(mode), func(b *testing.B) {
			svc := gen.Service(42)
			contribs := []convert.Contribution{{Source: "bench", Service: svc}}
			opts := gen.Options(mode)
			b.ReportAllocs()
			for b.Loop() {
				if rs, rej := convert.Service(svc.Host, contribs, opts); len(rs) == 0 || len(rej) > 0 {
					b.Fatal(rs, rej)
				}
			}
		})
	}
}

// BenchmarkResourceAny is the MCP envelope of one resource, serialized once.
func BenchmarkResourceAny(b *testing.B) {
	svc := gen.Service(42)
	rs, _ := convert.Service(svc.Host, []convert.Contribution{{Source: "bench", Service: svc}}, gen.Options(convert.ModeInline))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rs[0].Entry(); err != nil {
			b.Fatal(err)
		}
	}
}
