package main

// The real-istiod scenario: an unpatched istiod (integration/istiod scripts)
// reads the adapter, which watches the real Consul; a change registered in
// Consul is timed until istiod's /debug/endpointShardz shows it, and istiod's
// own CPU per change is read from /proc.

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/registry-adapter/registry-adapter/bench/internal/measure"
	"github.com/registry-adapter/registry-adapter/convert"
)

// istiodSkipped is why an istiod scenario does not run, or "" when it can:
// istiod is built (cached), or BENCH_ISTIOD_BUILD=1 lets the run build it.
func istiodSkipped() string {
	if istiodCached() || os.Getenv("BENCH_ISTIOD_BUILD") == "1" {
		return ""
	}
	return istiodSkippedText
}

const istiodSkippedText = "skipped: istiod is not built yet (`make e2e` builds it once, about 15 minutes; or set BENCH_ISTIOD_BUILD=1)"

// istiodCached reports whether istiod and kube-apiserver are already built
// (building them takes about 15 minutes on 2 cores: not within `make bench`).
func istiodCached() bool {
	root := os.Getenv("REGISTRY_ADAPTER_CACHE")
	if root == "" {
		home, _ := os.UserHomeDir()
		root = filepath.Join(home, ".cache", "registry-adapter")
	}
	for _, b := range []string{"pilot-discovery", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(root, "istiod", "bin", b)); err != nil {
			return false
		}
	}
	return true
}

// istiodHarness makes a private run directory for integration/istiod's
// scripts and returns it with their environment (what build.sh prints, plus
// ISTIOD_RUN_DIR). The caller removes run once the scripts are stopped.
func istiodHarness(repo, prefix string) (run string, env []string, err error) {
	run, err = os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	built, err := runScript(repo, nil, "integration/istiod/build.sh")
	if err != nil {
		_ = os.RemoveAll(run)
		return "", nil, fmt.Errorf("build.sh: %w", err)
	}
	return run, append(strings.Fields(strings.ReplaceAll(built, "export ", "")), "ISTIOD_RUN_DIR="+run), nil
}

