package admin

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/registry-adapter/registry-adapter/adapter"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/server"
	"github.com/registry-adapter/registry-adapter/sources"
)

// startHeld runs an adapter whose one source held a mass deletion (manual
// guard) and returns its Debug.
func startHeld(t *testing.T) (*Debug, *chanSource) {
	t.Helper()
	log := zaptest.NewLogger(t)
	reg := prometheus.NewRegistry()
	src := newChanSource()
	named := []adapter.NamedSource{{Name: "vms", Source: src, Reporter: sources.NewReporter("vms", nil)}}
	cache := server.NewCache(nil)
	guard := adapter.GuardConfig{Manual: true}
	guard.SetDefaults()
	a := adapter.New(named, adapter.Settings{Output: opts(), Guard: guard,
		Debounce: adapter.DebounceConfig{Quiet: time.Millisecond, Max: 5 * time.Millisecond}}, cache, adapter.NewMetrics(reg), log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	fleet := func(n int) []model.Group {
		var addrs []string
		for i := range n {
			addrs = append(addrs, fmt.Sprintf("10.0.0.%d", i+1))
		}
		return []model.Group{group(svc("web", addrs...))}
	}
	src.batches <- fleet(20)
	waitUntil(t, "ready", a.Ready)
	src.batches <- fleet(2)
	waitUntil(t, "held", func() bool { return len(a.Held()) == 1 })
	return &Debug{Adapter: a, Caches: []*server.Cache{cache}, Sources: named, Gatherer: reg, Log: log}, src
}

func post(t *testing.T, url string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestProbeListenerServesNoAdminEndpoint: issue 15 item 2. The probe
// listener, the one Prometheus and the kubelet reach, serves no dump, no
// pprof and no release.
func TestProbeListenerServesNoAdminEndpoint(t *testing.T) {
	d, _ := startHeld(t)
	web := httptest.NewServer(d.ProbeHandler())
	defer web.Close()
	for _, path := range []string{"/debug/resources", "/debug/held", "/debug/sources", "/debug/clients", "/debug/pprof/", "/debug/pprof/cmdline"} {
		if code, _ := get(t, web.URL+path); code != http.StatusNotFound {
			t.Errorf("GET %s on the probe listener: %d, want 404", path, code)
		}
	}
	if code, _ := post(t, web.URL+"/debug/allow-deletions?source=vms", map[string]string{ReleaseHeader: d.Adapter.Held()[0].ID}); code != http.StatusNotFound {
		t.Errorf("release on the probe listener: %d, want 404", code)
	}
	if len(d.Adapter.Held()) != 1 {
		t.Error("the probe listener released the guard")
	}
	if code, _ := get(t, web.URL+"/metrics"); code != http.StatusOK {
		t.Errorf("/metrics: %d", code)
	}
}

// TestReleaseNamesTheHeldChange: a release is a POST with a custom header
// naming the held change: a simple (CSRF-able) request, or one naming
// another change, releases nothing.
func TestReleaseNamesTheHeldChange(t *testing.T) {
	d, _ := startHeld(t)
	web := httptest.NewServer(d.AdminHandler())
	defer web.Close()
	url := web.URL + "/debug/allow-deletions?source=vms"
	id := d.Adapter.Held()[0].ID
	cases := []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"simple request, no header", nil, http.StatusBadRequest},
		{"another change", map[string]string{ReleaseHeader: "0123456789abcdef"}, http.StatusConflict},
	}
	for _, c := range cases {
		if code, body := post(t, url, c.header); code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, code, body, c.want)
		}
		if len(d.Adapter.Held()) != 1 {
			t.Fatalf("%s released the held change", c.name)
		}
	}
	if code, _ := get(t, url); code != http.StatusMethodNotAllowed {
		t.Errorf("GET release: %d", code)
	}
	if code, body := post(t, url, map[string]string{ReleaseHeader: id}); code != http.StatusOK {
		t.Fatalf("release naming the held change: %d %s", code, body)
	}
	waitUntil(t, "released", func() bool { return len(d.Adapter.Held()) == 0 })
}

