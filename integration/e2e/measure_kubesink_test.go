//go:build measure

package e2e

// A measurement, not part of the suite (build tag measure): what the
// Kubernetes sink costs at N services against the xDS sink, for BENCHMARKS.md
// (issue 17 item 5). Run (one N per run, each run starts its own etcd):
//
//	cd integration/e2e && flock /tmp/heavy.lock go test -tags measure -count=1 -timeout 60m -run TestMeasureKubeSink -v .
//
// Environment: MEASURE_SERVICES (default 1000), MEASURE_CHANGES (default 50),
// MEASURE_MODE (output.mode: workloadentry, this measurement's default as in
// BENCHMARKS.md's rows, or inline),
// MEASURE_KUBE_QPS (kubernetesSink.qps, default 20 as in the sink; burst is
// twice that).
//
// Source: a real Consul dev agent, read over its HTTPS listener (HTTP/2),
// with N services s0..sN-1, one instance each on its own node (registered
// in transactions before the adapter starts). A change moves the instance
// of one random service (the same seeded sequence for both sinks) to a new
// address: a NodeSet of its node with a new address, seen by the adapter's
// blocking query on that service. The adapter runs with its default Consul
// and debounce settings (quiet 100ms, max 1s); it is the e2e build (-race),
// so its own CPU is not reported.
//
// Phase 1, xDS sink: istiod reads only xds://adapter. Phase 2, Kubernetes
// sink: a new istiod reads only k8s://, the adapter writes to the harness's
// kube-apiserver (default qps 20, burst 40, 4 workers; resync 1h instead of
// 10m, so that no periodic list falls into the change window). Neither istiod has a
// proxy connected, so its CPU is ingestion and push-context work, not pushes
// to proxies. For each phase:
//   - cold sync: istiod's CPU from the adapter's start until istiod is idle
//     (and, for the kube sink, the time until every object is in the API, and
//     the API requests it took, from kube-apiserver's apiserver_request_total);
//   - changes, one at a time: istiod's CPU from the Consul write until istiod
//     is idle again, minus its idle rate over the same time; for the kube
//     sink also kube-apiserver's and etcd's CPU, the API requests, and the
//     time from the Consul write to the watch event carrying the new address;
//   - etcd's database size (etcd_mvcc_db_total_size_in_bytes and
//     _in_use_in_bytes) before the kube sink wrote anything and after.
// Phase 2 ends with an adapter restart (objects already in the API): the
// requests of a warm start.

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

