package fidelity

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/registry-adapter/registry-adapter/adapter"
	"github.com/registry-adapter/registry-adapter/config"
)

// The testdata JSON was captured from a real istiod (pilot-discovery, Istio
// 1.31 line) serving examples/static.yaml through this adapter.
func istiodServer(t *testing.T, mutate func(shards string) string) *httptest.Server {
	t.Helper()
	reg, err := os.ReadFile("testdata/registryz.json")
	if err != nil {
		t.Fatal(err)
	}
	shards, err := os.ReadFile("testdata/endpointShardz.json")
	if err != nil {
		t.Fatal(err)
	}
	s := string(shards)
	if mutate != nil {
		s = mutate(s)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/registryz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(reg) })
	mux.HandleFunc("/debug/endpointShardz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(s)) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func expectedFromExample(t *testing.T) View {
	t.Helper()
	cfg, err := config.Load("../examples/static.yaml")
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	srcs, err := config.BuildSources(cfg, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := adapter.Render(context.Background(), srcs, cfg.Output, log)
	if err != nil {
		t.Fatal(err)
	}
	return Expected(res)
}

func TestFaithful(t *testing.T) {
	want := expectedFromExample(t)
	got, err := Istiod(context.Background(), http.DefaultClient, istiodServer(t, nil).URL)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(want, got); len(d) != 0 {
		t.Errorf("captured istiod state differs from the example:\n%s", strings.Join(d, "\n"))
	}
	if !slices.Equal(got.Hosts(), []string{"billing.vms.example.com", "ledger-db.vms.example.com"}) {
		t.Errorf("hosts %v (istiod's own services must be ignored)", got.Hosts())
	}
}

func TestDiffFindsDifferences(t *testing.T) {
	want := expectedFromExample(t)
	cases := []struct {
		name   string
		mutate func(string) string
		want   string
	}{
		{"wrong target port", func(s string) string { return strings.Replace(s, `"EndpointPort":18080`, `"EndpointPort":8080`, 1) },
			"host billing.vms.example.com: endpoint 10.0.1.11/http-8080 targets port 8080, want 18080"},
		{"label lost", func(s string) string { return strings.Replace(s, `"version":"v2"`, `"version":"v3"`, 1) },
			`label version="v3", want "v2"`},
		{"endpoint missing", func(s string) string { return strings.Replace(s, `"10.0.2.20"`, `"10.9.9.9"`, 1) },
			"host ledger-db.vms.example.com: endpoint 10.0.2.20/tcp-5432 missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Istiod(context.Background(), http.DefaultClient, istiodServer(t, c.mutate).URL)
			if err != nil {
				t.Fatal(err)
			}
			d := strings.Join(Diff(want, got), "\n")
			if !strings.Contains(d, c.want) {
				t.Errorf("diff does not report %q:\n%s", c.want, d)
			}
		})
	}
	delete(want, "ledger-db.vms.example.com")
	got, _ := Istiod(context.Background(), http.DefaultClient, istiodServer(t, nil).URL)
	if d := Diff(want, got); !slices.Contains(d, "host ledger-db.vms.example.com: extra in istiod") {
		t.Errorf("extra host not reported: %v", d)
	}
}
