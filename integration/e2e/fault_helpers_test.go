package e2e

// Helpers of the fault tests (fault_test.go): a watcher of istiod's
// endpoints, a TCP proxy that stalls and cuts connections, a Consul agent
// that can be killed and restarted on its port, network namespaces, and an
// in-process adapter for sources the binary does not configure yet.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/registry-adapter/registry-adapter/fidelity"
)

// ---------------------------------------------------------------------------
// istiod's endpoints, watched during a fault

// shardClient has a short timeout: a read of istiod's debug API that does
// not come back quickly is an error, not waited for.
var shardClient = &http.Client{Timeout: 3 * time.Second}

// istiodEndpoints reads /debug/endpointShardz as a set of
// "host address/portName".
func istiodEndpoints(httpAddr string) (map[string]bool, error) {
	resp, err := shardClient.Get("http://" + httpAddr + "/debug/endpointShardz")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("endpointShardz: %s", resp.Status)
	}
	var shards map[string]map[string]struct {
		Shards map[string][]struct {
			Addresses       []string
			ServicePortName string
		}
	}
	if err := json.Unmarshal(body, &shards); err != nil {
		return nil, fmt.Errorf("endpointShardz: %w: %.200s", err, body)
	}
	out := map[string]bool{}
	for host, byNS := range shards {
		for _, ns := range byNS {
			for _, eps := range ns.Shards {
				for _, ep := range eps {
					for _, a := range ep.Addresses {
						out[fmt.Sprintf("%s %s/%s", host, a, ep.ServicePortName)] = true
					}
				}
			}
		}
	}
	return out, nil
}

// edsWatcher holds a sidecar's ADS stream on istiod and records every
// endpoint assignment istiod sends during a fault (fidelity.Watch), so that
// a loss of any length that istiod pushes is seen, not only those that
// happen to span a sample. istiod runs with EDS debouncing off in the fault
// tests (startFaultIstiod), so it pushes each endpoint change as it comes.
// The stream is never re-opened: if it breaks, the watch has a gap and the
// check fails.
type edsWatcher struct {
	name  string
	px    *fidelity.Proxy
	watch *fidelity.Watch
}

