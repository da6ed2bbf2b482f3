package main

// The Consul scenarios: a real Consul agent (integration/consul/consul.sh),
// services registered through its catalog API, the adapter's real Consul
// source in the child process talking to Consul through a counting reverse
// proxy, so that the request rate the source puts on Consul can be measured
// at rest and under churn for each of the source's modes.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/registry-adapter/registry-adapter/bench/internal/measure"
	"github.com/registry-adapter/registry-adapter/convert"
)

// countingProxy forwards to Consul and counts the requests it completed, the
// connections the adapter holds to it, and Consul's 429 answers. With TLS it
// serves HTTPS (and so HTTP/2) with its own certificate and forwards to
// Consul's HTTPS listener over HTTP/2, so that the adapter sees what it would
// see talking to Consul's HTTPS listener directly.
type countingProxy struct {
	addr     string
	srv      *http.Server
	mu       sync.Mutex
	counts   map[string]int // by endpoint class
	bytes    int64
	inflight atomic.Int64
	conns    atomic.Int64 // connections from the adapter, open
	throttle atomic.Int64 // 429 answers from Consul
	caFile   string       // with TLS: the CA the adapter is to trust
	health   healthTimes  // with -profile: when each health answer left
}

// proxyTLS is what a TLS proxy needs: Consul's CA (to reach its HTTPS
// listener) and a directory for the proxy's own CA file.
type proxyTLS struct {
	consulCA string
	dir      string
}

func newCountingProxy(target string, tlsOpts *proxyTLS) (*countingProxy, error) {
	scheme := "http"
	tr := &http.Transport{MaxIdleConns: 1000, MaxIdleConnsPerHost: 1000, IdleConnTimeout: time.Minute}
	if tlsOpts != nil {
		scheme = "https"
		pem, err := os.ReadFile(tlsOpts.consulCA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, ServerName: "server.dc1.consul"}
		tr.ForceAttemptHTTP2 = true
	}
	u, err := url.Parse(scheme + "://" + target)
	if err != nil {
		return nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = tr
	rp.ErrorLog = log.New(io.Discard, "", 0) // blocking queries cancelled when a child stops
	p := &countingProxy{counts: map[string]int{}}
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.StatusCode == http.StatusTooManyRequests {
			p.throttle.Add(1)
		}
		resp.Body = &countingBody{ReadCloser: resp.Body, p: p}
		return nil
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	var lis net.Listener = &countingListener{Listener: raw, open: &p.conns}
	p.addr = raw.Addr().String()
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.inflight.Add(1)
		defer p.inflight.Add(-1)
		rp.ServeHTTP(w, r)
		p.health.note(r.URL.Path)
		class := "other"
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/health/service/"):
			class = "health"
		case strings.HasPrefix(r.URL.Path, "/v1/catalog/services"):
			class = "catalog"
		case strings.HasPrefix(r.URL.Path, "/v1/config/"):
			class = "config"
		}
		p.mu.Lock()
		p.counts[class]++
		p.mu.Unlock()
	}), ErrorLog: log.New(io.Discard, "", 0)}
	if tlsOpts != nil {
		cert, caFile, err := selfSigned(tlsOpts.dir)
		if err != nil {
			return nil, err
		}
		p.caFile = caFile
		p.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
		// Serve enables HTTP/2 on *tls.Conn connections offering "h2".
		lis = tls.NewListener(lis, p.srv.TLSConfig)
	}
	go func() { _ = p.srv.Serve(lis) }()
	return p, nil
}

// countingListener counts the open connections it accepted.
type countingListener struct {
	net.Listener
	open *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.open.Add(1)
	return &countedConn{Conn: c, open: l.open}, nil
}

