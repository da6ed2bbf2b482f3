package consul

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

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