// watchEndpoints waits until a sidecar's view holds every endpoint of want
// ("host address/portName", as endpointShardz shows them), then watches.
func watchEndpoints(t *testing.T, name string, p *istiodProc, want []string) *edsWatcher {
	t.Helper()
	px, err := fidelity.DialProxy(fidelity.ProxyConfig{Address: p.grpcAddr, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	kept := edsKeys(t, want)
	eventually(t, 60*time.Second, name+": a sidecar holds the initial endpoints", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := px.Wait(ctx); err != nil {
			return err
		}
		v := px.View()
		for c, eps := range kept {
			for _, e := range eps {
				if !slices.Contains(v.Clusters[c].Endpoints, e) {
					return fmt.Errorf("%s lacks %s", c, e)
				}
			}
		}
		return nil
	})
	return &edsWatcher{name: name, px: px, watch: px.Watch()}
}

// edsKeys turns "host address/portName" into cluster -> "address:port";
// the adapter names ports "<protocol>-<number>".
func edsKeys(t *testing.T, eps []string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, e := range eps {
		host, rest, _ := strings.Cut(e, " ")
		addr, portName, _ := strings.Cut(rest, "/")
		port := portName[strings.LastIndex(portName, "-")+1:]
		if _, err := strconv.Atoi(port); err != nil {
			t.Fatalf("endpoint %q: no port number in port name %q", e, portName)
		}
		c := "outbound|" + port + "||" + host
		out[c] = append(out[c], addr+":"+port)
	}
	return out
}

// observe keeps the fault under way under observation for n tenths of a
// second, failing at once if the stream breaks.
func (w *edsWatcher) observe(t *testing.T, n int) {
	t.Helper()
	end := time.After(time.Duration(n) * 100 * time.Millisecond)
	for {
		select {
		case <-end:
			return
		case <-w.px.Changed():
			if err := w.px.Err(); err != nil {
				t.Fatalf("%s: the sidecar stream broke during the fault, so the watch has a gap: %v", w.name, err)
			}
		}
	}
}

// check fails the test if any endpoint of kept went missing from any
// assignment istiod sent during the watch, or if the stream broke. It
// returns the number of assignments seen.
func (w *edsWatcher) check(t *testing.T, kept []string) int {
	t.Helper()
	r := w.watch.Report(edsKeys(t, kept))
	for _, l := range r.Losses {
		t.Errorf("%s: istiod lost an instance that existed in the source: %v", w.name, l)
	}
	if r.Broken != nil {
		t.Errorf("%s: the sidecar stream broke, so the watch has a gap: %v", w.name, r.Broken)
	}
	t.Logf("%s: %d endpoint assignments from istiod over %s; of the %d instances that existed throughout, %d went missing",
		w.name, r.Assignments, r.Duration.Round(time.Millisecond), len(kept), len(r.Losses))
	return r.Assignments
}

// wentMissing reports whether e went missing from an assignment.
func (w *edsWatcher) wentMissing(t *testing.T, e string) bool {
	t.Helper()
	return len(w.watch.Report(edsKeys(t, []string{e})).Losses) > 0
}

// startFaultIstiod starts istiod with EDS debouncing off, so that a watcher
// sees every endpoint change istiod makes.
func startFaultIstiod(t *testing.T, meshConfig string) *istiodProc {
	t.Helper()
	runDir := t.TempDir()
	mesh := filepath.Join(runDir, "mesh.yaml")
	if err := os.WriteFile(mesh, []byte(meshConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := launchIstiod(t, runDir, []string{"PILOT_ENABLE_EDS_DEBOUNCE=false"}, mesh)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func missingFrom(got map[string]bool, want []string) []string {
	var out []string
	for _, e := range want {
		if !got[e] {
			out = append(out, e)
		}
	}
	return out
}

// hasEndpoints waits until istiod holds every endpoint of want.
func hasEndpoints(t *testing.T, p *istiodProc, timeout time.Duration, what string, want ...string) {
	t.Helper()
	eventually(t, timeout, what, func() error {
		got, err := istiodEndpoints(p.httpAddr)
		if err != nil {
			return err
		}
		if m := missingFrom(got, want); len(m) > 0 {
			return fmt.Errorf("istiod lacks %v", m)
		}
		return nil
	})
}

// ---------------------------------------------------------------------------
// Registry content

// vm is one instance registered in Consul, on a node of its own.
type vm struct {
	service, node, addr string
}

const vmPort = 8080

// endpoint is how istiod's endpointShardz shows the instance.
func (v vm) endpoint() string {
	return fmt.Sprintf("%s.service.consul %s/http-%d", v.service, v.addr, vmPort)
}

func endpointsOf(vms []vm) []string {
	out := make([]string, len(vms))
	for i, v := range vms {
		out[i] = v.endpoint()
	}
	return out
}

// expectVMs is what istiod must hold for vms, written from how the fault
// tests register them (registerTxn): a host <service>.service.consul per
// service, on port 8080 as HTTP, an endpoint per instance (consulService).
func expectVMs(vms ...vm) fidelity.View {
	var services []*fidelity.Service
	byService := map[string][]string{}
	for _, v := range vms {
		byService[v.service] = append(byService[v.service], v.addr)
	}
	for name, addrs := range byService {
		services = append(services, consulService(name, "HTTP", vmPort, addrs...))
	}
	return expect(services...)
}

// fleet is web-1..web-n and api-1..api-n with addresses 10.<net>.0.x and
// 10.<net>.1.x.
func fleet(net, n int) []vm {
	var out []vm
	for i := 1; i <= n; i++ {
		out = append(out, vm{"web", fmt.Sprintf("web-%d", i), fmt.Sprintf("10.%d.0.%d", net, i)})
	}
	for i := 1; i <= n; i++ {
		out = append(out, vm{"api", fmt.Sprintf("api-%d", i), fmt.Sprintf("10.%d.1.%d", net, i)})
	}
	return out
}

// registerTxn registers vms in one Consul transaction: one index, so every
// watch sees all of them at once.
func registerTxn(t *testing.T, c *consulapi.Client, vms ...vm) {
	t.Helper()
	var ops consulapi.TxnOps
	for _, v := range vms {
		ops = append(ops,
			&consulapi.TxnOp{Node: &consulapi.NodeTxnOp{Verb: consulapi.NodeSet, Node: consulapi.Node{Node: v.node, Address: v.addr}}},
			&consulapi.TxnOp{Service: &consulapi.ServiceTxnOp{Verb: consulapi.ServiceSet, Node: v.node, Service: consulapi.AgentService{
				ID: v.service, Service: v.service, Port: vmPort, Meta: map[string]string{"protocol": "http"}}}},
			&consulapi.TxnOp{Check: &consulapi.CheckTxnOp{Verb: consulapi.CheckSet, Check: consulapi.HealthCheck{
				Node: v.node, CheckID: "health-" + v.service, Name: "health", Status: consulapi.HealthPassing, ServiceID: v.service}}},
		)
	}
	txn(t, c, ops)
}

// deregisterTxn removes the nodes of vms (and so their instances) in one
// transaction.
func deregisterTxn(t *testing.T, c *consulapi.Client, vms ...vm) {
	t.Helper()
	var ops consulapi.TxnOps
	for _, v := range vms {
		ops = append(ops, &consulapi.TxnOp{Node: &consulapi.NodeTxnOp{Verb: consulapi.NodeDelete, Node: consulapi.Node{Node: v.node}}})
	}
	txn(t, c, ops)
}

func txn(t *testing.T, c *consulapi.Client, ops consulapi.TxnOps) {
	t.Helper()
	ok, resp, _, err := c.Txn().Txn(ops, nil)
	if err != nil {
		t.Fatalf("consul txn: %v", err)
	}
	if !ok {
		t.Fatalf("consul txn rolled back: %+v", resp.Errors)
	}
}

// ---------------------------------------------------------------------------
// A Consul agent the test can kill and restart on the same port

type consulAgent struct {
	env    []string
	state  string
	addr   string
	client *consulapi.Client
}

// newConsulAgent prepares an agent on 127.0.0.1:port (port must be fixed
// so that a restart keeps the address); start runs it.
func newConsulAgent(t *testing.T, port int) *consulAgent {
	t.Helper()
	state := t.TempDir()
	c := &consulAgent{
		state: state,
		env:   []string{"CONSUL_STATE_DIR=" + state, "CONSUL_BIN=" + consulBin, fmt.Sprintf("CONSUL_HTTP_PORT=%d", port)},
		addr:  fmt.Sprintf("127.0.0.1:%d", port),
	}
	cfg := consulapi.DefaultConfig()
	cfg.Address = c.addr
	client, err := consulapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.client = client
	t.Cleanup(func() { _ = command(repoRoot, c.env, nil, "bash", "integration/consul/consul.sh", "stop") })
	return c
}

// start runs a dev agent: a new, empty catalog every time.
func (c *consulAgent) start(t *testing.T) {
	t.Helper()
	if err := command(repoRoot, c.env, io.Discard, "bash", "integration/consul/consul.sh", "start"); err != nil {
		t.Fatal(err)
	}
}

// kill ends the agent with SIGKILL, as a crash or an OOM kill would.
func (c *consulAgent) kill(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.state, "consul.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil || pid <= 0 {
		t.Fatalf("consul.pid %q", b)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "consul gone", func() error {
		if err := syscall.Kill(pid, 0); err == nil {
			// a zombie until its parent (init) reaps it: look at its state
			if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !bytes.Contains(st, []byte(") Z ")) {
				return fmt.Errorf("pid %d still alive", pid)
			}
		}
		if conn, err := net.DialTimeout("tcp", c.addr, time.Second); err == nil {
			conn.Close()
			return fmt.Errorf("%s still accepts connections", c.addr)
		}
		return nil
	})
}

// bumpIndex makes n writes so that Consul's raft index is well above what a
// fresh agent reaches: a restarted dev agent then answers with an index that
// went backwards.
func (c *consulAgent) bumpIndex(t *testing.T, n int) uint64 {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := c.client.KV().Put(&consulapi.KVPair{Key: "bump", Value: []byte(fmt.Sprint(i))}, nil); err != nil {
			t.Fatal(err)
		}
	}
	_, meta, err := c.client.Catalog().Services(nil)
	if err != nil {
		t.Fatal(err)
	}
	return meta.LastIndex
}

// ---------------------------------------------------------------------------
// The adapter's debug API

type sourceStatus struct {
	Name      string
	Synced    bool
	Stale     bool
	LastError string
}

func debugJSON(t *testing.T, debugAddr, path string, v any) error {
	t.Helper()
	code, body, err := httpGet("http://" + debugAddr + path)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("%s: %d %s", path, code, body)
	}
	return json.Unmarshal(body, v)
}

func sourceState(t *testing.T, debugAddr, name string) (sourceStatus, error) {
	t.Helper()
	var all []sourceStatus
	if err := debugJSON(t, debugAddr, "/debug/sources", &all); err != nil {
		return sourceStatus{}, err
	}
	for _, s := range all {
		if s.Name == name {
			return s, nil
		}
	}
	return sourceStatus{}, fmt.Errorf("no source %q in %+v", name, all)
}

func waitStale(t *testing.T, debugAddr, name string, stale bool, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("source %s stale=%v", name, stale), func() error {
		s, err := sourceState(t, debugAddr, name)
		if err != nil {
			return err
		}
		if s.Stale != stale {
			return fmt.Errorf("%+v", s)
		}
		return nil
	})
}

