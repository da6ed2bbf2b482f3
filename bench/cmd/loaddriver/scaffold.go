package main

// The scenario scaffold: the sequence every scenario of the load driver with
// an adapter child (the shards, the istiod comparison, the Consul modes, the
// real istiod) follows, and the pieces they share: starting the adapter child
// and istiod, istiod's mesh config, its rest rate, what it holds, and a
// family of cases on one kube-apiserver. Each scenario's own measurement code
// stays in its file (shard.go, compare.go, consul.go, istiod.go).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/registry-adapter/registry-adapter/bench/internal/measure"
	"github.com/registry-adapter/registry-adapter/fidelity"
)

// scenario is one measured case: one N and K of the shards, one way of the
// comparison, one Consul mode, the real istiod.
type scenario interface {
	// start starts what the case measures (the adapter child).
	start(ctx context.Context) error
	// ready waits until it is ready; ctx carries the deadline.
	ready(ctx context.Context) error
	// measure takes the measurements (starting istiod where the case has
	// one) and keeps them in the scenario for its table.
	measure(ctx context.Context) error
	// stop stops whatever start and measure started; it runs once start
	// has been called, whatever the steps returned.
	stop()
}

// readyTimeout is how long an adapter child may take to serve its first
// full state.
const readyTimeout = 10 * time.Minute

// runScenario runs s: start, ready within readyTimeout, measure, stop. An
// error names the scenario and the step; a cancelled ctx stops the sequence
// (a step that is running sees it through its ctx).
func runScenario(ctx context.Context, name string, readyTimeout time.Duration, s scenario) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, context.Cause(ctx))
	}
	defer s.stop()
	if err := s.start(ctx); err != nil {
		return fmt.Errorf("%s: start: %w", name, err)
	}
	rctx, cancel := context.WithTimeoutCause(ctx, readyTimeout, fmt.Errorf("not ready after %s", readyTimeout))
	err := s.ready(rctx)
	cancel()
	if err != nil {
		return fmt.Errorf("%s: ready: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, context.Cause(ctx))
	}
	if err := s.measure(ctx); err != nil {
		return fmt.Errorf("%s: measure: %w", name, err)
	}
	return nil
}

// adapterReady starts child's sources and waits, polling every 20 ms, until
// it has served its first full state; it returns the adapter's sync time
// (from the child's start to ready).
func adapterReady(ctx context.Context, child *childProc) (time.Duration, error) {
	start, st, err := child.startReady(ctx, 20*time.Millisecond)
	if err != nil {
		return 0, err
	}
	return time.Duration(st.ReadyAt - start.T0), nil
}

// adapterArgs are the child's flags for a generated registry.
func adapterArgs(o options, mode string, services int, extra ...string) []string {
	return append([]string{"-mode", mode, "-services", strconv.Itoa(services), "-quiet", o.quiet.String(), "-max", o.max.String()}, extra...)
}

// istiodProc is an istiod started by integration/istiod/start-istiod.sh.
type istiodProc struct {
	pid int
	ex  map[string]string // what the script exported
}

func (p istiodProc) base() string { return "http://" + p.ex["ISTIOD_HTTP_ADDR"] }
func (p istiodProc) metricsURL() string {
	return "http://" + p.ex["ISTIOD_MONITORING_ADDR"] + "/metrics"
}
func (p istiodProc) grpcAddr() string { return p.ex["ISTIOD_GRPC_ADDR"] }

// startIstiod starts istiod on mesh with the harness's environment plus
// extra (ISTIOD_WAIT and the like).
func startIstiod(repo string, env []string, mesh string, extra ...string) (istiodProc, error) {
	out, err := runScript(repo, slices.Concat(env, extra), "integration/istiod/start-istiod.sh", mesh)
	if err != nil {
		return istiodProc{}, fmt.Errorf("start-istiod.sh: %w", err)
	}
	ex := exports(out)
	pid, _ := strconv.Atoi(ex["ISTIOD_PID"])
	return istiodProc{pid: pid, ex: ex}, nil
}

