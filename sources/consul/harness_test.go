package consul

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// The tests below run against real Consul agents (`consul agent -dev`),
// started with the project's integration/consul/consul.sh. The binary comes
// from CONSUL_BIN, PATH, or consul.sh's cache; without it the tests skip,
// unless REGISTRY_ADAPTER_REQUIRE_CONSUL=1.

const eventTimeout = 20 * time.Second

func TestMain(m *testing.M) {
	code := m.Run()
	stopSharedAgent()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func consulScript() string {
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..", "integration", "consul", "consul.sh")
}

// consulBinary finds the consul binary without ever building it.
func consulBinary() string {
	if b := os.Getenv("CONSUL_BIN"); b != "" {
		return b
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p
	}
	cache := os.Getenv("REGISTRY_ADAPTER_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "registry-adapter")
	}
	p := filepath.Join(cache, "consul", "bin", "consul")
	if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
		return p
	}
	return ""
}

func requireConsul(t testing.TB) string {
	t.Helper()
	bin := consulBinary()
	if bin == "" {
		msg := "no consul binary (CONSUL_BIN, PATH or ~/.cache/registry-adapter/consul/bin); run integration/consul/consul.sh install"
		if os.Getenv("REGISTRY_ADAPTER_REQUIRE_CONSUL") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if _, err := os.Stat(consulScript()); err != nil {
		t.Fatalf("consul.sh: %v", err)
	}
	return bin
}

// testAgent is one running dev agent.
type testAgent struct {
	addr  string
	state string
	env   []string
}

type agentOpts struct {
	httpPort   string // fixed HTTP port, to replace an agent on the same address
	readyToken string
	args       []string
}

func startAgent(t testing.TB, o agentOpts) *testAgent {
	t.Helper()
	a, err := launchAgent(requireConsul(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.stop(t) })
	return a
}

func launchAgent(bin string, o agentOpts) (*testAgent, error) {
	state, err := os.MkdirTemp("", "consul-test-")
	if err != nil {
		return nil, err
	}
	a := &testAgent{state: state, env: append(os.Environ(), "CONSUL_BIN="+bin, "CONSUL_STATE_DIR="+state)}
	if o.httpPort != "" {
		a.env = append(a.env, "CONSUL_HTTP_PORT="+o.httpPort)
	}
	if o.readyToken != "" {
		a.env = append(a.env, "CONSUL_READY_TOKEN="+o.readyToken)
	}
	cmd := exec.Command("bash", append([]string{consulScript(), "start", "--"}, o.args...)...)
	cmd.Env = a.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		os.RemoveAll(state)
		return nil, fmt.Errorf("consul.sh start: %v\n%s", err, stderr.String())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "export CONSUL_HTTP_ADDR="); ok {
			a.addr = v
		}
	}
	if a.addr == "" {
		a.stopQuietly()
		return nil, fmt.Errorf("consul.sh start printed no address: %q", out)
	}
	return a, nil
}

func (a *testAgent) stopQuietly() error {
	cmd := exec.Command("bash", consulScript(), "stop")
	cmd.Env = a.env
	out, err := cmd.CombinedOutput()
	os.RemoveAll(a.state)
	if err != nil {
		return fmt.Errorf("consul.sh stop: %v: %s", err, out)
	}
	return nil
}

func (a *testAgent) stop(t testing.TB) {
	if err := a.stopQuietly(); err != nil {
		t.Error(err)
	}
}

func (a *testAgent) port() string {
	_, p, _ := strings.Cut(a.addr, ":")
	return p
}

