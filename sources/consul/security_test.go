package consul

import (
	"compress/gzip"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/registry-adapter/registry-adapter/sources"
)

// A peer on the network path (or a broken proxy) answers with an endless
// error body: the source reads at most maxErrorBody of it, and the error it
// reports stays that small.
func TestConsulErrorBodyBounded(t *testing.T) {
	t.Parallel()
	var written atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		chunk := []byte(strings.Repeat("x", 64<<10))
		for range 160 { // 10 MiB
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	cfg := testConfig(srv.URL, "x-")
	h := runSource(t, cfg)
	st := h.waitStatus("failed", func(s sources.Status) bool { return s.LastError != "" })
	if len(st.LastError) > maxErrorBody+1024 {
		t.Errorf("the reported error holds %d bytes of the body (limit %d)", len(st.LastError), maxErrorBody)
	}
	if !strings.Contains(st.LastError, "500") {
		t.Errorf("error %.200q does not name the status", st.LastError)
	}
}

// A token sent over plain HTTP to another machine can be read on the way:
// the source says so at start, and only then.
func TestConsulPlainHTTPTokenWarning(t *testing.T) {
	for _, tc := range []struct {
		addr  string
		token string
		warn  bool
	}{
		{"http://10.1.2.3:8500", "secret-token", true},
		{"consul.internal:8500", "secret-token", true},
		{"http://127.0.0.1:8500", "secret-token", false},
		{"localhost:8500", "secret-token", false},
		{"http://[::1]:8500", "secret-token", false},
		{"https://10.1.2.3:8501", "secret-token", false},
		{"unix:///run/consul.sock", "secret-token", false},
		{"http://10.1.2.3:8500", "", false},
	} {
		t.Run(tc.addr+"/"+tc.token, func(t *testing.T) {
			t.Setenv("CONSUL_HTTP_TOKEN", "")
			t.Setenv("CONSUL_HTTP_TOKEN_FILE", "")
			core, logs := observer.New(zap.WarnLevel)
			_, err := New(Config{Address: tc.addr, Token: tc.token}, sources.Options{Name: "c", Logger: zap.New(core)})
			if err != nil {
				t.Fatal(err)
			}
			got := logs.FilterMessageSnippet("over plain HTTP").Len() > 0
			if got != tc.warn {
				t.Errorf("warned = %v, want %v", got, tc.warn)
			}
			for _, e := range logs.All() {
				if tc.token != "" && strings.Contains(e.Message+fmt.Sprint(e.ContextMap()), tc.token) {
					t.Error("the token appears in the log")
				}
			}
		})
	}
}

// One answer with many bad instances (a registrant, or a script gone wrong,
// registers 150 instances with an invalid address): each is counted, but
// the log gets the warning budget's burst, not a line per instance.
func TestConsulWarningsRateLimited(t *testing.T) {
	t.Parallel()
	a := sharedAgent(t)
	c := a.client(t, "")
	cleanPrefix(t, c, "flood-")
	const bad = 150
	ops := api.TxnOps{}
	add := func(node, addr string, svc api.AgentService) {
		ops = append(ops,
			&api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: node, Address: addr}}},
			&api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: node, Service: svc}})
	}
	for i := range bad {
		add(fmt.Sprintf("flood-n%d", i), "10.0.7.1", api.AgentService{ID: fmt.Sprint("bad-", i), Service: "flood-web", Port: 80, Address: "not a host!"})
	}
	add("flood-ok", "10.0.7.2", api.AgentService{ID: "ok", Service: "flood-web", Port: 80})
	for len(ops) > 0 {
		n := min(len(ops), 64) // Consul's limit per transaction
		ok, resp, _, err := c.Txn().Txn(ops[:n], nil)
		must(t, err)
		if !ok {
			t.Fatalf("txn: %+v", resp.Errors)
		}
		ops = ops[n:]
	}
	h := runSource(t, testConfig(a.addr, "flood-"))
	h.waitFor("the good instance", func(v view) bool { return ids(v.svc("flood-web")) == "flood-ok/ok" })
	if got := h.counter(h.src.metrics.invalid.WithLabelValues("address")); got != bad {
		t.Errorf("invalid_total{reason=address} = %v, want %d", got, bad)
	}
	if n := h.logs.FilterMessageSnippet("invalid Consul data").Len(); n == 0 || n > sources.LogBurst+5 {
		t.Errorf("%d warning lines for one answer of %d bad instances; want at most the burst of %d (and a few for time passing)",
			n, bad, sources.LogBurst)
	}
}

