package main

// The Consul scenarios: a real Consul agent (integration/consul/consul.sh),
// services registered through its catalog API, the adapter's real Consul
// source in the child process talking to Consul through a counting reverse
// proxy, so that the request rate the source puts on Consul can be measured
// at rest and under churn for each of the source's modes.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/registry-adapter/registry-adapter/convert"
)

// countingProxy forwards to Consul and counts the requests it completed.
type countingProxy struct {
	addr     string
	srv      *http.Server
	mu       sync.Mutex
	counts   map[string]int // by endpoint class
	bytes    int64
	inflight atomic.Int64
}

func newCountingProxy(target string) (*countingProxy, error) {
	u, err := url.Parse("http://" + target)
	if err != nil {
		return nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConns: 1000, MaxIdleConnsPerHost: 1000, IdleConnTimeout: time.Minute}
	rp.ErrorLog = log.New(io.Discard, "", 0) // blocking queries cancelled when a child stops
	p := &countingProxy{counts: map[string]int{}}
	rp.ModifyResponse = func(resp *http.Response) error {
		resp.Body = &countingBody{ReadCloser: resp.Body, p: p}
		return nil
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.addr = lis.Addr().String()
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.inflight.Add(1)
		defer p.inflight.Add(-1)
		rp.ServeHTTP(w, r)
		class := "other"
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/health/service/"):
			class = "health"
		case strings.HasPrefix(r.URL.Path, "/v1/catalog/services"):
			class = "catalog"
		}
		p.mu.Lock()
		p.counts[class]++
		p.mu.Unlock()
	})}
	go func() { _ = p.srv.Serve(lis) }()
	return p, nil
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