type heldChange struct {
	ID      string `json:"id"`
	Source  string `json:"source"`
	Removes int    `json:"removesInstances"`
	Of      int    `json:"ofInstances"`
}

func heldChanges(t *testing.T, debugAddr string) ([]heldChange, error) {
	t.Helper()
	var held []heldChange
	err := debugJSON(t, debugAddr, "/debug/held", &held)
	return held, err
}

type clientInfo struct {
	StreamID int64 `json:"streamId"`
	Types    map[string]struct {
		SentVersion  string `json:"sentVersion"`
		AckedVersion string `json:"ackedVersion"`
	} `json:"types"`
}

// synced reports whether the client ACKed what it was last sent, for each
// of the 16 types istiod asks for.
func (c clientInfo) synced() bool {
	if len(c.Types) != 16 {
		return false
	}
	for _, ts := range c.Types {
		if ts.SentVersion == "" || ts.AckedVersion != ts.SentVersion {
			return false
		}
	}
	return true
}

func clients(t *testing.T, debugAddr string) ([]clientInfo, error) {
	t.Helper()
	var out []clientInfo
	err := debugJSON(t, debugAddr, "/debug/clients", &out)
	return out, err
}

// ---------------------------------------------------------------------------
// A TCP proxy that can stall and cut

// tcpProxy forwards connections from a loopback port to target. While
// stalled, requests still reach the target but no answer comes back, and new
// connections are accepted but not connected through (a black hole): what a
// hung or overloaded server looks like. cut closes every connection.
type tcpProxy struct {
	lis    net.Listener
	target string

	mu     sync.Mutex
	gate   chan struct{} // closed while traffic flows
	conns  map[*proxyConn]bool
	closed bool

	accepted atomic.Int64
	wg       sync.WaitGroup
}

