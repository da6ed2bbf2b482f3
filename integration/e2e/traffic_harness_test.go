package e2e

// The traffic harness: real RPCs from gRPC's own xDS client ("proxyless
// gRPC"), bootstrapped against the real istiod as Istio documents it, to echo
// servers the registries hold. Nothing here balances or resolves: the client
// dials xds:///<host>:<port> and gRPC's xDS resolver, cluster manager,
// priority and round-robin policies do the rest, fed by istiod's grpc
// generator (pilot/pkg/networking/grpcgen) and its EDS.
//
// - echoServer: a gRPC server on a loopback address of its own (Linux routes
//   the whole of 127.0.0.0/8 to lo), answering with its instance id and
//   keeping the time and caller of every RPC it served.
// - meshClient: one proxyless client (its own xDS client and stream to
//   istiod, node id and locality), so that several coexist in a test.
// - load: a steady stream of RPCs on one channel, every result kept.
// - trafficLedger: which instances a service may reach when, checked
//   against what every server actually served.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ---------------------------------------------------------------------------
// Echo servers

// echoPort is the port every echo instance listens on: each has an address
// of its own, so one service port fits all its instances.
const echoPort = 7070

// echoHandler is the service the echo servers implement, declared by hand
// (no generated code): Who takes the caller's key and answers the
// instance's id.
type echoHandler interface {
	who(key string) string
}

const echoMethod = "/registryadapter.e2e.Echo/Who"

var echoService = grpc.ServiceDesc{
	ServiceName: "registryadapter.e2e.Echo",
	HandlerType: (*echoHandler)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Who",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			return wrapperspb.String(srv.(echoHandler).who(in.GetValue())), nil
		},
	}},
}

// hit is one RPC an echo server served: when, and the caller's key
// ("path/service/port", see load).
type hit struct {
	at  time.Time
	key string
}

// echoServer is one instance of a service on one port.
type echoServer struct {
	id   string // node:port
	node string // the registry's name for the instance
	ip   string
	port int
	srv  *grpc.Server

	mu   sync.Mutex
	hits []hit
}

func (e *echoServer) who(key string) string {
	e.mu.Lock()
	e.hits = append(e.hits, hit{at: time.Now(), key: key})
	e.mu.Unlock()
	return e.id
}

// served returns every RPC served so far.
func (e *echoServer) served() []hit {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.hits)
}

// lastFrom is the last RPC served for callers whose key starts with prefix.
func (e *echoServer) lastFrom(prefix string) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.hits) - 1; i >= 0; i-- {
		if strings.HasPrefix(e.hits[i].key, prefix) {
			return e.hits[i].at, true
		}
	}
	return time.Time{}, false
}

// firstFromAfter is the first RPC served after t for callers whose key
// starts with prefix.
func (e *echoServer) firstFromAfter(prefix string, t time.Time) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	i := sort.Search(len(e.hits), func(i int) bool { return e.hits[i].at.After(t) })
	for ; i < len(e.hits); i++ {
		if strings.HasPrefix(e.hits[i].key, prefix) {
			return e.hits[i].at, true
		}
	}
	return time.Time{}, false
}

var (
	echoIPs     atomic.Int32
	echoOctet   = 64 + os.Getpid()%160 // the second octet: this process's own /16 of 127/8
	echoIPLimit = int32(240 * 250)
)

// echoIP is a loopback address no other echo server of this process uses,
// in a /16 of 127.0.0.0/8 chosen by the process id, so that two test
// processes on one machine rarely meet (a clash fails at listen, loudly).
// The third octet 250 and above is left for ec2IP.
func echoIP(t *testing.T) string {
	t.Helper()
	n := echoIPs.Add(1)
	if n >= echoIPLimit {
		t.Fatal("out of echo addresses")
	}
	return fmt.Sprintf("127.%d.%d.%d", echoOctet, n/250, n%250+1)
}