type countedConn struct {
	net.Conn
	once sync.Once
	open *atomic.Int64
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// selfSigned makes a certificate for 127.0.0.1 and writes it, as its own CA,
// to dir/proxy-ca.pem.
func selfSigned(dir string) (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench proxy"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	caFile := filepath.Join(dir, "proxy-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return tls.Certificate{}, "", err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile, nil
}

type countingBody struct {
	io.ReadCloser
	p *countingProxy
}

func (b *countingBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	b.p.mu.Lock()
	b.p.bytes += int64(n)
	b.p.mu.Unlock()
	return n, err
}

// snapshot returns the counts so far and resets them.
func (p *countingProxy) snapshot() (map[string]int, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, b := p.counts, p.bytes
	p.counts, p.bytes = map[string]int{}, 0
	return c, b
}

func (p *countingProxy) close() { _ = p.srv.Close() }

// consulReg registers instances through Consul's catalog API.
type consulReg struct {
	addr string
	hc   *http.Client
}

func consulInstance(svc, j int) (node, id, name string) {
	k := svc*3 + j
	return fmt.Sprintf("node-%05d", k/10), fmt.Sprintf("svc-%06d-%d", svc, j), fmt.Sprintf("svc-%06d", svc)
}

// register writes instance j of svc at address; checkOutput is its check's
// output (Consul rewrites a check, and moves the checks feed, only when the
// check differs).
func (c *consulReg) register(svc, j int, address, checkOutput string) error {
	node, id, name := consulInstance(svc, j)
	k := svc*3 + j
	body := map[string]any{
		"Node":    node,
		"Address": fmt.Sprintf("10.250.%d.%d", (k/10)>>8&0xff, (k/10)&0xff),
		"Service": map[string]any{
			"ID": id, "Service": name, "Address": address, "Port": 8080,
			"Tags": []string{"version=v1"},
			"Meta": map[string]string{"protocol": "http"},
		},
		"Checks": []map[string]any{{
			"CheckID": "service:" + id, "Name": "alive", "Status": "passing", "ServiceID": id, "Output": checkOutput,
		}},
	}
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPut, "http://"+c.addr+"/v1/catalog/register", bytes.NewReader(b))
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("register %s: %s", id, resp.Status)
	}
	return nil
}

