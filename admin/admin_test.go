package admin

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/registry-adapter/registry-adapter/adapter"
	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/server"
	"github.com/registry-adapter/registry-adapter/sources"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func svc(name string, addrs ...string) model.Service {
	s := model.Service{Name: name, Host: name + ".example.com", Ports: []model.Port{{Number: 80, Protocol: model.ProtocolHTTP}}}
	for _, a := range addrs {
		s.Instances = append(s.Instances, model.Instance{ID: a, Address: a})
	}
	return s
}

func group(services ...model.Service) model.Group {
	return model.Group{Scope: services[0].Name, Services: services}
}

// opts are the default options in workloadentry mode, where every instance
// is a resource of its own, so that a test sees what changed instance by
// instance. The default mode, inline, has tests of its own where it matters.
func opts() convert.Options {
	o := convert.Options{Mode: convert.ModeWorkloadEntry}
	o.SetDefaults()
	return o
}

// chanSource is a test source driven by the test through a channel.
type chanSource struct{ batches chan []model.Group }

func newChanSource() *chanSource { return &chanSource{batches: make(chan []model.Group)} }

func (s *chanSource) Run(ctx context.Context, out chan<- []model.Group) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case b := <-s.batches:
			select {
			case out <- b:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestDebugEndpoints(t *testing.T) {
	log := zaptest.NewLogger(t)
	reg := prometheus.NewRegistry()
	srcMetrics := sources.NewMetrics(reg)
	src := newChanSource()
	rep := sources.NewReporter("vms", srcMetrics)
	named := []adapter.NamedSource{{Name: "vms", Source: src, Reporter: rep}}
	sm := server.NewMetrics(reg)
	cache := server.NewCache(sm)
	srv, err := server.New(server.Config{Listen: "127.0.0.1:0", KeepaliveMinTime: 10 * time.Second}, cache, sm, log)
	if err != nil {
		t.Fatal(err)
	}
	a := adapter.New(named, adapter.Settings{Output: opts(), Debounce: adapter.DebounceConfig{Quiet: time.Millisecond, Max: 5 * time.Millisecond}}, cache, adapter.NewMetrics(reg), log)
	dbg := &Debug{Adapter: a, Caches: []*server.Cache{cache}, Server: srv, Sources: named, Gatherer: reg, Log: log}
	ready := dbg.ReadyGauge()
	reg.MustRegister(ready)
	web := httptest.NewServer(dbg.Handler())
	defer web.Close()

	if code, _ := get(t, web.URL+"/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz before the listener is up: %d", code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	go func() { errs <- srv.Serve(ctx, lis) }()
	go func() { errs <- a.Run(ctx) }()
	defer func() {
		cancel()
		for range 2 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	}()
	waitUntil(t, "listener up", srv.Serving)
	if code, _ := get(t, web.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while serving: %d", code)
	}
	code, body := get(t, web.URL+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"synced": false`) {
		t.Errorf("/readyz before the first sync: %d %s", code, body)
	}
	if v := testutil.ToFloat64(ready); v != 0 {
		t.Errorf("registry_adapter_ready before the first sync: %v", v)
	}

	// The static-like source reports through its reporter, as real ones do.
	web1 := svc("web", "10.0.0.1")
	src.batches <- []model.Group{group(web1), group(svc("db", "10.0.1.1"))}
	rep.Synced(time.Millisecond, 2, 2)
	waitUntil(t, "ready", a.Ready)
	code, body = get(t, web.URL+"/readyz")
	var r readiness
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	if code != http.StatusOK || !r.Ready || len(r.Sources) != 1 || !r.Sources[0].Synced || r.Sources[0].Services != 2 {
		t.Errorf("/readyz after sync: %d %+v", code, r)
	}
	if v := testutil.ToFloat64(ready); v != 1 {
		t.Errorf("registry_adapter_ready after sync: %v", v)
	}

	code, body = get(t, web.URL+"/debug/resources?kind=ServiceEntry&name=web")
	if code != http.StatusOK || !strings.Contains(body, "name: web.example.com") || strings.Contains(body, "db.example.com") ||
		strings.Contains(body, "kind: WorkloadEntry") || !strings.Contains(body, "resourceVersion:") {
		t.Errorf("/debug/resources filtered:\n%s", body)
	}
	if _, body := get(t, web.URL+"/debug/resources"); strings.Count(body, "kind: WorkloadEntry") != 2 {
		t.Errorf("/debug/resources unfiltered:\n%s", body)
	}
	if code, body := get(t, web.URL+"/debug/sources"); code != http.StatusOK || !strings.Contains(body, `"name": "vms"`) {
		t.Errorf("/debug/sources: %d %s", code, body)
	}
	if code, body := get(t, web.URL+"/debug/clients"); code != http.StatusOK || strings.TrimSpace(body) != "[]" {
		t.Errorf("/debug/clients with none connected: %d %s", code, body)
	}
	_, metrics := get(t, web.URL+"/metrics")
	for _, want := range []string{
		`registry_adapter_server_resources{kind="ServiceEntry",shard="0"} 2`,
		`registry_adapter_server_resources{kind="WorkloadEntry",shard="0"} 2`,
		`registry_adapter_source_services{source="vms"} 2`,
		`registry_adapter_changes_applied_total{kind="WorkloadEntry",op="upsert"} 2`,
		`registry_adapter_debounce_windows_total 1`,
		`registry_adapter_server_connected_clients{shard="0"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if code, _ := get(t, web.URL+"/debug/pprof/"); code != http.StatusOK {
		t.Errorf("pprof index: %d", code)
	}
}
