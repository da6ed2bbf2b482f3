package adapter

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/bench/floor"
	"github.com/registry-adapter/registry-adapter/bench/gen"
	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/server"
)

// BenchmarkLiveHeap is what the adapter and its cache keep live per served
// resource after a cold sync, beyond the source's own registry model: the
// memory a running adapter holds (peak RSS is a multiple of it, GOGC). It
// reports live-B/res; HEAP_PROFILE=file also writes the in-use heap profile
// taken at that point.
func BenchmarkLiveHeap(b *testing.B) {
	for _, mode := range []convert.Mode{convert.ModeInline, convert.ModeWorkloadEntry} {
		for _, n := range []int{10000, 50000} {
			b.Run(fmt.Sprintf("mode=%s/N=%d", mode, n), func(b *testing.B) {
				reg := gen.NewRegistry(gen.ServicesFor(n, mode))
				groups := gen.Groups(reg.Services)
				for b.Loop() {
					before := liveHeap()
					debug.FreeOSMemory()
					rssBefore := resetPeakRSS()
					c := server.NewCache(nil)
					a := New([]NamedSource{{Name: "bench"}}, Settings{Output: gen.Options(mode)}, c, nil, zap.NewNop())
					a.apply(update{source: "bench", groups: groups, full: true})
					a.flush()
					peak := statusBytes("VmHWM:")
					after := liveHeap()
					if path := os.Getenv("HEAP_PROFILE"); path != "" {
						f, err := os.Create(path)
						if err != nil {
							b.Fatal(err)
						}
						if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
							b.Fatal(err)
						}
						f.Close()
					}
					b.ReportMetric(float64(after-before)/float64(n), "live-B/res")
					if peak > 0 && rssBefore > 0 {
						b.ReportMetric(float64(peak-rssBefore)/float64(n), "peakRSS-B/res")
					}
					runtime.KeepAlive(a)
					runtime.KeepAlive(c)
				}
				runtime.KeepAlive(reg)
			})
		}
	}
}

// resetPeakRSS resets the process's VmHWM to its current RSS (Linux; as the
// load driver's child does) and returns that RSS, or 0 where it cannot.
func resetPeakRSS() int64 {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return 0
	}
	return statusBytes("VmRSS:")
}

// statusBytes reads one kB field of /proc/self/status, in bytes; 0 if absent.
func statusBytes(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb * 1024
		}
	}
	return 0
}

// cpuTime is the process's user and system CPU time: on a loaded machine
// it moves less than the wall clock.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkColdRatio is the cold sync against its floor, interleaved in one
// process so that a shared machine's load cancels out of the ratio: the
// floor is protobuf's marshal of every spec and envelope plus istiod's
// decode of the full reply (bench/floor), the cold sync the adapter's first
// flush of the whole source plus the same decode. It reports the median of
// the per-round ratios as cold-x-floor (the load driver's cold sync also
// counts the transfer to the client). flushCPU-x-marshalCPU is the part the
// adapter adds: its flush against protobuf's marshal alone.
func BenchmarkColdRatio(b *testing.B) {
	for _, n := range []int{10000, 50000} {
		b.Run(fmt.Sprintf("mode=inline/N=%d", n), func(b *testing.B) {
			reg := gen.NewRegistry(n)
			groups := gen.Groups(reg.Services)
			rs := gen.Resources(reg.Services, gen.Options(convert.ModeInline))
			specs, envs := floor.Specs(rs), floor.Envelopes(rs)
			wire, err := floor.Build("networking.istio.io/v1/ServiceEntry", "v1", floor.Serialized(rs))
			if err != nil {
				b.Fatal(err)
			}
			rs = nil
			var ratios, cpuRatios, flushRatios []float64
			for b.Loop() {
				runtime.GC()
				start, cpu := time.Now(), cpuTime()
				if _, err := floor.Marshal(specs, envs); err != nil {
					b.Fatal(err)
				}
				marshalCPU := cpuTime() - cpu
				if _, err := floor.Decode(wire); err != nil {
					b.Fatal(err)
				}
				floorTook, floorCPU := time.Since(start), cpuTime()-cpu
				runtime.GC()
				start, cpu = time.Now(), cpuTime()
				c := server.NewCache(nil)
				a := New([]NamedSource{{Name: "bench"}}, Settings{Output: gen.Options(convert.ModeInline)}, c, nil, zap.NewNop())
				a.apply(update{source: "bench", groups: groups, full: true})
				a.flush()
				flushCPU := cpuTime() - cpu
				if _, err := floor.Decode(wire); err != nil {
					b.Fatal(err)
				}
				flushRatios = append(flushRatios, float64(flushCPU)/float64(marshalCPU))
				ratios = append(ratios, float64(time.Since(start))/float64(floorTook))
				cpuRatios = append(cpuRatios, float64(cpuTime()-cpu)/float64(floorCPU))
			}
			slices.Sort(ratios)
			slices.Sort(cpuRatios)
			b.ReportMetric(ratios[len(ratios)/2], "cold-x-floor")
			b.ReportMetric(cpuRatios[len(cpuRatios)/2], "coldCPU-x-floorCPU")
			slices.Sort(flushRatios)
			b.ReportMetric(flushRatios[len(flushRatios)/2], "flushCPU-x-marshalCPU")
		})
	}
}