func TestMeasureKubeSink(t *testing.T) {
	n := envInt("MEASURE_SERVICES", 1000)
	k := envInt("MEASURE_CHANGES", 50)
	mode := os.Getenv("MEASURE_MODE")
	if mode == "" {
		mode = "workloadentry"
	}
	installIstioCRDs(t)
	kubeDir := filepath.Dir(kubeconfig)
	etcdURL := kubeEnv(t, filepath.Join(filepath.Dir(kubeDir), "kube.env"), "ETCD_ENDPOINT")
	apiCPU := procCPU(t, pidFile(t, filepath.Join(kubeDir, "apiserver.pid")))
	etcdCPU := procCPU(t, pidFile(t, filepath.Join(kubeDir, "etcd.pid")))
	t.Logf("N=%d services, %d changes, mode %s, load average %s", n, k, mode, loadavg())

	consul, consulHTTPS, consulCA := httpsConsul(t)
	start := time.Now()
	const batch = 20 // 3 operations each, under Consul's 64 per transaction
	for i := 0; i < n; i += batch {
		var vms []vm
		for j := i; j < min(i+batch, n); j++ {
			vms = append(vms, vm{fmt.Sprintf("s%d", j), fmt.Sprintf("n%d", j), fmt.Sprintf("10.%d.%d.%d", 100+j/65536, (j/256)%256, j%256)})
		}
		registerTxn(t, consul.client, vms...)
	}
	t.Logf("registered %d services in Consul in %v", n, time.Since(start).Round(time.Millisecond))

	// The same services change in both phases, each to a new address.
	rng := rand.New(rand.NewSource(17))
	changed := rng.Perm(n)[:k]
	changeTo := func(phase, c int) vm {
		i := changed[c]
		return vm{fmt.Sprintf("s%d", i), fmt.Sprintf("n%d", i), fmt.Sprintf("10.%d.%d.%d", 200+phase, c/256, c%256)}
	}
	wantConfigs := 2 * n
	if mode == "inline" {
		wantConfigs = n
	}
	etcdSize := func() string {
		u := etcdURL + "/metrics"
		return fmt.Sprintf("db %.1f MB, in use %.1f MB", metric(t, u, "etcd_mvcc_db_total_size_in_bytes")/1e6,
			metric(t, u, "etcd_mvcc_db_total_size_in_use_in_bytes")/1e6)
	}

	// ---- phase 1: the xDS sink
	t.Run("xds", func(t *testing.T) {
		t.Logf("etcd before: %s", etcdSize())
		a := startAdapter(t, measureConfig(consulHTTPS, consulCA, mode, ""), 0)
		p := startIstiod(t, meshFor(a.xdsAddr))
		ist := procCPU(t, pidFile(t, filepath.Join(p.runDir, "istiod.pid")))
		c0, t0 := ist(), time.Now()
		eventually(t, 10*time.Minute, "istiod ready", func() error {
			if !p.ready() {
				return fmt.Errorf("not ready")
			}
			return nil
		})
		waitIdle(ist, 2)
		if got := len(p.configs(t)); got < wantConfigs {
			t.Fatalf("istiod holds %d configs after the cold sync, want %d", got, wantConfigs)
		}
		t.Logf("cold sync: istiod CPU %v from when it listened (%v since its start), idle tail included, idle after %v; etcd after: %s",
			ist()-c0, ist(), time.Since(t0).Round(time.Millisecond), etcdSize())

		rate := idleRate(ist)
		pushes := func() float64 { return a.metric(t, "registry_adapter_server_pushes_total") }
		var costs []time.Duration
		for c := range k {
			before := pushes()
			cpu0, s := ist(), time.Now()
			registerTxn(t, consul.client, changeTo(1, c))
			eventually(t, time.Minute, "adapter pushed the change", func() error {
				if pushes() <= before {
					return fmt.Errorf("no push yet")
				}
				return nil
			})
			waitIdle(ist, 2)
			costs = append(costs, ist()-cpu0-time.Duration(float64(time.Since(s))*rate))
		}
		t.Logf("xds sink, %d changes: istiod CPU per change %s (idle rate %.1f ms/s subtracted)", k, summary(costs), rate*1000)
		t.Logf("load average %s", loadavg())
	})

	// ---- phase 2: the Kubernetes sink
	t.Run("kubernetes", func(t *testing.T) {
		const ns = kubeSinkNamespace
		kubeNamespace(t, ns)
		p := startIstiod(t, meshK8sOnly)
		p.waitReady(t)
		ist := procCPU(t, pidFile(t, filepath.Join(p.runDir, "istiod.pid")))
		waitIdle(ist, 2)
		t.Logf("istiod (k8s://) ready and idle with no entries: CPU %v since its start", ist())
		w := watchAddresses(t, ns, mode)
		t.Logf("etcd before: %s", etcdSize())
		req0 := apiRequests(t)
		c0, t0 := ist(), time.Now()
		a := startAdapter(t, measureConfig(consulHTTPS, consulCA, mode, kubeconfig), 0)
		eventually(t, 30*time.Minute, "every object in the API", func() error {
			if got := w.added(); got < wantConfigs {
				return fmt.Errorf("%d of %d objects added", got, wantConfigs)
			}
			return nil
		})
		inAPI := time.Since(t0)
		waitIdle(ist, 2)
		if got := len(p.configs(t)); got < wantConfigs {
			t.Fatalf("istiod holds %d configs after the cold sync, want %d", got, wantConfigs)
		}
		req1 := apiRequests(t)
		t.Logf("cold sync: every object in the API %v after the adapter's start; istiod CPU %v (idle tail included), idle after %v",
			inAPI.Round(time.Millisecond), ist()-c0, time.Since(t0).Round(time.Millisecond))
		t.Logf("cold sync: API requests %s; adapter applies %v, request counts %s", diffRequests(req0, req1),
			a.metric(t, "registry_adapter_kube_applies_total"), adapterVerbs(t, a))
		t.Logf("etcd after the cold sync: %s; objects: %s", etcdSize(), objectSizes(t, ns))

		rate, apiRate, etcdRate := idleRate(ist), idleRate(apiCPU), idleRate(etcdCPU)
		var costs, apiCosts, etcdCosts, lat []time.Duration
		req2 := apiRequests(t)
		apiStart, etcdStart, windowStart := apiCPU(), etcdCPU(), time.Now()
		for c := range k {
			v := changeTo(2, c)
			cpu0, api0, etcd0, s := ist(), apiCPU(), etcdCPU(), time.Now()
			registerTxn(t, consul.client, v)
			var seen time.Time
			eventually(t, time.Minute, "the new address in the API", func() error {
				var ok bool
				if seen, ok = w.seen(v.addr); !ok {
					return fmt.Errorf("%s not watched yet", v.addr)
				}
				return nil
			})
			lat = append(lat, seen.Sub(s))
			waitIdle(ist, 2)
			d := float64(time.Since(s))
			costs = append(costs, ist()-cpu0-time.Duration(d*rate))
			apiCosts = append(apiCosts, apiCPU()-api0-time.Duration(d*apiRate))
			etcdCosts = append(etcdCosts, etcdCPU()-etcd0-time.Duration(d*etcdRate))
		}
		window := time.Since(windowStart)
		apiGross, etcdGross := apiCPU()-apiStart, etcdCPU()-etcdStart
		req3 := apiRequests(t)
		t.Logf("kube sink, %d changes: API requests in all %s", k, diffRequests(req2, req3))
		t.Logf("kube sink: change to object in the API %s", summary(lat))
		t.Logf("kube sink: istiod CPU per change %s (idle rate %.1f ms/s subtracted)", summary(costs), rate*1000)
		t.Logf("kube sink: kube-apiserver CPU per change %s (idle %.1f ms/s), etcd %s (idle %.1f ms/s)",
			summary(apiCosts), apiRate*1000, summary(etcdCosts), etcdRate*1000)
		t.Logf("kube sink: over the %v of the changes, kube-apiserver used %v (%v per change, idle rate not subtracted), etcd %v (%v per change)",
			window.Round(time.Millisecond), apiGross, apiGross/time.Duration(k), etcdGross, etcdGross/time.Duration(k))
		t.Logf("etcd after the changes: %s", etcdSize())

		// A warm start: the adapter restarts with every object in the API.
		req4 := apiRequests(t)
		a.restart(t)
		eventually(t, 5*time.Minute, "restarted adapter leads, listed and synced", func() error {
			// At 10k the restarted adapter (race build), listing, did not
			// answer the harness's 5 s scrape (both 10k runs failed here):
			// a patient scrape, and a failed one is retried, not fatal.
			body, err := patientScrape(a.debugAddr)
			if err != nil {
				return err
			}
			if !strings.Contains(body, "\nregistry_adapter_kube_leader 1\n") {
				return fmt.Errorf("not leading yet")
			}
			if !listedTwice.MatchString(body) {
				return fmt.Errorf("not listed yet")
			}
			if s, err := sourceState(t, a.debugAddr, "dc1"); err != nil || !s.Synced {
				return fmt.Errorf("source not synced: %+v %v", s, err)
			}
			return nil
		})
		waitIdle(ist, 2)
		t.Logf("adapter restart (warm start): API requests %s; adapter applies %v, request counts %s", diffRequests(req4, apiRequests(t)),
			a.metric(t, "registry_adapter_kube_applies_total"), adapterVerbs(t, a))
		t.Logf("load average %s", loadavg())
	})
}

