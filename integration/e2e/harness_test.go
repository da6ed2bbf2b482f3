// Package e2e runs the adapter against a real, unpatched istiod
// (pilot-discovery, with a local kube-apiserver and etcd) and a real Consul
// agent, all built and started by the project's scripts on 127.0.0.1, and
// asserts through istiod's own debug API, metrics and log.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/registry-adapter/registry-adapter/adapter"
	"github.com/registry-adapter/registry-adapter/config"
	"github.com/registry-adapter/registry-adapter/fidelity"
)

var (
	repoRoot   string
	adapterBin string
	kubeconfig string
	scriptsEnv []string // binaries resolved by build.sh
	consulBin  string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := filepath.Abs("../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	repoRoot = root
	work, err := os.MkdirTemp("", "registry-adapter-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(work)
	defer func() {
		if imageRoot != "" {
			_ = os.RemoveAll(filepath.Dir(imageRoot))
		}
	}()

	steps := []struct {
		what string
		do   func() error
	}{
		{"build the adapter", func() error {
			adapterBin = filepath.Join(work, "registry-adapter")
			// -race: the e2e suite is where real concurrency meets real clients.
			return command(repoRoot, nil, nil, "go", "build", "-race", "-o", adapterBin, "./cmd/registry-adapter")
		}},
		{"build or locate istiod, kube-apiserver and etcd", func() error {
			var out bytes.Buffer
			if err := command(repoRoot, nil, &out, "bash", "integration/istiod/build.sh"); err != nil {
				return err
			}
			scriptsEnv = parseExports(out.String())
			return nil
		}},
		{"build or locate consul", func() error {
			var out bytes.Buffer
			if err := command(repoRoot, nil, &out, "bash", "integration/consul/consul.sh", "install"); err != nil {
				return err
			}
			consulBin = strings.TrimSpace(out.String())
			return nil
		}},
		{"start etcd and kube-apiserver", func() error {
			var out bytes.Buffer
			env := append(scriptsEnv, "ISTIOD_RUN_DIR="+filepath.Join(work, "kube"))
			if err := command(repoRoot, env, &out, "bash", "integration/istiod/start-kube.sh"); err != nil {
				return err
			}
			for _, kv := range parseExports(out.String()) {
				if v, ok := strings.CutPrefix(kv, "KUBECONFIG="); ok {
					kubeconfig = v
				}
			}
			if kubeconfig == "" {
				return fmt.Errorf("start-kube.sh printed no KUBECONFIG: %s", out.String())
			}
			return nil
		}},
	}
	defer func() {
		env := append(scriptsEnv, "ISTIOD_RUN_DIR="+filepath.Join(work, "kube"))
		_ = command(repoRoot, env, nil, "bash", "integration/istiod/stop.sh")
	}()
	for _, s := range steps {
		start := time.Now()
		if err := s.do(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e setup: %s: %v\n", s.what, err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "e2e setup: %s: %s\n", s.what, time.Since(start).Round(time.Millisecond))
	}
	return m.Run()
}

func command(dir string, env []string, stdout io.Writer, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = stdout
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return nil
}

// parseExports turns the scripts' "export A=1 B=2" lines into env entries.
func parseExports(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, "export ")
		if !ok {
			continue
		}
		out = append(out, strings.Fields(rest)...)
	}
	return out
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// eventually retries check until it returns nil or the timeout expires.
func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = check(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func httpGet(url string) (int, []byte, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// process is a child process whose output is kept for assertions.
type process struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
	done chan struct{}
}

func (p *process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.Write(b)
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *process) stop() {
	if p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// adapterProc is the registry-adapter binary running a config.
type adapterProc struct {
	*process
	configPath string
	xdsAddr    string
	debugAddr  string
}

// startAdapter runs the adapter with config (YAML with {{XDS}} and {{DEBUG}}
// placeholders for its listeners) and waits until it serves.
func startAdapter(t *testing.T, config string, xdsPort int) *adapterProc {
	t.Helper()
	return startAdapterAt(t, config, xdsPort, fmt.Sprintf("127.0.0.1:%d", freePort(t)))
}

// startAdapterAt is startAdapter with the probe listener ({{DEBUG}}) on
// debugAddr.
func startAdapterAt(t *testing.T, config string, xdsPort int, debugAddr string) *adapterProc {
	t.Helper()
	if xdsPort == 0 {
		xdsPort = freePort(t)
	}
	a := &adapterProc{
		configPath: filepath.Join(t.TempDir(), "config.yaml"),
		xdsAddr:    fmt.Sprintf("127.0.0.1:%d", xdsPort),
		debugAddr:  debugAddr,
	}
	config = strings.NewReplacer("{{XDS}}", a.xdsAddr, "{{DEBUG}}", a.debugAddr).Replace(config)
	if err := os.WriteFile(a.configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	a.process = launch(t, adapterBin, "run", "--config", a.configPath)
	eventually(t, 30*time.Second, "adapter serving", func() error {
		select {
		case <-a.done:
			return fmt.Errorf("adapter exited:\n%s", a.output())
		default:
		}
		code, _, err := httpGet("http://" + a.debugAddr + "/healthz")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("healthz %d %v", code, err)
		}
		return nil
	})
	return a
}

func launch(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	return launchCmd(t, filepath.Base(bin), exec.Command(bin, args...))
}

// launchCmd starts cmd, keeps its output, and stops it (SIGTERM) when the test ends.
func launchCmd(t *testing.T, name string, cmd *exec.Cmd) *process {
	t.Helper()
	p := &process{cmd: cmd, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(p.output(), 60))
		}
	})
	return p
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// restart stops the adapter and starts it again on the same listeners.
func (a *adapterProc) restart(t *testing.T) {
	t.Helper()
	a.stop()
	a.process = launch(t, adapterBin, "run", "--config", a.configPath)
	eventually(t, 30*time.Second, "adapter serving again", func() error {
		code, _, err := httpGet("http://" + a.debugAddr + "/healthz")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("healthz %d %v", code, err)
		}
		return nil
	})
}

// metric returns the sum of a metric's samples whose labels contain every
// given "k=v" pair, from a Prometheus text endpoint.
// lintMetrics fails on any problem promlint (the Prometheus client
// library's port of `promtool check metrics`) finds in a scrape of url.
func lintMetrics(t *testing.T, url string) {
	t.Helper()
	_, body, err := httpGet(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("promlint %s: %v", url, err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func metric(t *testing.T, url, name string, labels ...string) float64 {
	t.Helper()
	_, body, err := httpGet(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	total := 0.0
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		rest := line[len(name):]
		if rest != "" && rest[0] != '{' && rest[0] != ' ' {
			continue // a longer metric name
		}
		ok := true
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			if !strings.Contains(rest, fmt.Sprintf(`%s="%s"`, k, v)) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		var v float64
		fields := strings.Fields(rest)
		if _, err := fmt.Sscan(fields[len(fields)-1], &v); err == nil {
			total += v
		}
	}
	return total
}

// istiodProc is one pilot-discovery started by start-istiod.sh.
type istiodProc struct {
	runDir     string
	httpAddr   string
	grpcAddr   string // plaintext xDS, where a sidecar's view is asked for
	monitoring string
	logPath    string

	proxyOnce sync.Once
	proxy     *fidelity.Proxy
	proxyErr  error
}

// startIstiod starts istiod with meshConfig and does not wait for it to be
// ready: the tests decide what readiness must look like.
func startIstiod(t *testing.T, meshConfig string) *istiodProc {
	t.Helper()
	p, err := startIstiodErr(t, meshConfig)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startIstiodErr is startIstiod for tests that expect istiod to fail.
func startIstiodErr(t *testing.T, meshConfig string) (*istiodProc, error) {
	t.Helper()
	runDir := t.TempDir()
	mesh := filepath.Join(runDir, "mesh.yaml")
	if err := os.WriteFile(mesh, []byte(meshConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	return launchIstiod(t, runDir, nil, mesh)
}

// startIstiodSources starts istiod with one config source per address
// ("xds://127.0.0.1:P"), in the order given.
func startIstiodSources(t *testing.T, sources ...string) *istiodProc {
	t.Helper()
	runDir := t.TempDir()
	mesh := filepath.Join(runDir, "mesh-in.yaml")
	body := "rootNamespace: istio-system\ntrustDomain: cluster.local\nconfigSources:\n"
	for _, s := range sources {
		body += "- address: " + s + "\n"
	}
	if err := os.WriteFile(mesh, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := launchIstiod(t, runDir, nil, mesh)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// meshNoSources is a mesh config without config sources: istiod is ready
// on its own.
const meshNoSources = "rootNamespace: istio-system\ntrustDomain: cluster.local\n"

// launchIstiod runs start-istiod.sh in runDir. args[0], if it is not an
// option, is the mesh config file; without one istiod runs meshNoSources.
// Either way istiod is scoped to its test's group (scopeMesh).
func launchIstiod(t *testing.T, runDir string, extraEnv []string, args ...string) (*istiodProc, error) {
	t.Helper()
	mesh := meshNoSources
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		b, err := os.ReadFile(args[0])
		if err != nil {
			t.Fatal(err)
		}
		mesh, args = string(b), args[1:]
	}
	scoped := filepath.Join(runDir, "mesh-scoped.yaml")
	if err := os.WriteFile(scoped, []byte(scopeMesh(t, mesh)), 0o600); err != nil {
		t.Fatal(err)
	}
	// A copy: parallel tests must not append into scriptsEnv's spare capacity.
	env := append(slices.Clone(scriptsEnv), "ISTIOD_RUN_DIR="+runDir, "ISTIOD_KUBECONFIG="+kubeconfig, "ISTIOD_WAIT=listen",
		"ISTIOD_LOG_LEVEL=default:info,adsc:debug")
	env = append(env, extraEnv...)
	var out bytes.Buffer
	startErr := command(repoRoot, env, &out, "bash", append([]string{"integration/istiod/start-istiod.sh", scoped}, args...)...)
	p := &istiodProc{runDir: runDir, logPath: filepath.Join(runDir, "istiod.log")}
	for _, kv := range parseExports(out.String()) {
		if v, ok := strings.CutPrefix(kv, "ISTIOD_HTTP_ADDR="); ok {
			p.httpAddr = v
		}
		if v, ok := strings.CutPrefix(kv, "ISTIOD_MONITORING_ADDR="); ok {
			p.monitoring = v
		}
		if v, ok := strings.CutPrefix(kv, "ISTIOD_GRPC_ADDR="); ok {
			p.grpcAddr = v
		}
	}
	t.Cleanup(func() {
		if p.proxy != nil {
			p.proxy.Close()
		}
		if t.Failed() {
			t.Logf("istiod log tail:\n%s", tail(p.log(), 40))
		}
		_ = command(repoRoot, append(scriptsEnv, "ISTIOD_RUN_DIR="+runDir), nil, "bash", "integration/istiod/stop.sh", "istiod")
	})
	return p, startErr
}

// The output modes. inline is the default; the tests that check what istiod
// and a sidecar make of each mode's resources run in both (bothModes), the
// others only in the default. Which tests double, and why, is in
// integration/README.md ("Both output modes").
const (
	modeInline        = "inline"
	modeWorkloadEntry = "workloadentry"
)

// bothModes runs test once per output mode, as parallel subtests named after
// the mode. The expectations a test writes by hand are the same for both:
// istiod's registry and a sidecar's view must not depend on the mode.
func bothModes(t *testing.T, test func(t *testing.T, mode string)) {
	for _, mode := range []string{modeInline, modeWorkloadEntry} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			test(t, mode)
		})
	}
}

// withMode sets output.mode in an adapter config: inside its flow-style
// "output: {...}" line if it has one, else as a line of its own.
func withMode(config, mode string) string {
	if strings.Contains(config, "\noutput: {") {
		return strings.Replace(config, "\noutput: {", "\noutput: {mode: "+mode+", ", 1)
	}
	return strings.TrimRight(config, "\n") + "\noutput: {mode: " + mode + "}\n"
}

// groupLabelPrefix starts the namespace label that puts a namespace in the
// view of one test's istiods.
const groupLabelPrefix = "e2e.registry-adapter.io/"

// groupLabel is the label key of t's group: its top-level test. Every
// istiod of the suite shares one kube-apiserver, and istiod's Kubernetes
// registry watches Services, EndpointSlices and Pods in every namespace
// unless meshConfig.discoverySelectors narrows it: a Service one test
// creates would otherwise push to every other test's istiod (a full push in
// the middle of another test's "EDS only" assertion). So each istiod
// selects only the namespaces labelled with its group's key (kubeNamespace
// adds it), and sees nothing that other tests write. Config from xds://
// sources is not filtered by discoverySelectors (istiod applies them to its
// Kubernetes informers only), so the adapter's output reaches every istiod
// whatever namespace it is in. TestKubeGroupsIsolated is the check.
func groupLabel(t testing.TB) string {
	name, _, _ := strings.Cut(t.Name(), "/")
	if len(name) > 63 { // a label name's limit
		sum := sha256.Sum256([]byte(name))
		name = name[:54] + "-" + hex.EncodeToString(sum[:4])
	}
	return groupLabelPrefix + name
}

// scopeMesh adds to a mesh config the discoverySelectors of t's group.
func scopeMesh(t testing.TB, mesh string) string {
	t.Helper()
	if strings.Contains(mesh, "discoverySelectors") {
		t.Fatalf("the harness sets discoverySelectors itself (groupLabel); this mesh config has its own:\n%s", mesh)
	}
	if mesh != "" && !strings.HasSuffix(mesh, "\n") {
		mesh += "\n"
	}
	return mesh + fmt.Sprintf("discoverySelectors:\n- matchExpressions:\n  - {key: %q, operator: Exists}\n", groupLabel(t))
}

func meshFor(xdsAddr string) string {
	return fmt.Sprintf("rootNamespace: istio-system\ntrustDomain: cluster.local\nconfigSources:\n- address: xds://%s\n", xdsAddr)
}

func (p *istiodProc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

func (p *istiodProc) ready() bool {
	code, _, err := httpGet("http://" + p.httpAddr + "/ready")
	return err == nil && code == http.StatusOK
}

func (p *istiodProc) waitReady(t *testing.T) {
	t.Helper()
	eventually(t, 60*time.Second, "istiod ready", func() error {
		if !p.ready() {
			return fmt.Errorf("/ready is not 200")
		}
		return nil
	})
}

func (p *istiodProc) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	return metric(t, "http://"+p.monitoring+"/metrics", name, labels...)
}

// configs returns "Kind/namespace/name@resourceVersion" for the ServiceEntries
// and WorkloadEntries istiod holds.
func (p *istiodProc) configs(t *testing.T) []string {
	t.Helper()
	_, body, err := httpGet("http://" + p.httpAddr + "/debug/configz")
	if err != nil {
		t.Fatal(err)
	}
	var cfgs []struct {
		Kind     string
		Metadata struct{ Name, Namespace, ResourceVersion string }
	}
	if err := json.Unmarshal(body, &cfgs); err != nil {
		t.Fatalf("configz: %v: %.200s", err, body)
	}
	var out []string
	for _, c := range cfgs {
		if c.Kind == "ServiceEntry" || c.Kind == "WorkloadEntry" {
			out = append(out, fmt.Sprintf("%s/%s/%s@%s", c.Kind, c.Metadata.Namespace, c.Metadata.Name, c.Metadata.ResourceVersion))
		}
	}
	return sortStrings(out)
}

// instances returns the address of every instance istiod's config store
// holds, in either output mode: each WorkloadEntry's, and each endpoint of a
// ServiceEntry. Unlike endpointShardz it is what istiod received, before it
// derived endpoints from it.
func (p *istiodProc) instances(t *testing.T) []string {
	t.Helper()
	_, body, err := httpGet("http://" + p.httpAddr + "/debug/configz")
	if err != nil {
		t.Fatal(err)
	}
	var cfgs []struct {
		Kind string
		Spec struct {
			Address   string
			Endpoints []struct{ Address string }
		}
	}
	if err := json.Unmarshal(body, &cfgs); err != nil {
		t.Fatalf("configz: %v: %.200s", err, body)
	}
	var out []string
	for _, c := range cfgs {
		switch c.Kind {
		case "WorkloadEntry":
			out = append(out, c.Spec.Address)
		case "ServiceEntry":
			for _, e := range c.Spec.Endpoints {
				out = append(out, e.Address)
			}
		}
	}
	return sortStrings(out)
}

// served returns the same listing from the adapter's /debug/resources.
func (a *adapterProc) served(t *testing.T) []string {
	t.Helper()
	_, body, err := httpGet("http://" + a.debugAddr + "/debug/resources")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var kind, name, ns, version string
	flush := func() {
		if kind != "" {
			out = append(out, fmt.Sprintf("%s/%s/%s@%s", kind, ns, name, version))
		}
		kind, name, ns, version = "", "", "", ""
	}
	for _, line := range strings.Split(string(body), "\n") {
		switch {
		case line == "---":
			flush()
		case strings.HasPrefix(line, "kind: "):
			kind = strings.TrimPrefix(line, "kind: ")
		case strings.HasPrefix(line, "  name: "):
			name = strings.TrimPrefix(line, "  name: ")
		case strings.HasPrefix(line, "  namespace: "):
			ns = strings.TrimPrefix(line, "  namespace: ")
		case strings.HasPrefix(line, "  resourceVersion: "):
			version = strings.TrimPrefix(line, "  resourceVersion: ")
		}
	}
	flush()
	return sortStrings(out)
}

// renderAndRead renders the adapter's config with its own code
// (BuildSources + Render) and reads istiod's registry through its debug API.
func renderAndRead(a *adapterProc, p *istiodProc) (want, got fidelity.View, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := config.Load(a.configPath)
	if err != nil {
		return nil, nil, err
	}
	log := nopLogger()
	srcs, err := config.BuildSources(cfg, nil, log)
	if err != nil {
		return nil, nil, err
	}
	res, _, err := adapter.Render(ctx, srcs, cfg.Output, log)
	if err != nil {
		return nil, nil, err
	}
	got, err = fidelity.Istiod(ctx, http.DefaultClient, "http://"+p.httpAddr)
	if err != nil {
		return nil, nil, err
	}
	return fidelity.Expected(res), got, nil
}

// faithful checks istiod against the adapter's own conversion of its
// config (BuildSources + Render), in istiod's registry and in what a sidecar
// in namespace default receives. Because the expectation comes from the code
// under test, this proves delivery, not conversion; tests that register
// content compare the sidecar's view with expectations written by hand too
// (reaches).
func faithful(t *testing.T, a *adapterProc, p *istiodProc) error {
	t.Helper()
	want, got, err := renderAndRead(a, p)
	if err != nil {
		return err
	}
	if d := fidelity.Diff(want, got); len(d) > 0 {
		return fmt.Errorf("istiod's registry differs from the adapter's own conversion:\n%s", strings.Join(d, "\n"))
	}
	if err := reaches(t, p, want); err != nil {
		return fmt.Errorf("against the adapter's own conversion: %w", err)
	}
	return nil
}

// holds is the check of a test that registered content: istiod's registry
// (hosts, ports, healthy endpoints at their target ports, weights) and what a
// sidecar receives are compared with want, an expectation the test wrote by
// hand from what it registered. Then faithful checks the delivery of the
// adapter's own render, which also covers what want leaves out (labels).
func holds(t *testing.T, a *adapterProc, p *istiodProc, want fidelity.View) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := fidelity.Istiod(ctx, http.DefaultClient, "http://"+p.httpAddr)
	if err != nil {
		return err
	}
	if d := fidelity.Diff(want, got); len(d) > 0 {
		return fmt.Errorf("istiod's registry differs from what the test registered:\n%s", strings.Join(d, "\n"))
	}
	if err := reaches(t, p, want); err != nil {
		return fmt.Errorf("against what the test registered: %w", err)
	}
	return faithful(t, a, p)
}

// expect builds a hand-written expectation from services (see service).
func expect(services ...*fidelity.Service) fidelity.View {
	v := fidelity.View{}
	for _, s := range services {
		v[s.Host] = s
	}
	return v
}

// Where the adapter places a service unless its output options say
// otherwise, written out by hand from the documentation (README,
// docs/configuration.md): its own namespace, inside the mesh, visible to
// every namespace, and one address allocated from 248.0.0.0/6 when the
// registry gives none.
var (
	defaultNamespace     = "registry-adapter-entries"
	defaultAllocateRange = netip.MustParsePrefix("248.0.0.0/6")
)

// placed sets where a hand-written expectation's service is: the adapter's
// defaults (placement in istiod: namespace, location, exportTo, address).
func placed(s *fidelity.Service) *fidelity.Service {
	s.Namespace, s.Location, s.ExportTo, s.AllocatedFrom = defaultNamespace, fidelity.MeshInternal, nil, defaultAllocateRange
	return s
}

// placement keeps of a view only where each service is placed (namespace,
// location, exportTo, addresses), for tests whose expectations leave the
// endpoints' other fields (locality, weight) to faithful.
func placement(v fidelity.View) fidelity.View {
	out := fidelity.View{}
	for h, s := range v {
		out[h] = &fidelity.Service{Host: h, Namespace: s.Namespace, Location: s.Location, ExportTo: s.ExportTo,
			Addresses: s.Addresses, AllocatedFrom: s.AllocatedFrom}
	}
	return out
}

// service is one host on one port, named "<protocol>-<number>" as a
// registration without a port name is, with an endpoint per healthy address
// at that port and weight, placed by default. protocol is spelled as Istio
// does (HTTP, Redis).
func service(host, protocol string, port, weight uint32, addrs ...string) *fidelity.Service {
	name := fmt.Sprintf("%s-%d", strings.ToLower(protocol), port)
	s := placed(&fidelity.Service{Host: host,
		Ports:     map[string]fidelity.Port{name: {Number: port, Protocol: protocol}},
		Endpoints: map[string]fidelity.Endpoint{}})
	for _, a := range addrs {
		s.Endpoints[a+"/"+name] = fidelity.Endpoint{Address: a, PortName: name, Port: port, Weight: weight}
	}
	return s
}

// located sets every endpoint's locality: Consul's is its datacenter, EC2's
// region/zone.
func located(s *fidelity.Service, locality string) *fidelity.Service {
	for k, e := range s.Endpoints {
		e.Locality = locality
		s.Endpoints[k] = e
	}
	return s
}

// consulService is service for a Consul service in datacenter dc1 (the
// dev agent's): host <name>.service.consul, Consul's default weight of 1,
// locality dc1.
func consulService(name, protocol string, port uint32, addrs ...string) *fidelity.Service {
	return located(service(name+".service.consul", protocol, port, 1, addrs...), "dc1")
}

// labelled sets labels on every endpoint of s at addr.
func labelled(s *fidelity.Service, addr string, labels map[string]string) *fidelity.Service {
	for k, e := range s.Endpoints {
		if e.Address == addr {
			e.Labels = labels
			s.Endpoints[k] = e
		}
	}
	return s
}

// sidecar is a sidecar's ADS stream to istiod (namespace default, DNS
// capture on), opened at the first call and held until the test ends.
func (p *istiodProc) sidecar(t *testing.T) (*fidelity.Proxy, error) {
	t.Helper()
	p.proxyOnce.Do(func() {
		p.proxy, p.proxyErr = fidelity.DialProxy(fidelity.ProxyConfig{Address: p.grpcAddr, Namespace: "default"})
	})
	if p.proxyErr != nil {
		return nil, p.proxyErr
	}
	if err := p.proxy.Err(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return p.proxy, p.proxy.Wait(ctx)
}

// reaches checks what a sidecar receives from istiod against want: an
// outbound cluster per service port with exactly the healthy endpoints at
// their target ports, each host in the DNS name table, a listener of its own
// per TCP port (fidelity.DiffSidecar).
func reaches(t *testing.T, p *istiodProc, want fidelity.View) error {
	t.Helper()
	px, err := p.sidecar(t)
	if err != nil {
		return err
	}
	if d := fidelity.DiffSidecar(want, px.View()); len(d) > 0 {
		return fmt.Errorf("a sidecar's view differs:\n%s", strings.Join(d, "\n"))
	}
	return nil
}