func exports(out string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Fields(out) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

func istiodScenario(rep *report, o options, proxy *countingProxy, reg *consulReg, registered int) error {
	n := o.istiodServices
	digits := int(math.Round(math.Log10(float64(n))))
	if n > registered || int(math.Pow10(digits)) != n {
		return fmt.Errorf("istiod-services must be a power of ten up to the %d services registered", registered)
	}
	if why := istiodSkipped(); why != "" {
		rep.istiod = append(rep.istiod, why)
		return nil
	}
	glob := "svc-" + strings.Repeat("0", 6-digits) + strings.Repeat("?", digits)
	s := &istiodConsulScenario{rep: rep, o: o, proxy: proxy, reg: reg, n: n, glob: glob}
	return runScenario(context.Background(), fmt.Sprintf("%d Consul services", n), readyTimeout, s)
}

// istiodConsulScenario is the real istiod reading the adapter child, whose
// Consul source reads the first n services.
type istiodConsulScenario struct {
	rep   *report
	o     options
	proxy *countingProxy
	reg   *consulReg
	n     int
	glob  string
	child *childProc
}

func (s *istiodConsulScenario) start(context.Context) (err error) {
	progress("istiod: adapter on %d Consul services (%s)", s.n, s.glob)
	s.child, err = startChild("-mode", string(convert.ModeWorkloadEntry), "-consul", s.proxy.addr, "-consul-mode", "unbounded",
		"-consul-max-queries", fmt.Sprint(s.n+16), "-consul-services-glob", s.glob, "-quiet", s.o.quiet.String(), "-max", s.o.max.String())
	return err
}

func (s *istiodConsulScenario) ready(ctx context.Context) error {
	_, err := adapterReady(ctx, s.child)
	return err
}

func (s *istiodConsulScenario) stop() {
	if s.child != nil {
		s.child.quit()
	}
}

func (s *istiodConsulScenario) measure(context.Context) error {
	rep, o, reg, n, child := s.rep, s.o, s.reg, s.n, s.child
	run, env, err := istiodHarness(o.repo, "bench-istiod-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(run)
	defer func() { _, _ = runScript(o.repo, env, "integration/istiod/stop.sh") }()
	progress("istiod: starting etcd and kube-apiserver")
	if _, err := runScript(o.repo, env, "integration/istiod/start-kube.sh"); err != nil {
		return fmt.Errorf("start-kube.sh: %w", err)
	}
	mesh, err := writeMesh(run, "mesh-bench.yaml", child.addr)
	if err != nil {
		return err
	}
	progress("istiod: starting istiod")
	t0 := time.Now()
	ist, err := startIstiod(o.repo, env, mesh, "ISTIOD_WAIT=ready", "ISTIOD_READY_TIMEOUT=300")
	if err != nil {
		return err
	}
	ready := time.Since(t0)
	pid := ist.pid
	shardz := func() ([]byte, error) {
		resp, err := http.Get(ist.base() + "/debug/endpointShardz")
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		return io.ReadAll(resp.Body)
	}
	// istiod is ready once it has the first reply; wait until it holds every endpoint.
	var size, held int
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		_, held, _ = istiodHolds(ist.base(), 30*time.Second)
		if held >= n*3 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if body, err := shardz(); err == nil {
		size = len(body)
	}
	if held < n*3 {
		return fmt.Errorf("istiod holds %d of %d endpoints after 5 minutes", held, n*3)
	}
	endpointsAt := time.Since(t0)
	time.Sleep(2 * time.Second)
	restCPU := restRate(measure.PID(pid).CPU)

	var lat []float64
	var cpu []time.Duration
	for i := 0; i < 5; i++ {
		svc, j := (i*397)%n, i%3
		t := time.Now()
		addr, err := reg.move(svc, j)
		if err != nil {
			return err
		}
		visible := false
		for time.Since(t) < 60*time.Second {
			body, err := shardz()
			if err == nil && strings.Contains(string(body), `"`+addr+`"`) {
				visible = true
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !visible {
			return fmt.Errorf("change %d (%s) not visible in istiod after 60s", i, addr)
		}
		lat = append(lat, time.Since(t).Seconds()*1000)
	}
	// istiod's own CPU per change, without the endpointShardz polling: a
	// change, 2 s of quiet, minus the rest rate.
	for i := 0; i < 3; i++ {
		before, t := measure.PID(pid).CPU(), time.Now()
		if _, err := reg.move((i*211+5)%n, (i+1)%3); err != nil {
			return err
		}
		time.Sleep(2 * time.Second)
		d := measure.PID(pid).CPU() - before - time.Duration(restCPU/100*float64(time.Since(t)))
		cpu = append(cpu, max(d, 0))
	}
	slices.Sort(lat)
	slices.Sort(cpu)
	rep.istiod = append(rep.istiod, istiodResult{n: n, ready: ready, size: size, endpointsAt: endpointsAt, restCPU: restCPU, lat: lat, cpu: cpu}.lines(o)...)
	return nil
}

// istiodResult is what the real-istiod scenario measured.
type istiodResult struct {
	n           int
	ready       time.Duration // istiod start -> /ready
	size        int           // bytes of /debug/endpointShardz holding everything
	endpointsAt time.Duration // istiod start -> every endpoint held
	restCPU     float64       // %
	lat         []float64     // ms, change -> visible, sorted
	cpu         []time.Duration
}

func (r istiodResult) lines(o options) []string {
	n, lat := r.n, r.lat
	return []string{
		fmt.Sprintf("- %d Consul services (%d instances, workloadentry mode, Consul source with a blocking query in flight for every service), unpatched istiod via integration/istiod: "+
			"ready %s after start, all endpoints in /debug/endpointShardz (%s) after %s; istiod CPU at rest %.1f%%.",
			n, n*3, r.ready.Round(time.Millisecond), bytesH(float64(r.size)), r.endpointsAt.Round(time.Millisecond), r.restCPU),
		fmt.Sprintf("- change in Consul (catalog register) → endpoint visible in istiod's /debug/endpointShardz: p50 %.0f ms, max %.0f ms over %d changes (debounce quiet %s; includes the 20 ms polling of endpointShardz).",
			measure.Quantile(lat, 0.5), lat[len(lat)-1], len(lat), o.quiet),
		fmt.Sprintf("- istiod CPU per change (decode of the whole WorkloadEntry set, %d resources, and its EDS push; /proc, 10 ms resolution, 2 s window minus the rest rate, 3 changes): median %s ms.",
			n*3, ms(measure.Median(r.cpu))),
	}
}