// A Consul (or whoever answers at its address) redirects every request to
// another host: the ACL token must not follow. Go's client carries custom
// headers such as X-Consul-Token across a redirect to any host.
func TestConsulRedirectKeepsTheToken(t *testing.T) {
	t.Parallel()
	const token = "5b1f0c4e-redirect-secret"
	var reached, leaked atomic.Int64
	thief := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		if strings.Contains(fmt.Sprint(r.Header), token) {
			leaked.Add(1)
		}
		w.Header().Set("X-Consul-Index", "1")
		w.Write([]byte("{}"))
	}))
	t.Cleanup(thief.Close)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, thief.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)
	cfg := testConfig(redirector.URL, "x-")
	cfg.Token = token
	h := runSource(t, cfg)
	st := h.waitStatus("failed, or the redirect followed", func(s sources.Status) bool { return s.LastError != "" || reached.Load() > 0 })
	if n := leaked.Load(); n > 0 {
		t.Fatalf("the token reached the redirect's host %d times", n)
	}
	if n := reached.Load(); n > 0 {
		t.Errorf("the redirect was followed %d times", n)
	}
	if !strings.Contains(st.LastError, "redirect to "+thief.URL) || strings.Contains(st.LastError, token) {
		t.Errorf("status error %q: want the redirect named, without the token", st.LastError)
	}
	if got := h.counter(h.src.metrics.requests.WithLabelValues("catalog", "redirect")) +
		h.counter(h.src.metrics.requests.WithLabelValues("config", "redirect")); got < 1 {
		t.Errorf("requests_total{result=redirect} = %v", got)
	}
}

// A gzip answer of a few hundred KB that inflates to 64 MB of JSON (a review
// saw 1.4 MB inflate to 245 MB and an 881 MB peak): the source stops reading
// at maxResponseBytes, after decompression, and fails the request with an
// error naming the request and the limit.
func TestConsulResponseBodyBounded(t *testing.T) {
	t.Parallel()
	const inflated = 64 << 20
	var produced atomic.Int64 // bytes of JSON the server got written into the gzip stream
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Consul-Index", "1")
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/v1/catalog/services" {
			w.Write([]byte("[]")) // the config entry kinds: none
			return
		}
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			t.Errorf("the source did not ask for gzip: %q", r.Header.Get("Accept-Encoding"))
		}
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		defer zw.Close()
		chunk := []byte(strings.Repeat(`"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",`, 1<<10))
		if _, err := zw.Write([]byte(`{"x-web":[`)); err != nil {
			return
		}
		for produced.Load() < inflated {
			n, err := zw.Write(chunk)
			produced.Add(int64(n))
			if err != nil {
				return // the client hung up
			}
		}
		zw.Write([]byte(`"x"]}`))
	}))
	t.Cleanup(srv.Close)
	cfg := testConfig(srv.URL, "x-")
	cfg.MaxResponseBytes = 1 << 20
	// The bound is on bytes, not time: a slow (loaded, -race) read must not
	// end as a timeout first.
	cfg.RequestTimeout = time.Minute
	h := runSource(t, cfg)
	st := h.waitStatus("failed", func(s sources.Status) bool { return s.LastError != "" })
	if want := "Consul's answer to GET /v1/catalog/services is larger than maxResponseBytes (1048576 bytes, after decompression)"; !strings.Contains(st.LastError, want) {
		t.Errorf("status error %q, want %q", st.LastError, want)
	}
	if got := h.counter(h.src.metrics.requests.WithLabelValues("catalog", "toolarge")); got < 1 {
		t.Errorf("requests_total{result=toolarge} = %v", got)
	}
	h.stop()
	// The client hung up long before the end: what the server produced is
	// the limit plus what the connection buffers hold, not 64 MB.
	if p := produced.Load(); p >= inflated {
		t.Errorf("the server produced all %d bytes: the body was read to the end", p)
	}
}

// insecureSkipVerify (or CONSUL_HTTP_SSL_VERIFY=false) lets anyone on the
// path answer as Consul: said once, at start, over TLS only.
func TestConsulInsecureSkipVerifyWarning(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		env  string
		warn bool
	}{
		{"config", Config{Address: "https://10.1.2.3:8501", TLS: TLSConfig{InsecureSkipVerify: true}}, "", true},
		{"environment", Config{Address: "https://10.1.2.3:8501"}, "false", true},
		{"verified", Config{Address: "https://10.1.2.3:8501"}, "", false},
		{"plain http", Config{Address: "http://127.0.0.1:8500"}, "false", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CONSUL_HTTP_SSL_VERIFY", tc.env)
			core, logs := observer.New(zap.WarnLevel)
			if _, err := New(tc.cfg, sources.Options{Name: "c", Logger: zap.New(core)}); err != nil {
				t.Fatal(err)
			}
			if got := logs.FilterMessageSnippet("insecureSkipVerify").Len(); got != map[bool]int{true: 1}[tc.warn] {
				t.Errorf("%d warnings, want warned = %v", got, tc.warn)
			}
		})
	}
}