// startEcho serves the echo service for the instance node on ip:port until
// the test ends.
func startEcho(t *testing.T, node, ip string, port int) *echoServer {
	t.Helper()
	lis, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
	if err != nil {
		t.Fatalf("echo server %s: %v", node, err)
	}
	e := &echoServer{id: fmt.Sprintf("%s:%d", node, port), node: node, ip: ip, port: port, srv: grpc.NewServer()}
	e.srv.RegisterService(&echoService, e)
	go func() { _ = e.srv.Serve(lis) }()
	t.Cleanup(e.srv.Stop)
	return e
}

// ---------------------------------------------------------------------------
// Registering echo instances in Consul

// echoInstance is one registration: a node with one service instance whose
// ports are served by servers (one per port, all on one address).
type echoInstance struct {
	service string
	node    string
	zone    string            // node meta "zone", the adapter's zoneMetaKey
	meta    map[string]string // service meta besides protocol (labels: a subset's version)
	servers []*echoServer
}

// newEchoInstance starts a server per port on an address of its own.
func newEchoInstance(t *testing.T, service, node, zone string, ports ...int) echoInstance {
	t.Helper()
	if len(ports) == 0 {
		ports = []int{echoPort}
	}
	ip := echoIP(t)
	in := echoInstance{service: service, node: node, zone: zone}
	for _, p := range ports {
		in.servers = append(in.servers, startEcho(t, node, ip, p))
	}
	return in
}

func (in echoInstance) ip() string { return in.servers[0].ip }

// ops are the transaction operations registering the instance with a check
// in status: the node (with its zone), the service (one port, or named
// ports "p<port>" for several; protocol grpc), the check.
func (in echoInstance) ops(status string) consulapi.TxnOps {
	node := consulapi.Node{Node: in.node, Address: in.ip()}
	if in.zone != "" {
		node.Meta = map[string]string{"zone": in.zone}
	}
	svc := consulapi.AgentService{ID: in.service, Service: in.service, Meta: map[string]string{"protocol": "grpc"}}
	maps.Copy(svc.Meta, in.meta)
	if len(in.servers) == 1 {
		svc.Port = in.servers[0].port
	} else {
		for i, s := range in.servers {
			svc.Ports = append(svc.Ports, consulapi.ServicePort{Name: fmt.Sprintf("p%d", s.port), Port: s.port, Default: i == 0})
		}
	}
	return consulapi.TxnOps{
		&consulapi.TxnOp{Node: &consulapi.NodeTxnOp{Verb: consulapi.NodeSet, Node: node}},
		&consulapi.TxnOp{Service: &consulapi.ServiceTxnOp{Verb: consulapi.ServiceSet, Node: in.node, Service: svc}},
		in.checkOp(status),
	}
}

func (in echoInstance) checkOp(status string) *consulapi.TxnOp {
	return &consulapi.TxnOp{Check: &consulapi.CheckTxnOp{Verb: consulapi.CheckSet, Check: consulapi.HealthCheck{
		Node: in.node, CheckID: "health-" + in.service, Name: "health", Status: status, ServiceID: in.service}}}
}

// registerEcho registers instances, passing: single-port ones in one
// transaction, multi-port ones one by one through the catalog API, because
// Consul's /v1/txn drops a service's Ports (1.22.7: the instance is stored
// without any port).
func registerEcho(t *testing.T, c *consulapi.Client, ins ...echoInstance) {
	t.Helper()
	var ops consulapi.TxnOps
	for _, in := range ins {
		if len(in.servers) > 1 {
			in.register(t, c)
			continue
		}
		ops = append(ops, in.ops(consulapi.HealthPassing)...)
	}
	if len(ops) > 0 {
		txn(t, c, ops)
	}
}

// register registers the instance, passing, through the catalog API.
func (in echoInstance) register(t *testing.T, c *consulapi.Client) {
	t.Helper()
	ops := in.ops(consulapi.HealthPassing)
	node, svc, check := ops[0].Node.Node, ops[1].Service.Service, ops[2].Check.Check
	if _, err := c.Catalog().Register(&consulapi.CatalogRegistration{
		Node: node.Node, Address: node.Address, NodeMeta: node.Meta, Service: &svc, Check: &consulapi.AgentCheck{
			Node: check.Node, CheckID: check.CheckID, Name: check.Name, Status: check.Status, ServiceID: check.ServiceID},
	}, nil); err != nil {
		t.Fatalf("register %s: %v", in.node, err)
	}
}