type proxyConn struct {
	client   net.Conn
	upstream net.Conn // set under tcpProxy.mu
	once     sync.Once
	dead     chan struct{}
	p        *tcpProxy
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{lis: lis, target: target, gate: make(chan struct{}), conns: map[*proxyConn]bool{}}
	close(p.gate)
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) addr() string { return p.lis.Addr().String() }

func (p *tcpProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		pc := &proxyConn{client: c, dead: make(chan struct{}), p: p}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.conns[pc] = true
		p.mu.Unlock()
		p.accepted.Add(1)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			pc.run()
		}()
	}
}

// wait blocks while the proxy is stalled; false if the connection died.
func (p *tcpProxy) wait(dead chan struct{}) bool {
	p.mu.Lock()
	g := p.gate
	p.mu.Unlock()
	select {
	case <-g:
		return true
	case <-dead:
		return false
	}
}

func (pc *proxyConn) run() {
	defer pc.close()
	// Dial only once traffic may flow: a stalled proxy in front of a
	// registry that is not running yet looks like a black hole.
	if !pc.p.wait(pc.dead) {
		return
	}
	up, err := net.DialTimeout("tcp", pc.p.target, 5*time.Second)
	if err != nil {
		return
	}
	pc.p.mu.Lock()
	pc.upstream = up
	pc.p.mu.Unlock()
	select {
	case <-pc.dead:
		up.Close()
		return
	default:
	}
	done := make(chan struct{}, 2)
	// Requests flow; answers wait while the proxy is stalled: the server
	// got the request and is slow to answer.
	go func() { pc.pump(up, pc.client, false); done <- struct{}{} }()
	go func() { pc.pump(pc.client, up, true); done <- struct{}{} }()
	<-done
	pc.close()
	<-done
}

func (pc *proxyConn) pump(dst, src net.Conn, gated bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if gated && !pc.p.wait(pc.dead) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (pc *proxyConn) close() {
	pc.once.Do(func() {
		close(pc.dead)
		pc.client.Close()
		pc.p.mu.Lock()
		up := pc.upstream
		delete(pc.p.conns, pc)
		pc.p.mu.Unlock()
		if up != nil {
			up.Close()
		}
	})
}

func (p *tcpProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
		p.gate = make(chan struct{})
	default: // already stalled
	}
}

func (p *tcpProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}

// cut closes every connection and returns how many there were.
func (p *tcpProxy) cut() int {
	p.mu.Lock()
	conns := make([]*proxyConn, 0, len(p.conns))
	for pc := range p.conns {
		conns = append(conns, pc)
	}
	p.mu.Unlock()
	for _, pc := range conns {
		pc.close()
	}
	return len(conns)
}

// forwarding is the number of connections that reached the target.
func (p *tcpProxy) forwarding() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for pc := range p.conns {
		if pc.upstream != nil {
			n++
		}
	}
	return n
}