// listedTwice matches the adapter's list-request count once it is 2 or more.
var listedTwice = regexp.MustCompile(`\nregistry_adapter_kube_request_duration_seconds_count\{verb="list"\} ([2-9]|\d\d+)\n`)

// patientScrape reads the adapter's /metrics with a 60 s timeout.
func patientScrape(debugAddr string) (string, error) {
	c := http.Client{Timeout: 60 * time.Second}
	resp, err := c.Get("http://" + debugAddr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// measureConfig is the adapter's config for the measurement: defaults
// except the Consul address, the output mode and, with a kubeconfig, the
// Kubernetes sink alone.
func measureConfig(consulAddr, consulCA, mode, kubeconfigPath string) string {
	cfg := fmt.Sprintf("server: {listen: \"{{XDS}}\", debugListen: \"{{DEBUG}}\"}\noutput: {namespace: %s, mode: %s}\n", kubeSinkNamespace, mode)
	if kubeconfigPath != "" {
		qps := envInt("MEASURE_KUBE_QPS", 20)
		// resync 1h: the periodic resync (default 10m, a paginated list of
		// every owned object) must not fall into the change window; what
		// it costs is the warm start's list.
		cfg += fmt.Sprintf("sink: kubernetes\nkubernetesSink: {kubeconfig: %q, owner: measure, qps: %d, burst: %d, resync: 1h}\n", kubeconfigPath, qps, 2*qps)
	}
	return cfg + fmt.Sprintf("sources:\n- name: dc1\n  consul: {address: %q, tls: {caFile: %q}}\n", consulAddr, consulCA)
}

// httpsConsul is a dev agent with an HTTPS listener too (certificates from
// `consul tls`), returning the agent (its client on plain HTTP), the HTTPS
// address and the CA file. The adapter reads it over HTTPS because Consul's
// HTTPS API speaks HTTP/2, where every service's blocking query gets its own
// stream: over HTTP/1.1 the source's watches take turns above
// maxConcurrentQueries services, so an address move could wait up to one
// blocking wait (BENCHMARKS.md, "Consul at 1k and 10k services").
func httpsConsul(t *testing.T) (*consulAgent, string, string) {
	t.Helper()
	c := newConsulAgent(t, freePort(t))
	for _, args := range [][]string{{"tls", "ca", "create"}, {"tls", "cert", "create", "-server", "-dc", "dc1"}} {
		if err := command(c.state, nil, io.Discard, consulBin, args...); err != nil {
			t.Fatal(err)
		}
	}
	f := func(name string) string { return filepath.Join(c.state, name) }
	port := freePort(t)
	// The test's own registration client shares 127.0.0.1 with the adapter:
	// at 10k services Consul's default of 200 connections per client IP
	// refused its writes (429), so the limit is raised as in the load driver.
	c.env = append(c.env, fmt.Sprintf(`CONSUL_EXTRA_ARGS=-hcl 'limits { http_max_conns_per_client = 5000 }' -hcl 'ports { https = %d }' -hcl 'tls { defaults { ca_file = "%s" cert_file = "%s" key_file = "%s" } }'`,
		port, f("consul-agent-ca.pem"), f("dc1-server-consul-0.pem"), f("dc1-server-consul-0-key.pem")))
	c.start(t)
	return c, fmt.Sprintf("https://127.0.0.1:%d", port), f("consul-agent-ca.pem")
}

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n
		}
	}
	return def
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func kubeEnv(t *testing.T, path, key string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range parseExports(string(b)) {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	t.Fatalf("%s has no %s", path, key)
	return ""
}

func pidFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// procCPU returns a reader of a process's utime+stime from /proc.
func procCPU(t *testing.T, pid string) func() time.Duration {
	return func() time.Duration {
		st, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+2:]))
		u, _ := strconv.Atoi(f[11])
		s, _ := strconv.Atoi(f[12])
		return time.Duration(u+s) * 10 * time.Millisecond // USER_HZ 100
	}
}