// setHealth sets the instances' check status in one transaction.
func setHealth(t *testing.T, c *consulapi.Client, status string, ins ...echoInstance) {
	t.Helper()
	var ops consulapi.TxnOps
	for _, in := range ins {
		ops = append(ops, in.checkOp(status))
	}
	txn(t, c, ops)
}

// deregisterEcho removes the instances' nodes in one transaction.
func deregisterEcho(t *testing.T, c *consulapi.Client, ins ...echoInstance) {
	t.Helper()
	var ops consulapi.TxnOps
	for _, in := range ins {
		ops = append(ops, &consulapi.TxnOp{Node: &consulapi.NodeTxnOp{Verb: consulapi.NodeDelete, Node: consulapi.Node{Node: in.node}}})
	}
	txn(t, c, ops)
}

func nodesOf(ins ...echoInstance) []string {
	out := make([]string, len(ins))
	for i, in := range ins {
		out[i] = in.node
	}
	return out
}

// ---------------------------------------------------------------------------
// The proxyless gRPC client

// meshClient is one proxyless gRPC workload: its bootstrap is what Istio's
// agent writes for a proxyless pod (pkg/istio-agent/grpcxds,
// GenerateBootstrap), pointed at istiod's plaintext xDS port: node id
// sidecar~IP~name.namespace~namespace.svc.cluster.local, metadata
// GENERATOR=grpc (istiod's grpc generator answers it), its namespace and
// cluster, and a locality. The bootstrap is handed to gRPC per channel
// (xds.NewXDSResolverWithConfigForTesting, the API Istio's own grpcgen tests
// use), not through GRPC_XDS_BOOTSTRAP_CONFIG, so that clients with
// different nodes coexist in one test process; each channel then has its
// own xDS client and stream to istiod.
type meshClient struct {
	name     string
	resolver resolver.Builder
}

// clientIP is the address the clients claim in their node id: TEST-NET-1,
// which no registry in these tests holds.
const clientIP = "192.0.2.20"

func newMeshClient(t *testing.T, p *istiodProc, name, namespace, region, zone string) *meshClient {
	t.Helper()
	node := map[string]any{
		"id": fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", clientIP, name, namespace, namespace),
		"metadata": map[string]any{
			"GENERATOR":     "grpc",
			"NAMESPACE":     namespace,
			"CLUSTER_ID":    "Kubernetes",
			"INSTANCE_IPS":  clientIP,
			"WORKLOAD_NAME": name,
			"LABELS":        map[string]any{"app": name},
		},
	}
	if region != "" || zone != "" {
		node["locality"] = map[string]any{"region": region, "zone": zone}
	}
	bootstrap, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      p.grpcAddr,
			"channel_creds":   []any{map[string]any{"type": "insecure"}},
			"server_features": []string{"xds_v3"},
		}},
		"node": node,
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatalf("xds resolver for %s: %v", name, err)
	}
	return &meshClient{name: name, resolver: r}
}