// registerRange registers services [from, to), 3 instances each, with at
// most par requests in flight.
func (c *consulReg) registerRange(from, to, par int) error {
	type job struct{ svc, j int }
	jobs := make(chan job)
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < par; w++ {
		wg.Go(func() {
			for jb := range jobs {
				k := jb.svc*3 + jb.j
				if err := c.register(jb.svc, jb.j, fmt.Sprintf("10.%d.%d.%d", (k>>16)&0xff, (k>>8)&0xff, k&0xff), ""); err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	for s := from; s < to; s++ {
		for j := 0; j < 3; j++ {
			jobs <- job{s, j}
		}
	}
	close(jobs)
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return err
	}
	return nil
}

// trafficEvery is the share of services that get config entries with
// -consul-traffic: every 10th.
const trafficEvery = 10

// put writes a JSON body to a Consul endpoint.
func (c *consulReg) put(path string, body any) error {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPut, "http://"+c.addr+path, bytes.NewReader(b))
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT %s: %s: %s", path, resp.Status, msg)
	}
	return nil
}

// split writes svc's splitter: w% to subset v1, the rest to v2.
func (c *consulReg) split(svc, w int) error {
	_, _, name := consulInstance(svc, 0)
	return c.put("/v1/config", map[string]any{"Kind": "service-splitter", "Name": name, "Splits": []map[string]any{
		{"Weight": w, "ServiceSubset": "v1"}, {"Weight": 100 - w, "ServiceSubset": "v2"},
	}})
}

// configRange writes, for every trafficEvery-th service of [from, to),
// service-defaults (http), a resolver with subsets v1 and v2 and a 90/10
// splitter.
func (c *consulReg) configRange(from, to, par int) error {
	var firstErr atomic.Value
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < par; w++ {
		wg.Go(func() {
			for svc := range jobs {
				_, _, name := consulInstance(svc, 0)
				for _, e := range []map[string]any{
					{"Kind": "service-defaults", "Name": name, "Protocol": "http"},
					{"Kind": "service-resolver", "Name": name, "Subsets": map[string]any{
						"v1": map[string]any{"Filter": `"version=v1" in Service.Tags`},
						"v2": map[string]any{"Filter": "Service.Meta.version == v2"},
					}},
				} {
					if err := c.put("/v1/config", e); err != nil {
						firstErr.CompareAndSwap(nil, err)
					}
				}
				if err := c.split(svc, 90); err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	for s := from; s < to; s++ {
		if s%trafficEvery == 0 {
			jobs <- s
		}
	}
	close(jobs)
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return err
	}
	return nil
}

var moveCounter atomic.Int64

// move gives instance j of svc a fresh address and returns it.
func (c *consulReg) move(svc, j int) (string, error) { return c.moveKind(svc, j, false) }

// moveKind is move; with withCheck, the instance's check output changes too.
func (c *consulReg) moveKind(svc, j int, withCheck bool) (string, error) {
	m := moveCounter.Add(1)
	addr := fmt.Sprintf("172.%d.%d.%d", 16+(m>>16)&0x0f, (m>>8)&0xff, m&0xff)
	out := ""
	if withCheck {
		out = "HTTP GET http://" + addr + ":8080/health: 200 OK"
	}
	return addr, c.register(svc, j, addr, out)
}

var churnKindText = map[string]string{
	"address": "same check: a registration change that moves no check",
	"check":   "the check's output changes with it: a change the checks feed shows",
}

func runConsul(rep *report, o options) error {
	if _, ok := churnKindText[o.consulKind]; !ok {
		return fmt.Errorf("-consul-churn-kind %q: want address or check", o.consulKind)
	}
	state, err := os.MkdirTemp("", "bench-consul-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	env := []string{"CONSUL_STATE_DIR=" + state}
	bin, err := runScript(o.repo, nil, "integration/consul/consul.sh", "install")
	if err != nil {
		return fmt.Errorf("consul.sh install: %w", err)
	}
	bin = strings.TrimSpace(bin)
	// Certificates for Consul's HTTPS listener (the "https" mode).
	for _, args := range [][]string{{"tls", "ca", "create"}, {"tls", "cert", "create", "-server", "-dc", "dc1"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = state
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("consul %v: %v: %s", args, err, out)
		}
	}
	httpsPort, err := freeTCPPort()
	if err != nil {
		return err
	}
	f := func(name string) string { return filepath.Join(state, name) }
	progress("consul: starting an agent (integration/consul/consul.sh)")
	// Room for one blocking query per service from one client address in the
	// "unbounded" mode (Consul's default http_max_conns_per_client is 200);
	// the other modes stay within the default.
	env = append(env, `CONSUL_EXTRA_ARGS=-hcl 'limits { http_max_conns_per_client = 5000 }' -hcl 'ports { https = `+
		strconv.Itoa(httpsPort)+` }' -hcl 'tls { defaults { ca_file = "`+f("consul-agent-ca.pem")+`" cert_file = "`+
		f("dc1-server-consul-0.pem")+`" key_file = "`+f("dc1-server-consul-0-key.pem")+`" } }'`)
	out, err := runScript(o.repo, env, "integration/consul/consul.sh", "start")
	if err != nil {
		return fmt.Errorf("consul.sh start: %w", err)
	}
	defer func() { _, _ = runScript(o.repo, env, "integration/consul/consul.sh", "stop") }()
	var addr string
	for _, kv := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(kv, "CONSUL_HTTP_ADDR="); ok {
			addr = v
		}
	}
	if addr == "" {
		return fmt.Errorf("consul.sh printed no address: %q", out)
	}
	consulPid := 0
	if b, err := os.ReadFile(f("consul.pid")); err == nil {
		consulPid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	proxy, err := newCountingProxy(addr, nil)
	if err != nil {
		return err
	}
	defer proxy.close()
	tlsProxy, err := newCountingProxy(fmt.Sprintf("127.0.0.1:%d", httpsPort), &proxyTLS{consulCA: f("consul-agent-ca.pem"), dir: state})
	if err != nil {
		return err
	}
	defer tlsProxy.close()
	reg := &consulReg{addr: addr, hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}}

	rep.consul = append(rep.consul, consulHeader...)
	registered := 0
	register := func(n int) error {
		if n > registered {
			t0 := time.Now()
			if err := reg.registerRange(registered, n, 32); err != nil {
				return err
			}
			d := time.Since(t0)
			rep.notes = append(rep.notes, fmt.Sprintf("Consul: registered %d instances (%d services) through /v1/catalog/register, 32 in parallel, in %s (%.0f/s).",
				(n-registered)*3, n-registered, d.Round(time.Millisecond), float64((n-registered)*3)/d.Seconds()))
			progress("consul: registered %d services in %s", n-registered, d.Round(time.Millisecond))
			if o.consulTraffic {
				t0 := time.Now()
				if err := reg.configRange(registered, n, 16); err != nil {
					return err
				}
				rep.notes = append(rep.notes, fmt.Sprintf("Consul: wrote service-defaults, a service-resolver and a 90/10 service-splitter for %d services (every %dth) in %s.",
					(n-registered+trafficEvery-1)/trafficEvery, trafficEvery, time.Since(t0).Round(time.Millisecond)))
			}
			registered = n
		}
		return nil
	}
	for _, n := range o.consulServices {
		if err := register(n); err != nil {
			return err
		}
		for _, mode := range o.consulModes {
			if mode == "unbounded" && 2*n+100 > 15000 {
				rep.consul = append(rep.consul, consulUnboundedSkipped(n))
				continue
			}
			progress("consul: %d services, mode %s", n, mode)
			p := proxy
			if mode == "https" {
				p = tlsProxy
			}
			line, err := consulMode(rep, o, p, reg, n, mode, consulPid, addr)
			if err != nil {
				return err
			}
			rep.consul = append(rep.consul, line)
		}
	}
	if o.istiod {
		if err := istiodScenario(rep, o, proxy, reg, registered); err != nil {
			rep.fail("istiod", err)
		}
	}
	// The large sizes come last, over HTTPS alone: every mode at 30k would
	// take the full run past its budget, and the real-istiod scenario reads
	// all that is registered.
	for _, n := range o.consulLarge {
		if n <= registered {
			continue
		}
		if err := register(n); err != nil {
			return err
		}
		progress("consul: %d services, mode https", n)
		line, err := consulMode(rep, o, tlsProxy, reg, n, "https", consulPid, addr)
		if err != nil {
			return err
		}
		rep.consul = append(rep.consul, line)
	}
	rep.consul = append(rep.consul, consulFooter(o)...)
	return nil
}

// consulHeader heads the Consul table: one consulRow per service count and mode.
var consulHeader = []string{
	"| services (x3 inst) | transport, mode | sync s | changes seen | change→client p50 / p99 / max s | req/s at rest (health/catalog/config/other) | req/s (MB/s read) under churn | conns to Consul at rest | 429s | adapter CPU % rest / churn | Consul CPU % rest | adapter RSS KB / service | load avg |",
	"|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
}

// consulUnboundedSkipped is the row of the "unbounded" mode at a service
// count whose blocking queries would need too many file descriptors.
func consulUnboundedSkipped(n int) string {
	return fmt.Sprintf("| %d | http, unbounded | skipped: needs %d file descriptors in the driver's proxy (limit 20000) |", n, 2*n)
}

// consulFooter explains the Consul table, below it.
func consulFooter(o options) []string {
	return []string{"",
		"Consul at 127.0.0.1 (dev agent, one server); the adapter's source talks to it through a counting reverse proxy in the driver " +
			"(\"https\": a TLS proxy that speaks HTTP/2 on both sides, to Consul's HTTPS listener; the adapter's defaults otherwise). " +
			"Connections to Consul = the adapter's connections to the proxy.",
		fmt.Sprintf("Churn (%s): instances moved to a new address through /v1/catalog/register (%s), "+
			"at least %d changes to random services, at the real rate of %.0f%%/min of the instances or faster to reach that count; "+
			"the adapter in its default output mode (inline); visibility = the client (istiod stand-in) decoded a ServiceEntry endpoint with the new address. "+
			"The machine is shared with other sessions' work: the load average is that of the whole machine.", o.consulKind, churnKindText[o.consulKind], o.consulChanges, o.churnRate*100)}
}

// configChurn changes the splitter of 20 configured services, one every
// 500 ms, each to a weight no other change uses, and notes the config
// requests and bytes they cost and when each split reached the client.
func configChurn(rep *report, c *client, proxy *countingProxy, reg *consulReg, services int, mode string) error {
	const changes = 20
	proxy.snapshot()
	type change struct {
		key string
		t   int64
	}
	var done []change
	start := time.Now()
	for k := range changes {
		svc := (k * 37 * trafficEvery) % services
		svc -= svc % trafficEvery
		w := 51 + k // 51..70: unique per change, never the initial 90
		_, _, name := consulInstance(svc, 0)
		key := splitKey(name+".service.consul", int32(w))
		c.watchAddress(key)
		t := time.Now().UnixNano()
		if err := reg.split(svc, w); err != nil {
			return err
		}
		done = append(done, change{key, t})
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(5 * time.Second)
	d := time.Since(start)
	counts, bytes := proxy.snapshot()
	var lat []float64
	for _, ch := range done {
		if t := c.seenAt(ch.key); t > 0 {
			lat = append(lat, float64(t-ch.t)/1e9)
		}
	}
	slices.Sort(lat)
	rep.notes = append(rep.notes, configChurnNote(services, mode, changes, d, counts, bytes, lat))
	return nil
}

// configChurnNote is configChurn's note: changes splitter changes in d, the
// requests and bytes they cost, and lat (s, sorted) for those seen.
func configChurnNote(services int, mode string, changes int, d time.Duration, counts map[string]int, bytes int64, lat []float64) string {
	latS := "none seen"
	if len(lat) > 0 {
		latS = fmt.Sprintf("p50 %.2f s, p99 %.2f s, max %.2f s", measure.Quantile(lat, 0.5), measure.Quantile(lat, 0.99), lat[len(lat)-1])
	}
	return fmt.Sprintf("Consul config churn, %d services (%d with config entries), %s: %d splitter changes in %s: %d config requests (%.1f per change), %d other requests, %.0f KB read from Consul; %d of %d splits seen by the client, change→client %s.",
		services, (services+trafficEvery-1)/trafficEvery, mode, changes, d.Round(time.Second), counts["config"], float64(counts["config"])/float64(changes),
		counts["health"]+counts["catalog"]+counts["other"], float64(bytes)/1e3, len(lat), changes, latS)
}

func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// consulMode measures one Consul source mode at one service count with a
// fresh adapter child and returns its row of the Consul table.
func consulMode(rep *report, o options, proxy *countingProxy, reg *consulReg, services int, mode string, consulPid int, consulAddr string) (string, error) {
	s := &consulScenario{rep: rep, o: o, proxy: proxy, reg: reg, services: services, mode: mode, consulPid: consulPid, consulAddr: consulAddr}
	err := runScenario(context.Background(), fmt.Sprintf("%d services, %s", services, mode), readyTimeout, s)
	return s.line, err
}

// consulScenario is one Consul mode: the adapter child's Consul source reads
// the agent through proxy, one client (an istiod stand-in) reads the child.
type consulScenario struct {
	rep       *report
	o         options
	proxy     *countingProxy
	reg       *consulReg
	services  int
	mode      string
	consulPid int
	// consulAddr is the agent's HTTP address (its /debug/pprof, with
	// -profile); waitSyncProf waits for the sync's profile of it.
	consulAddr   string
	waitSyncProf func()
	child        *childProc
	c            *client
	sync         time.Duration
	line         string // the row, once measured
}

func (s *consulScenario) start(context.Context) error {
	proxy, services, mode, o := s.proxy, s.services, s.mode, s.o
	addr, srcMode := proxy.addr, mode
	var childEnv []string
	if mode == "https" {
		addr, srcMode = "https://"+proxy.addr, "default"
		childEnv = []string{"CONSUL_CACERT=" + proxy.caFile}
	}
	// The default output mode (inline): the "change -> served with defaults"
	// target is about what users get.
	args := []string{"-mode", string(convert.ModeInline), "-consul", addr, "-consul-mode", srcMode,
		"-quiet", o.quiet.String(), "-max", o.max.String(), fmt.Sprintf("-consul-traffic=%v", o.consulTraffic)}
	if mode == "unbounded" {
		args = append(args, "-consul-max-queries", fmt.Sprint(services+16))
	}
	for _, kv := range childEnv {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v) // the child inherits the environment; the source reads CONSUL_CACERT
		defer os.Unsetenv(k)
	}
	child, err := startChild(args...)
	if err != nil {
		return err
	}
	s.child = child
	s.c = newClient(0, true)
	return s.c.connect(child.addr)
}

func (s *consulScenario) ready(ctx context.Context) error {
	t0 := time.Now()
	prof := s.profName("sync")
	stopProf := adapterProfile(s.child, s.o.profile, prof+"-adapter.pprof")
	defer stopProf()
	// Not waited for here: the measurement goes on (Consul profiles one at
	// a time, so the churn's waits for it).
	s.waitSyncProf = consulProfile(s.consulAddr, 30*time.Second, s.o.profile, prof+"-consul.pprof")
	_, st, err := s.child.startReady(ctx, 20*time.Millisecond)
	if err != nil {
		return err
	}
	last, err := waitAll([]*client{s.c}, wanted(st), 5*time.Minute)
	if err != nil {
		return err
	}
	s.sync = time.Duration(last - t0.UnixNano())
	return nil
}

// profName names the scenario's profiles of phase (with -profile).
func (s *consulScenario) profName(phase string) string {
	return fmt.Sprintf("consul-%d-%s-%s", s.services, s.mode, phase)
}

func (s *consulScenario) stop() {
	if s.c != nil {
		s.c.close()
	}
	if s.child != nil {
		s.child.quit()
	}
}

func (s *consulScenario) measure(context.Context) (err error) {
	s.line, err = s.measureLine()
	return err
}

func (s *consulScenario) measureLine() (string, error) {
	rep, o, proxy, reg, services, mode, consulPid, child, c, sync := s.rep, s.o, s.proxy, s.reg, s.services, s.mode, s.consulPid, s.child, s.c, s.sync
	// At rest.
	time.Sleep(2 * time.Second) // let the initial reads settle into blocking queries
	proxy.snapshot()
	throttled0 := proxy.throttle.Load()
	pre, _ := child.stats(false)
	cpre, tpre := measure.PID(consulPid).CPU(), time.Now()
	time.Sleep(o.consulRest)
	restCounts, _ := proxy.snapshot()
	consulCPU := float64(measure.PID(consulPid).CPU()-cpre) / float64(time.Since(tpre)) * 100
	conns := proxy.conns.Load()
	mid, _ := child.stats(false)

	// Under churn, noting when each change becomes visible to the client:
	// at the real rate, or faster to reach consulChanges changes.
	perMin := float64(services*3) * o.churnRate
	interval := time.Duration(float64(time.Minute) / perMin)
	if n := o.consulChanges; n > 0 && time.Duration(n)*interval > o.consulChurn {
		interval = o.consulChurn / time.Duration(n)
	}
	type change struct {
		addr string
		t    int64
	}
	var changes []change
	var svcs []int
	seed := 99
	stopProf, waitProf := func() {}, func() {}
	if o.profile != "" {
		s.waitSyncProf()
		proxy.health.start()
		defer proxy.health.stop()
		stopProf = adapterProfile(child, o.profile, s.profName("churn")+"-adapter.pprof")
		waitProf = consulProfile(s.consulAddr, o.consulChurn, o.profile, s.profName("churn")+"-consul.pprof")
	}
	start := time.Now()
	for next := start; time.Since(start) < o.consulChurn; next = next.Add(interval) {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		seed = (seed*1103515245 + 12345) & 0x7fffffff
		svc, j := seed%services, (seed/services)%3
		m := moveCounter.Load() + 1
		addr := fmt.Sprintf("172.%d.%d.%d", 16+(m>>16)&0x0f, (m>>8)&0xff, m&0xff)
		c.watchAddress(addr)
		t := time.Now().UnixNano()
		got, err := reg.moveKind(svc, j, o.consulKind == "check")
		if err != nil {
			return "", err
		}
		if got != addr {
			c.watchAddress(got)
			addr = got
		}
		changes = append(changes, change{addr, t})
		svcs = append(svcs, svc)
	}
	churnD := time.Since(start)
	churnCounts, churnBytes := proxy.snapshot()
	post, _ := child.stats(false)
	// Give the last changes a grace to show up.
	time.Sleep(5 * time.Second)
	var lat []float64
	for _, ch := range changes {
		if t := c.seenAt(ch.addr); t > 0 {
			lat = append(lat, float64(t-ch.t)/1e9)
		}
	}
	slices.Sort(lat)
	if o.profile != "" {
		stopProf()
		waitProf()
		var inConsul, inAdapter []float64
		for i, ch := range changes {
			_, _, name := consulInstance(svcs[i], 0)
			seen := c.seenAt(ch.addr)
			if a := proxy.health.firstAfter("/v1/health/service/"+name, ch.t); a > 0 && seen > 0 {
				inConsul = append(inConsul, float64(a-ch.t)/1e9)
				inAdapter = append(inAdapter, float64(seen-a)/1e9)
			}
		}
		rep.notes = append(rep.notes, splitNote(services, mode, inConsul, inAdapter))
	}
	if o.consulTraffic {
		// -profile: the adapter's CPU during the config churn, and its
		// goroutines in the middle of it.
		name := func(what string) string {
			return filepath.Join(o.profile, fmt.Sprintf("consul-%d-%s-config-churn-%s", services, mode, what))
		}
		if o.profile != "" {
			_ = os.MkdirAll(o.profile, 0o755)
			if _, err := child.do(command{Op: "profile", Path: name("cpu.pprof")}); err != nil {
				progress("profile: %v", err)
			}
			time.AfterFunc(6*time.Second, func() { _, _ = child.do(command{Op: "goroutines", Path: name("goroutines.txt")}) })
		}
		err := configChurn(rep, c, proxy, reg, services, mode)
		if o.profile != "" {
			_, _ = child.do(command{Op: "profile"})
		}
		if err != nil {
			return "", err
		}
	}
	return consulRow{services: services, mode: mode, sync: sync, lat: lat, changes: len(changes),
		rest: restCounts, restD: o.consulRest, churn: churnCounts, churnD: churnD, churnBytes: churnBytes,
		conns: conns, throttled: proxy.throttle.Load() - throttled0, pre: pre, mid: mid, post: post,
		consulCPU: consulCPU, load: measure.LoadAvg()}.line(), nil
}

// consulRow is what one Consul mode measured: one row of the Consul table.
type consulRow struct {
	services       int
	mode           string // as in -consul-modes
	sync           time.Duration
	lat            []float64 // s, change -> client, sorted; one per change seen
	changes        int       // made under churn
	rest, churn    map[string]int
	restD, churnD  time.Duration
	churnBytes     int64
	conns          int64
	throttled      int64
	pre, mid, post *stats // the child at rest start, rest end (churn start), churn end
	consulCPU      float64
	load           string
}

func (r consulRow) line() string {
	rate := func(m map[string]int, d time.Duration) string {
		return fmt.Sprintf("%.1f (%.1f/%.1f/%.2f/%.1f)", float64(m["health"]+m["catalog"]+m["config"]+m["other"])/d.Seconds(),
			float64(m["health"])/d.Seconds(), float64(m["catalog"])/d.Seconds(), float64(m["config"])/d.Seconds(), float64(m["other"])/d.Seconds())
	}
	cpu := func(a, b *stats) string {
		if a == nil || b == nil {
			return "?"
		}
		return fmt.Sprintf("%.1f", float64(b.CPUNs-a.CPUNs)/float64(b.T-a.T)*100)
	}
	lat := r.lat
	latS := "-"
	if len(lat) > 0 {
		latS = fmt.Sprintf("%.2f / %.2f / %.2f", measure.Quantile(lat, 0.5), measure.Quantile(lat, 0.99), lat[len(lat)-1])
	}
	rss := "?"
	if r.mid != nil {
		rss = fmt.Sprintf("%.1f", float64(r.mid.RSS)/1024/float64(r.services))
	}
	transport, mode := "http", r.mode
	if mode == "https" {
		transport, mode = "https (HTTP/2)", "default"
	}
	return fmt.Sprintf("| %d | %s, %s | %.1f | %d/%d | %s | %s | %s, %.1f MB/s | %d | %d | %s / %s | %.1f | %s | %s |",
		r.services, transport, mode, r.sync.Seconds(), len(lat), r.changes, latS, rate(r.rest, r.restD), rate(r.churn, r.churnD),
		float64(r.churnBytes)/r.churnD.Seconds()/1e6,
		r.conns, r.throttled, cpu(r.pre, r.mid), cpu(r.mid, r.post), r.consulCPU, rss, r.load)
}
