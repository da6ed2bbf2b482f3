package consul

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

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