// meshConfig is istiod's mesh config reading addrs as xds:// config sources.
func meshConfig(addrs ...string) string {
	var b strings.Builder
	b.WriteString("rootNamespace: istio-system\ntrustDomain: cluster.local\nconfigSources:\n")
	for _, a := range addrs {
		fmt.Fprintf(&b, "- address: xds://%s\n", a)
	}
	return b.String()
}

// writeMesh writes meshConfig(addrs...) to dir/name and returns its path.
func writeMesh(dir, name string, addrs ...string) (string, error) {
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, []byte(meshConfig(addrs...)), 0o600)
}

// restRate is a process's CPU at rest, in % of a core, over 5 s of cpu.
func restRate(cpu func() time.Duration) float64 {
	c0, r0 := cpu(), time.Now()
	time.Sleep(5 * time.Second)
	return float64(cpu()-c0) / float64(time.Since(r0)) * 100
}

// istiodHolds reads what istiod's debug API holds: services and
// endpoint-ports.
func istiodHolds(base string, limit time.Duration) (services, endpoints int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	v, err := fidelity.Istiod(ctx, http.DefaultClient, base)
	if err != nil {
		return 0, 0, err
	}
	for _, s := range v {
		endpoints += len(s.Endpoints)
	}
	return len(v), endpoints, nil
}

// istiodFamily runs n cases that each need a fresh istiod on one
// kube-apiserver (the shards, the comparison): it starts etcd and
// kube-apiserver once, runs each case (each(ctx, env, run, i), which
// returns an error that names the case), stops its istiod after it, and
// notes the load average before and after each. A case that fails is
// reported and the next one runs. On SIGINT or SIGTERM it stops istiod and
// kube (which makes whatever waits on them fail), cancels ctx and starts no
// further case. It returns the family's section of the report: render's
// lines (given the load averages) and a line per failed case, or why
// nothing ran (istiod not built).
func istiodFamily(o options, name, prefix string, n int, each func(ctx context.Context, env []string, run string, i int) error, render func(loads []string) []string) ([]string, error) {
	if why := istiodSkipped(); why != "" {
		return []string{why}, nil
	}
	run, env, err := istiodHarness(o.repo, prefix)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(run)
	stop := func(what string) { _, _ = runScript(o.repo, env, "integration/istiod/stop.sh", what) }
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	// The deferred stop catches an istiod started in between.
	defer func() {
		signal.Stop(sig)
		close(done)
		cancel()
		stop("all")
	}()
	go func() {
		select {
		case s := <-sig:
			progress("%s: %v: stopping istiod and kube", name, s)
			cancel()
			stop("all")
		case <-done:
		}
	}()
	progress("%s: starting etcd and kube-apiserver", name)
	if _, err := runScript(o.repo, env, "integration/istiod/start-kube.sh"); err != nil {
		return nil, fmt.Errorf("start-kube.sh: %w", err)
	}
	return runCases(ctx, name, n, func(ctx context.Context, i int) error { return each(ctx, env, run, i) },
		func() { stop("istiod") }, measure.LoadAvg, render)
}

// runCases runs n cases in turn, calls after after each (stop its istiod)
// and notes the load average (load) before the first and after each. A case
// that fails is reported and the next one runs; once ctx is cancelled no
// further case starts. It returns render's lines (given the load averages)
// and a line per failed case.
func runCases(ctx context.Context, name string, n int, each func(ctx context.Context, i int) error, after func(), load func() string, render func(loads []string) []string) ([]string, error) {
	loads := []string{load()}
	var errs []string
	var err error
	for i := range n {
		if ctx.Err() != nil {
			err = errors.New("interrupted")
			break
		}
		cerr := each(ctx, i)
		after()
		loads = append(loads, load())
		if cerr != nil {
			progress("%s: %v", name, cerr)
			errs = append(errs, cerr.Error())
		}
	}
	lines := render(loads)
	for _, e := range errs {
		lines = append(lines, "- failed: "+e)
	}
	if err == nil && len(errs) > 0 {
		err = fmt.Errorf("%d of %d runs failed", len(errs), n)
	}
	return lines, err
}