// dial opens a channel to xds:///host:port, closed when the test ends.
// gRPC resolves it lazily, at the first RPC.
func (c *meshClient) dial(t *testing.T, host string, port int) *grpc.ClientConn {
	t.Helper()
	target := fmt.Sprintf("xds:///%s:%d", host, port)
	conn, err := grpc.NewClient(target, grpc.WithResolvers(c.resolver), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("%s: dial %s: %v", c.name, target, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// rpcTimeout bounds one RPC: past it, the RPC failed.
const rpcTimeout = time.Second

// callWho makes one RPC and returns the id of the instance that answered.
func callWho(ctx context.Context, conn *grpc.ClientConn, key string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	out := new(wrapperspb.StringValue)
	if err := conn.Invoke(ctx, echoMethod, wrapperspb.String(key), out); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}

// waitServing makes RPCs until one succeeds: the channel has resolved the
// host through istiod and connected.
func waitServing(t *testing.T, conn *grpc.ClientConn, key string) {
	t.Helper()
	eventually(t, 60*time.Second, key+": the first RPC succeeds", func() error {
		_, err := callWho(context.Background(), conn, key)
		return err
	})
}

// burst makes n RPCs one after another and returns how many each instance
// answered; any failure fails the test.
func burst(t *testing.T, conn *grpc.ClientConn, key string, n int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for range n {
		id, err := callWho(context.Background(), conn, key)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		out[id]++
	}
	return out
}

// reachEach makes RPCs one after another until each of want (echo server
// ids, node:port) has answered one: gRPC's round robin picks only among
// connected subchannels, so the first RPCs after the channel serves may all
// reach the first connected instance. A failed RPC, an answer from another
// server, or 30 s without every one of want fails the test.
func reachEach(t *testing.T, conn *grpc.ClientConn, key string, want ...string) map[string]int {
	t.Helper()
	got := map[string]int{}
	deadline := time.Now().Add(30 * time.Second)
	for {
		missing := slices.DeleteFunc(slices.Clone(want), func(id string) bool { return got[id] > 0 })
		if len(missing) == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v never answered in 30 s (answers %v)", key, missing, got)
		}
		id, err := callWho(context.Background(), conn, key)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if !slices.Contains(want, id) {
			t.Fatalf("%s: %s answered; want only %v", key, id, want)
		}
		got[id]++
	}
}

// ---------------------------------------------------------------------------
// Steady load

// rpcResult is one RPC of a load: when it was sent, who answered (id), or
// why it failed.
type rpcResult struct {
	at  time.Time
	id  string
	err error
}

// load sends RPCs on one channel at a steady rate, each in its own
// goroutine (a slow RPC does not hold back the next), and keeps every
// result. key ("path/service/port") tells the servers who called.
type load struct {
	key  string
	conn *grpc.ClientConn

	mu      sync.Mutex
	results []rpcResult
	failed  int

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startLoad waits until the channel serves, then sends rate RPCs per second
// until stop or the end of the test.
func startLoad(t *testing.T, conn *grpc.ClientConn, key string, rate int) *load {
	t.Helper()
	waitServing(t, conn, key)
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{key: key, conn: conn, cancel: cancel}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				at := time.Now()
				id, err := callWho(ctx, conn, key)
				if ctx.Err() != nil {
					return // stopped: not a result
				}
				l.mu.Lock()
				l.results = append(l.results, rpcResult{at: at, id: id, err: err})
				if err != nil {
					l.failed++
				}
				l.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(l.stop)
	return l
}

func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// mark is the number of results so far: results from a mark on are those
// that completed after it.
func (l *load) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.results)
}

func (l *load) since(mark int) []rpcResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.results[min(mark, len(l.results)):])
}

// failures returns the failed RPCs since mark, and the number of RPCs.
func (l *load) failures(mark int) (failed []rpcResult, total int) {
	rs := l.since(mark)
	for _, r := range rs {
		if r.err != nil {
			failed = append(failed, r)
		}
	}
	return failed, len(rs)
}

// last returns the last n results, or fewer if there are not so many.
func (l *load) last(n int) []rpcResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.results[max(0, len(l.results)-n):])
}

// settled waits until the last n results since mark are successes from
// instances (node names) in want only, and each of want answered at least
// once among them when all is set.
func (l *load) settled(t *testing.T, mark, n int, what string, all bool, want ...string) {
	t.Helper()
	eventually(t, 60*time.Second, l.key+": "+what, func() error {
		rs := l.since(mark)
		if len(rs) < n {
			return fmt.Errorf("%d RPCs so far", len(rs))
		}
		rs = rs[len(rs)-n:]
		seen := map[string]bool{}
		for _, r := range rs {
			if r.err != nil {
				return fmt.Errorf("an RPC at %s failed: %v", r.at.Format("15:04:05.000"), r.err)
			}
			node := nodeOf(r.id)
			if !slices.Contains(want, node) {
				return fmt.Errorf("%s answered; want only %v", r.id, want)
			}
			seen[node] = true
		}
		if all && len(seen) < len(want) {
			return fmt.Errorf("only %v answered the last %d RPCs; want each of %v", sortedKeys(seen), n, want)
		}
		return nil
	})
}