// waitIdle waits until the process used under 20 ms of CPU in each of
// seconds consecutive seconds.
func waitIdle(cpu func() time.Duration, seconds int) {
	quiet := 0
	for last := cpu(); quiet < seconds; {
		time.Sleep(time.Second) // sampling a rate, not synchronising
		now := cpu()
		if now-last < 20*time.Millisecond {
			quiet++
		} else {
			quiet = 0
		}
		last = now
	}
}

// idleRate is the process's CPU per second of wall time over 10 idle seconds.
func idleRate(cpu func() time.Duration) float64 {
	c0, t0 := cpu(), time.Now()
	time.Sleep(10 * time.Second) // sampling a rate
	return float64(cpu()-c0) / float64(time.Since(t0))
}

func summary(d []time.Duration) string {
	if len(d) == 0 {
		return "-"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	var sum time.Duration
	for _, x := range s {
		sum += x
	}
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	r := func(x time.Duration) string { return x.Round(time.Millisecond).String() }
	return fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s, mean %s (n=%d)",
		r(q(0.5)), r(q(0.9)), r(q(0.99)), r(s[len(s)-1]), r(sum/time.Duration(len(s))), len(s))
}

var labelRE = regexp.MustCompile(`(\w+)="([^"]*)"`)

// apiRequests is kube-apiserver's own apiserver_request_total, summed by
// verb and resource (group and code folded in).
func apiRequests(t *testing.T) map[string]float64 {
	t.Helper()
	rc := kubeREST(t)
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(rc.Host + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("apiserver /metrics: %d %v", resp.StatusCode, err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		s, ok := strings.CutPrefix(line, "apiserver_request_total{")
		if !ok {
			continue
		}
		labels, value, _ := strings.Cut(s, "} ")
		l := map[string]string{}
		for _, m := range labelRE.FindAllStringSubmatch(labels, -1) {
			l[m[1]] = m[2]
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		res := l["resource"]
		if l["subresource"] != "" {
			res += "/" + l["subresource"]
		}
		out[l["verb"]+" "+res] += v
	}
	return out
}

// diffRequests lists the increase of each verb and resource, the Istio
// resources first, then the rest summed.
func diffRequests(before, after map[string]float64) string {
	var istio, other []string
	otherSum := 0.0
	for key, v := range after {
		d := v - before[key]
		if d <= 0 {
			continue
		}
		if strings.Contains(key, "serviceentries") || strings.Contains(key, "workloadentries") || strings.Contains(key, "leases") {
			istio = append(istio, fmt.Sprintf("%s %.0f", key, d))
		} else {
			other = append(other, fmt.Sprintf("%s %.0f", key, d))
			otherSum += d
		}
	}
	slices.Sort(istio)
	slices.Sort(other)
	return fmt.Sprintf("[%s]; other %.0f [%s]", strings.Join(istio, ", "), otherSum, strings.Join(other, ", "))
}

// adapterVerbs is the adapter's own count of its API requests by verb.
func adapterVerbs(t *testing.T, a *adapterProc) string {
	var out []string
	for _, v := range []string{"list", "get", "create", "apply", "delete"} {
		out = append(out, fmt.Sprintf("%s %.0f", v, a.metric(t, "registry_adapter_kube_request_duration_seconds_count", "verb="+v)))
	}
	return strings.Join(out, ", ")
}

// objectSizes is the count and JSON size of the Istio objects in ns, as the
// API server returns them (managedFields included).
func objectSizes(t *testing.T, ns string) string {
	var out []string
	for _, g := range []schema.GroupVersionResource{seGVR, weGVR} {
		list, err := kubeDynamic(t).Resource(g).Namespace(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, u := range list.Items {
			b, _ := u.MarshalJSON()
			size += len(b)
		}
		mean := 0
		if len(list.Items) > 0 {
			mean = size / len(list.Items)
		}
		out = append(out, fmt.Sprintf("%d %s, %.1f MB JSON (%d B each)", len(list.Items), g.Resource, float64(size)/1e6, mean))
	}
	return strings.Join(out, "; ")
}

// addressWatch watches the ServiceEntries and WorkloadEntries of a namespace
// and remembers when each endpoint address first appeared.
type addressWatch struct {
	mu    sync.Mutex
	first map[string]time.Time
	adds  int
}

func (w *addressWatch) seen(addr string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	at, ok := w.first[addr]
	return at, ok
}

func (w *addressWatch) added() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.adds
}

func watchAddresses(t *testing.T, ns, mode string) *addressWatch {
	t.Helper()
	w := &addressWatch{first: map[string]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	gvrs := []schema.GroupVersionResource{seGVR}
	if mode != "inline" {
		gvrs = append(gvrs, weGVR)
	}
	for _, g := range gvrs {
		res := kubeDynamic(t).Resource(g).Namespace(ns)
		list, err := res.List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		rv := list.GetResourceVersion()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				wi, err := res.Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
				if err != nil {
					time.Sleep(100 * time.Millisecond) // retry a failed watch
					continue
				}
				// A watch ends after the API server's timeout; resume from
				// the last version seen.
				for ev := range wi.ResultChan() {
					u, ok := ev.Object.(*unstructured.Unstructured)
					if !ok {
						continue
					}
					rv = u.GetResourceVersion()
					now := time.Now()
					w.mu.Lock()
					if ev.Type == watch.Added {
						w.adds++
					}
					if ev.Type == watch.Added || ev.Type == watch.Modified {
						for _, addr := range objectAddresses(u) {
							if _, ok := w.first[addr]; !ok {
								w.first[addr] = now
							}
						}
					}
					w.mu.Unlock()
				}
				wi.Stop()
			}
		}()
	}
	return w
}

// objectAddresses is a WorkloadEntry's spec.address, or an inline
// ServiceEntry's spec.endpoints[].address.
func objectAddresses(u *unstructured.Unstructured) []string {
	if a, ok, _ := unstructured.NestedString(u.Object, "spec", "address"); ok {
		return []string{a}
	}
	eps, _, _ := unstructured.NestedSlice(u.Object, "spec", "endpoints")
	var out []string
	for _, e := range eps {
		if m, ok := e.(map[string]any); ok {
			if a, ok := m["address"].(string); ok {
				out = append(out, a)
			}
		}
	}
	return out
}