func (c *consulReg) register(svc, j int, address string) error {
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
			"CheckID": "service:" + id, "Name": "alive", "Status": "passing", "ServiceID": id,
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
				if err := c.register(jb.svc, jb.j, fmt.Sprintf("10.%d.%d.%d", (k>>16)&0xff, (k>>8)&0xff, k&0xff)); err != nil {
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

var moveCounter atomic.Int64

// move gives instance j of svc a fresh address and returns it.
func (c *consulReg) move(svc, j int) (string, error) {
	m := moveCounter.Add(1)
	addr := fmt.Sprintf("172.%d.%d.%d", 16+(m>>16)&0x0f, (m>>8)&0xff, m&0xff)
	return addr, c.register(svc, j, addr)
}

func runConsul(rep *report, o options) error {
	state, err := os.MkdirTemp("", "bench-consul-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	env := []string{"CONSUL_STATE_DIR=" + state}
	progress("consul: starting an agent (integration/consul/consul.sh)")
	// Room for one blocking query per service from one client address in the
	// "unbounded" mode (Consul's default http_max_conns_per_client is 200).
	env = append(env, `CONSUL_EXTRA_ARGS=-hcl 'limits { http_max_conns_per_client = 5000 }'`)
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
	proxy, err := newCountingProxy(addr)
	if err != nil {
		return err
	}
	defer proxy.close()
	reg := &consulReg{addr: addr, hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}}

	rep.consul = append(rep.consul,
		"| services (x3 inst) | mode | sync s | req/s at rest (health/catalog) | req/s under churn | KB/s from Consul rest / churn | adapter CPU % rest / churn | changes visible in window | change→client p50 / max s |",
		"|---:|---|---:|---:|---:|---:|---:|---:|---:|")
	registered := 0
	for _, n := range o.consulServices {
		if n > registered {
			t0 := time.Now()
			if err := reg.registerRange(registered, n, 32); err != nil {
				return err
			}
			d := time.Since(t0)
			rep.notes = append(rep.notes, fmt.Sprintf("Consul: registered %d instances (%d services) through /v1/catalog/register, 32 in parallel, in %s (%.0f/s).",
				(n-registered)*3, n-registered, d.Round(time.Millisecond), float64((n-registered)*3)/d.Seconds()))
			progress("consul: registered %d services in %s", n-registered, d.Round(time.Millisecond))
			registered = n
		}
		for _, mode := range o.consulModes {
			if mode == "unbounded" && 2*n+100 > 15000 {
				rep.consul = append(rep.consul, fmt.Sprintf("| %d | unbounded | skipped: needs %d file descriptors in the driver's proxy (limit 20000) |", n, 2*n))
				continue
			}
			progress("consul: %d services, mode %s", n, mode)
			line, err := consulMode(o, proxy, reg, n, mode)
			if err != nil {
				return fmt.Errorf("%d services, %s: %w", n, mode, err)
			}
			rep.consul = append(rep.consul, line)
		}
	}
	if o.istiod {
		if err := istiodScenario(rep, o, proxy, reg, registered); err != nil {
			rep.fail("istiod", err)
		}
	}
	rep.consul = append(rep.consul, "",
		"Consul at 127.0.0.1 (dev agent, one server); the adapter's source talks to it through a counting reverse proxy in the driver.",
		"Churn: instances moved to a new address through /v1/catalog/register at the real rate of "+
			fmt.Sprintf("%.0f%%/min", o.churnRate*100)+"; visibility = the client (istiod stand-in) decoded a WorkloadEntry with the new address.")
	return nil
}

func consulMode(o options, proxy *countingProxy, reg *consulReg, services int, mode string) (string, error) {
	args := []string{"-mode", string(convert.ModeWorkloadEntry), "-consul", proxy.addr, "-consul-mode", mode,
		"-quiet", o.quiet.String(), "-max", o.max.String()}
	if mode == "unbounded" {
		args = append(args, "-consul-max-queries", fmt.Sprint(services+16))
	}
	child, err := startChild(args...)
	if err != nil {
		return "", err
	}
	defer child.quit()
	c := newClient(0, true)
	if err := c.connect(child.addr); err != nil {
		return "", err
	}
	defer c.close()
	t0 := time.Now()
	if _, err := child.do(command{Op: "start"}); err != nil {
		return "", err
	}
	var st *stats
	for {
		if st, err = child.stats(false); err != nil {
			return "", err
		}
		if st.Ready {
			break
		}
		if time.Since(t0) > 10*time.Minute {
			return "", fmt.Errorf("not synced after 10 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	last, err := waitAll([]*client{c}, wanted(st), 5*time.Minute)
	if err != nil {
		return "", err
	}
	sync := time.Duration(last - t0.UnixNano())

	// At rest.
	time.Sleep(2 * time.Second) // let the initial reads settle into blocking queries
	proxy.snapshot()
	pre, _ := child.stats(false)
	time.Sleep(o.consulRest)
	restCounts, restBytes := proxy.snapshot()
	held := proxy.inflight.Load()
	mid, _ := child.stats(false)

	// Under churn, noting when each change becomes visible to the client.
	perMin := float64(services*3) * o.churnRate
	interval := time.Duration(float64(time.Minute) / perMin)
	type change struct {
		addr string
		t    int64
	}
	var changes []change
	seed := 99
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
		got, err := reg.move(svc, j)
		if err != nil {
			return "", err
		}
		if got != addr {
			c.watchAddress(got)
			addr = got
		}
		changes = append(changes, change{addr, t})
	}
	churnD := time.Since(start)
	churnCounts, churnBytes := proxy.snapshot()
	post, _ := child.stats(false)
	// Give the last changes a short grace to show up.
	time.Sleep(2 * time.Second)
	var lat []float64
	for _, ch := range changes {
		if t := c.seenAt(ch.addr); t > 0 {
			lat = append(lat, float64(t-ch.t)/1e9)
		}
	}
	slices.Sort(lat)
	rate := func(m map[string]int, d time.Duration) string {
		return fmt.Sprintf("%.1f (%.1f/%.1f)", float64(m["health"]+m["catalog"]+m["other"])/d.Seconds(),
			float64(m["health"])/d.Seconds(), float64(m["catalog"])/d.Seconds())
	}
	cpu := func(a, b *stats) string {
		if a == nil || b == nil {
			return "?"
		}
		return fmt.Sprintf("%.1f", float64(b.CPUNs-a.CPUNs)/float64(b.T-a.T)*100)
	}
	latS := "-"
	if len(lat) > 0 {
		latS = fmt.Sprintf("%.1f / %.1f", percentile(lat, 0.5), lat[len(lat)-1])
	}
	return fmt.Sprintf("| %d | %s | %.1f | %s, %d held | %s | %.0f / %.0f | %s / %s | %d/%d | %s |",
		services, mode, sync.Seconds(), rate(restCounts, o.consulRest), held, rate(churnCounts, churnD),
		float64(restBytes)/1024/o.consulRest.Seconds(), float64(churnBytes)/1024/churnD.Seconds(),
		cpu(pre, mid), cpu(mid, post), len(lat), len(changes), latS), nil
}