// nodeOf is the node of an echo server id (node:port).
func nodeOf(id string) string {
	node, _, _ := strings.Cut(id, ":")
	return node
}

// byNode counts results per answering node; failures under "".
func byNode(rs []rpcResult) map[string]int {
	out := map[string]int{}
	for _, r := range rs {
		if r.err != nil {
			out[""]++
			continue
		}
		out[nodeOf(r.id)]++
	}
	return out
}

// describeFailures is a short account of failed RPCs: how many, the first
// and last, and the distinct errors.
func describeFailures(failed []rpcResult) string {
	if len(failed) == 0 {
		return "none"
	}
	errs := map[string]int{}
	for _, r := range failed {
		errs[r.err.Error()]++
	}
	var parts []string
	for e, n := range errs {
		parts = append(parts, fmt.Sprintf("%dx %q", n, e))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d between %s and %s: %s", len(failed), failed[0].at.Format("15:04:05.000"),
		failed[len(failed)-1].at.Format("15:04:05.000"), strings.Join(parts, "; "))
}

// ---------------------------------------------------------------------------
// The ledger: which instances each service may reach, and when

// trafficLedger records, per service, which instances (node names) the
// registry holds as registered and passing from which moment on. An RPC a
// server served for a service is right if the server was allowed then, or
// was allowed until less than bound before (the time a change may take to
// reach the client: the adapter's debounce max plus 1 s).
type trafficLedger struct {
	bound time.Duration

	mu      sync.Mutex
	changes map[string][]allowance
}

type allowance struct {
	from  time.Time
	nodes []string
}

func newLedger(bound time.Duration) *trafficLedger {
	return &trafficLedger{bound: bound, changes: map[string][]allowance{}}
}

// allow records that from now on service has exactly nodes. Call it before
// the registry write for a change that adds, after it for one that removes:
// the allowance is then never narrower than the registry.
func (l *trafficLedger) allow(service string, nodes ...string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.changes[service] = append(l.changes[service], allowance{from: now, nodes: slices.Clone(nodes)})
	return now
}

func (l *trafficLedger) allowedAt(service, node string, at time.Time) bool {
	var cur []string
	for _, a := range l.changes[service] {
		if a.from.After(at) {
			break
		}
		cur = a.nodes
	}
	return slices.Contains(cur, node)
}

// check goes through every RPC every server served: each must be for a
// service the ledger knows (key "path/service/port"), on the port it was
// dialed on, by an instance allowed then or within bound before. It
// returns the number of RPCs checked.
func (l *trafficLedger) check(t *testing.T, servers []*echoServer) int {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	n, bad := 0, 0
	for _, s := range servers {
		for _, h := range s.served() {
			n++
			parts := strings.Split(h.key, "/")
			if len(parts) != 3 {
				t.Errorf("%s served an RPC with key %q", s.id, h.key)
				continue
			}
			service, port := parts[1], parts[2]
			switch {
			case port != fmt.Sprint(s.port):
				t.Errorf("%s served an RPC dialed on port %s (%s at %s)", s.id, port, h.key, h.at.Format("15:04:05.000"))
			case l.allowedAt(service, s.node, h.at) || l.allowedAt(service, s.node, h.at.Add(-l.bound)):
				continue
			default:
				bad++
				if bad <= 10 {
					t.Errorf("%s served %s at %s: not a registered, passing instance of %s then, nor %s before",
						s.id, h.key, h.at.Format("15:04:05.000"), service, l.bound)
				}
			}
		}
	}
	if bad > 10 {
		t.Errorf("... %d RPCs in all reached an instance they should not have", bad)
	}
	return n
}