func (p *tcpProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.lis.Close()
	p.resume()
	p.cut()
	p.wg.Wait()
}

// ---------------------------------------------------------------------------
// Adapter process control beyond the harness's restart

// crash kills the adapter with SIGKILL and starts it again on the same
// listeners: no graceful stream close, no chance to flush anything.
func (a *adapterProc) crash(t *testing.T) {
	t.Helper()
	_ = a.cmd.Process.Kill()
	<-a.done
	a.process = launch(t, adapterBin, "run", "--config", a.configPath)
	eventually(t, 30*time.Second, "adapter serving after the crash", func() error {
		code, _, err := httpGet("http://" + a.debugAddr + "/healthz")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("healthz %d %v", code, err)
		}
		return nil
	})
}

// ---------------------------------------------------------------------------
// Network namespaces

// netnsLink is a network namespace joined to the host by a veth pair, with a
// /30 of the test's own: hostIP on the host side, nsIP inside.
type netnsLink struct {
	ns, hostIf, nsIf string
	hostIP, nsIP     string
}

func runCmd(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

var netnsCount atomic.Int32

// makeNetns creates the namespace and the veth pair, or skips the test when
// the machine does not allow it (not root, no iproute2, no CAP_NET_ADMIN).
// With REGISTRY_ADAPTER_REQUIRE_NETNS=1 (make e2e, .ci/run) each of those
// cases fails instead: CI must not pass without the partition test.
func makeNetns(t *testing.T) *netnsLink {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("REGISTRY_ADAPTER_REQUIRE_NETNS") == "1" {
		skip = t.Fatalf
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skip("network partition test needs iproute2 (`ip`): apt-get install -y iproute2 (or make e2e, which installs it)")
	}
	// Unique per call: parallel tests of one process each get their own.
	id := (os.Getpid()*8 + int(netnsCount.Add(1))) % 100000
	l := &netnsLink{
		ns:     fmt.Sprintf("ra-e2e-%d", id),
		hostIf: fmt.Sprintf("rah%d", id),
		nsIf:   fmt.Sprintf("ran%d", id),
	}
	// A /30 of 10.254.0.0/16 derived from the pid: the two addresses are
	// this test's hosts only.
	base := 4 * (id % 16000)
	l.hostIP = fmt.Sprintf("10.254.%d.%d", base/256, base%256+1)
	l.nsIP = fmt.Sprintf("10.254.%d.%d", base/256, base%256+2)
	if out, _ := exec.Command("ip", "-4", "addr").Output(); bytes.Contains(out, []byte(" "+l.hostIP+"/")) || bytes.Contains(out, []byte(" "+l.nsIP+"/")) {
		skip("addresses %s/%s already in use here", l.hostIP, l.nsIP)
	}
	if err := runCmd("ip", "netns", "add", l.ns); err != nil {
		skip("cannot create a network namespace here (needs root / CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		_ = runCmd("ip", "netns", "del", l.ns) // takes the namespace's end of the pair, and so the pair, along
		_ = runCmd("ip", "link", "del", l.hostIf)
	})
	inNS := func(args ...string) []string { return append([]string{"netns", "exec", l.ns, "ip"}, args...) }
	for _, args := range [][]string{
		{"link", "add", l.hostIf, "type", "veth", "peer", "name", l.nsIf},
		{"link", "set", l.nsIf, "netns", l.ns},
		{"addr", "add", l.hostIP + "/30", "dev", l.hostIf},
		{"link", "set", l.hostIf, "up"},
		inNS("addr", "add", l.nsIP+"/30", "dev", l.nsIf),
		inNS("link", "set", l.nsIf, "up"),
		inNS("link", "set", "lo", "up"),
	} {
		if err := runCmd("ip", args...); err != nil {
			skip("cannot set up the veth pair here: %v", err)
		}
	}
	return l
}

// partition takes the namespace's end of the link down: packets from the
// host are dropped on the floor, nothing answers.
func (l *netnsLink) partition(t *testing.T) {
	t.Helper()
	if err := runCmd("ip", "netns", "exec", l.ns, "ip", "link", "set", l.nsIf, "down"); err != nil {
		t.Fatal(err)
	}
}

func (l *netnsLink) heal(t *testing.T) {
	t.Helper()
	if err := runCmd("ip", "netns", "exec", l.ns, "ip", "link", "set", l.nsIf, "up"); err != nil {
		t.Fatal(err)
	}
}

// exec runs a command inside the namespace.
func (l *netnsLink) exec(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns, name}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %s %v: %v: %s", l.ns, name, args, err, out)
	}
	return string(out)
}

// ---------------------------------------------------------------------------

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