// client returns an API client for the test's own writes.
func (a *testAgent) client(t testing.TB, token string) *api.Client {
	t.Helper()
	tr := &http.Transport{}
	c, err := api.NewClient(&api.Config{Address: a.addr, Token: token, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return c
}

var shared struct {
	once  sync.Once
	agent *testAgent
	err   error
}

// sharedAgent is one agent for the tests that only touch their own services
// (each test selects its services by a name prefix).
func sharedAgent(t testing.TB) *testAgent {
	t.Helper()
	bin := requireConsul(t)
	shared.once.Do(func() { shared.agent, shared.err = launchAgent(bin, agentOpts{}) })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.agent
}

func stopSharedAgent() {
	if shared.agent != nil {
		if err := shared.agent.stopQuietly(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
}

// testConfig is a configuration with short delays, selecting services whose
// name starts with prefix.
func testConfig(addr, prefix string) Config {
	return Config{
		Address:                addr,
		Services:               []string{prefix + "*"},
		Wait:                   10 * time.Second,
		MinQueryInterval:       5 * time.Millisecond,
		BackoffMin:             20 * time.Millisecond,
		BackoffMax:             300 * time.Millisecond,
		RequestTimeout:         5 * time.Second,
		TokenFileCheckInterval: 20 * time.Millisecond,
	}
}

// view is what downstream holds: the groups applied from every batch.
type view map[string]model.Group

func (v view) apply(batch []model.Group) {
	for _, g := range batch {
		if len(g.Services) == 0 {
			delete(v, g.Scope)
		} else {
			v[g.Scope] = g
		}
	}
}

func (v view) svc(scope string) *model.Service {
	g, ok := v[scope]
	if !ok || len(g.Services) != 1 {
		return nil
	}
	return &g.Services[0]
}

// harness runs one source and records what it sends.
type harness struct {
	t        *testing.T
	src      *Source
	out      chan []model.Group
	logs     *observer.ObservedLogs
	reporter *sources.Reporter
	reg      *prometheus.Registry
	state    view
	batches  int
	stop     func() // cancels Run and waits for it (idempotent)
}

func runSource(t *testing.T, cfg Config) *harness {
	t.Helper()
	return runSourceWith(t, cfg, nil)
}

// runSourceWith is runSource, with prepare called on the source before it
// runs (a deliberate fault, limits).
func runSourceWith(t *testing.T, cfg Config, prepare func(*Source)) *harness {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	logger := zap.New(zapcore.NewTee(core, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Core()))
	reg := prometheus.NewRegistry()
	rep := sources.NewReporter("consul-test", sources.NewMetrics(reg))
	src, err := New(cfg, sources.Options{Name: "consul-test", Logger: logger, Reporter: rep, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(src)
	}
	h := &harness{t: t, src: src, out: make(chan []model.Group), logs: logs, reporter: rep, reg: reg, state: view{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, h.out) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(h.stop)
	return h
}

// next waits for the next batch and applies it.
func (h *harness) next(what string) []model.Group {
	h.t.Helper()
	select {
	case b := <-h.out:
		h.batches++
		h.state.apply(b)
		return b
	case <-time.After(eventTimeout):
		h.t.Fatalf("no batch within %s: %s (state: %s)", eventTimeout, what, h.state)
		return nil
	}
}

// waitFor reads batches until cond holds for the state.
func (h *harness) waitFor(what string, cond func(v view) bool) {
	h.t.Helper()
	deadline := time.After(eventTimeout)
	for !cond(h.state) {
		select {
		case b := <-h.out:
			h.batches++
			h.state.apply(b)
		case <-deadline:
			h.t.Fatalf("timed out waiting for %s; state: %s", what, h.state)
		}
	}
}

// noBatch fails if a batch is waiting.
func (h *harness) noBatch(why string) {
	h.t.Helper()
	select {
	case b := <-h.out:
		h.t.Fatalf("unexpected batch (%s): %v", why, b)
	default:
	}
}

// waitLog waits until a log entry whose message contains msg was written.
// Logs have no channel: this polls the observer, bounded by a deadline.
func (h *harness) waitLog(msg string) observer.LoggedEntry {
	h.t.Helper()
	deadline := time.Now().Add(eventTimeout)
	for {
		if es := h.logs.FilterMessageSnippet(msg).All(); len(es) > 0 {
			return es[0]
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("no log %q within %s", msg, eventTimeout)
		}
		select {
		case b := <-h.out:
			h.t.Fatalf("unexpected batch while waiting for log %q: %v", msg, b)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitStatus waits until the reporter's status satisfies cond (polled: the
// status has no channel).
func (h *harness) waitStatus(what string, cond func(sources.Status) bool) sources.Status {
	h.t.Helper()
	deadline := time.Now().Add(eventTimeout)
	for {
		st := h.reporter.Status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("status never became %s: %+v", what, st)
		}
		select {
		case b := <-h.out:
			h.batches++
			h.state.apply(b)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (h *harness) counter(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// allLogText is every log message and field, for secret scanning.
func (h *harness) allLogText() string {
	var b strings.Builder
	for _, e := range h.logs.All() {
		fmt.Fprintf(&b, "%s %v\n", e.Message, e.ContextMap())
	}
	return b.String()
}

func (v view) String() string {
	var b strings.Builder
	for scope, g := range v {
		for _, s := range g.Services {
			fmt.Fprintf(&b, "[%s: %s ports=%v instances=%d] ", scope, s.Host, s.Ports, len(s.Instances))
		}
	}
	return b.String()
}

// ids lists the instance IDs of a service ("" when absent).
func ids(s *model.Service) string {
	if s == nil {
		return "<absent>"
	}
	var out []string
	for _, i := range s.Instances {
		out = append(out, i.ID)
	}
	return strings.Join(out, ",")
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// waitGauge waits until a gauge reaches want (polled, bounded).
func (h *harness) waitGauge(what string, g prometheus.Collector, want float64) {
	h.t.Helper()
	deadline := time.Now().Add(eventTimeout)
	for testutil.ToFloat64(g) != want {
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: gauge is %v, want %v", what, testutil.ToFloat64(g), want)
		}
		select {
		case b := <-h.out:
			h.t.Fatalf("unexpected batch while waiting for %s: %v", what, b)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// cleanPrefix removes every service whose name starts with prefix from the
// shared agent, now (leftovers of an earlier -count run) and after the test.
func cleanPrefix(t testing.TB, c *api.Client, prefix string) {
	t.Helper()
	clean := func() error {
		names, _, err := c.Catalog().Services(nil)
		if err != nil {
			return err
		}
		for name := range names {
			if !strings.HasPrefix(name, prefix) {
				continue
			}
			insts, _, err := c.Catalog().Service(name, "", nil)
			if err != nil {
				return err
			}
			for _, i := range insts {
				if i.Node == "dev" { // the agent's own node: the agent API, or anti-entropy puts it back
					err = c.Agent().ServiceDeregister(i.ServiceID)
				} else {
					_, err = c.Catalog().Deregister(&api.CatalogDeregistration{Node: i.Node}, nil)
				}
				if err != nil {
					return err
				}
			}
		}
		return nil
	}
	must(t, clean())
	t.Cleanup(func() {
		if err := clean(); err != nil {
			t.Error(err)
		}
	})
}