// TestAdminToken: with a token file, admin requests without the bearer
// token are refused; an empty token file refuses everyone.
func TestAdminToken(t *testing.T) {
	d, _ := startHeld(t)
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.TokenFile = path
	web := httptest.NewServer(d.Handler())
	defer web.Close()
	id := d.Adapter.Held()[0].ID
	req := func(token string) int {
		r, _ := http.NewRequest(http.MethodGet, web.URL+"/debug/held", nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := req(""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d", code)
	}
	if code := req("wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", code)
	}
	if code := req("s3cret"); code != http.StatusOK {
		t.Errorf("right token: %d", code)
	}
	if code, _ := post(t, web.URL+"/debug/allow-deletions?source=vms", map[string]string{ReleaseHeader: id}); code != http.StatusUnauthorized {
		t.Errorf("release without the token: %d", code)
	}
	if code, _ := get(t, web.URL+"/metrics"); code != http.StatusOK {
		t.Errorf("/metrics needs no token, got %d", code)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code := req(""); code != http.StatusServiceUnavailable {
		t.Errorf("empty token file, no token: %d", code)
	}
}

// TestResourceDumpsAreBounded: no more than maxDumps run at once.
func TestResourceDumpsAreBounded(t *testing.T) {
	d, _ := startHeld(t)
	web := httptest.NewServer(d.AdminHandler())
	defer web.Close()
	d.dumps.Store(maxDumps)
	if code, _ := get(t, web.URL+"/debug/resources"); code != http.StatusTooManyRequests {
		t.Errorf("dump beyond the limit: %d", code)
	}
	d.dumps.Store(0)
	if code, body := get(t, web.URL+"/debug/resources"); code != http.StatusOK || strings.Count(body, "kind: WorkloadEntry") != 20 {
		t.Errorf("dump: %d, %d WorkloadEntries", code, strings.Count(body, "kind: WorkloadEntry"))
	}
}

// TestServerTimeouts: a client that sends headers and then trickles its
// body is cut off by the read timeout instead of holding the connection.
func TestServerTimeouts(t *testing.T) {
	d, _ := startHeld(t)
	short := timeouts{header: 200 * time.Millisecond, read: 300 * time.Millisecond, write: time.Second, idle: time.Second}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, short.server(d.Handler()), lis) }()
	defer func() {
		cancel()
		<-done
	}()
	for _, tc := range []struct{ name, send string }{
		{"headers never end", "GET /healthz HTTP/1.1\r\nHost: x\r\n"},
		{"body never comes", "POST /debug/allow-deletions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"},
	} {
		conn, err := net.Dial("tcp", lis.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write([]byte(tc.send)); err != nil {
			t.Fatal(err)
		}
		// The server must close the connection well before 5 s.
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadAll(bufio.NewReader(conn))
		conn.Close()
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%s: the server still held the connection after 5 s", tc.name)
		}
	}
	// The production values are set at all.
	for _, to := range []timeouts{probeTimeouts, adminTimeouts} {
		if to.header == 0 || to.read == 0 || to.write == 0 || to.idle == 0 {
			t.Errorf("a timeout is unset: %+v", to)
		}
	}
}

// TestAdminHostCheck: without a token, the admin endpoints answer only
// requests addressed to an IP address or localhost. A page whose name was
// re-resolved to 127.0.0.1 (DNS rebinding through the operator's
// port-forward) sends its own name as Host: it reads nothing and releases
// nothing. Probes keep answering any Host (Prometheus may scrape by name);
// with a token, the token is the check.
func TestAdminHostCheck(t *testing.T) {
	d, _ := startHeld(t)
	web := httptest.NewServer(d.Handler())
	defer web.Close()
	port := web.URL[strings.LastIndex(web.URL, ":")+1:]
	id := d.Adapter.Held()[0].ID
	do := func(method, host, path string, header map[string]string) int {
		t.Helper()
		req, err := http.NewRequest(method, web.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, host := range []string{"rebind.attacker.example:" + port, "rebind.attacker.example", "127.0.0.1.nip.io:" + port, "localhost.attacker.example:" + port} {
		for _, path := range []string{"/debug/resources", "/debug/held", "/debug/pprof/cmdline"} {
			if code := do(http.MethodGet, host, path, nil); code != http.StatusForbidden {
				t.Errorf("GET %s with Host %s: %d, want 403", path, host, code)
			}
		}
		if code := do(http.MethodPost, host, "/debug/allow-deletions?source=vms", map[string]string{ReleaseHeader: id}); code != http.StatusForbidden {
			t.Errorf("release with Host %s: %d, want 403", host, code)
		}
		if code := do(http.MethodGet, host, "/metrics", nil); code != http.StatusOK {
			t.Errorf("/metrics with Host %s: %d, want 200", host, code)
		}
	}
	if len(d.Adapter.Held()) != 1 {
		t.Fatal("a rebinding request released the held change")
	}
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LOCALHOST.", "[::1]:" + port, "10.1.2.3:15015", "pod.localhost:" + port} {
		if code := do(http.MethodGet, host, "/debug/held", nil); code != http.StatusOK {
			t.Errorf("GET /debug/held with Host %s: %d, want 200", host, code)
		}
	}
	// With a token, any Host carrying it is served (in-cluster callers use
	// the Service's name).
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.TokenFile = path
	withToken := httptest.NewServer(d.Handler())
	defer withToken.Close()
	req, _ := http.NewRequest(http.MethodGet, withToken.URL+"/debug/held", nil)
	req.Host = "registry-adapter.istio-system.svc:15015"
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("with the token and a Service name as Host: %d, want 200", resp.StatusCode)
	}
}
