package adapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/server"
	"github.com/registry-adapter/registry-adapter/sources"
)

// Debug serves metrics, health and debug endpoints over HTTP.
type Debug struct {
	Adapter  *Adapter
	Cache    *server.Cache
	Server   *server.Server
	Sources  []NamedSource
	Gatherer prometheus.Gatherer
	Log      *zap.Logger
}

// Handler returns the debug mux.
func (d *Debug) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", d.healthz)
	mux.HandleFunc("/readyz", d.readyz)
	mux.HandleFunc("/debug/resources", d.resources)
	mux.HandleFunc("/debug/clients", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, d.Server.Clients())
	})
	mux.HandleFunc("/debug/sources", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, d.statuses())
	})
	mux.HandleFunc("/debug/held", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, d.Adapter.Held())
	})
	mux.HandleFunc("/debug/allow-deletions", d.allowDeletions)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// Run serves on addr until ctx is done.
func (d *Debug) Run(ctx context.Context, addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("debug: listen %s: %w", addr, err)
	}
	return d.Serve(ctx, lis)
}

// Serve serves on lis until ctx is done.
func (d *Debug) Serve(ctx context.Context, lis net.Listener) error {
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	d.Log.Info("serving metrics and debug endpoints", zap.String("address", lis.Addr().String()))
	select {
	case err := <-errc:
		return fmt.Errorf("debug: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return err
}

func (d *Debug) statuses() []sources.Status {
	out := make([]sources.Status, 0, len(d.Sources))
	for _, s := range d.Sources {
		out = append(out, s.Reporter.Status())
	}
	return out
}

// healthz says whether the process can do its job at all: the xDS listener
// is up. It does not depend on registries: restarting the adapter because
// Consul is down would only make things worse.
func (d *Debug) healthz(w http.ResponseWriter, _ *http.Request) {
	if !d.Server.Serving() {
		http.Error(w, "xDS listener is not serving", http.StatusServiceUnavailable)
		return
	}
	_, _ = fmt.Fprintln(w, "ok")
}

type readiness struct {
	Ready   bool             `json:"ready"`
	Serving bool             `json:"serving"`
	Synced  bool             `json:"synced"`
	Sources []sources.Status `json:"sources"`
	Held    []HeldChange     `json:"heldDeletions,omitempty"`
}

// readyz is ready once every source delivered its first state, that state
// is published, and the listener is up. A source that fails later keeps the
// adapter ready (its last good state is served) and shows up as stale.
func (d *Debug) readyz(w http.ResponseWriter, _ *http.Request) {
	r := readiness{Serving: d.Server.Serving(), Synced: d.Adapter.Ready(), Sources: d.statuses(), Held: d.Adapter.Held()}
	r.Ready = r.Serving && r.Synced
	code := http.StatusOK
	if !r.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, r)
}

// allowDeletions releases a change the mass-deletion guard holds:
// POST /debug/allow-deletions?source=NAME. It is an operator decision, so it
// lives on the debug listener, which should not be reachable by the world.
func (d *Debug) allowDeletions(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	source := req.URL.Query().Get("source")
	if err := d.Adapter.AllowDeletions(req.Context(), source); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	d.Log.Warn("operator allowed a held mass deletion", zap.String("source", source))
	_, _ = fmt.Fprintf(w, "applied the held change of %s\n", source)
}

// resources prints what is served now as YAML. ?kind=ServiceEntry limits the
// kind, ?name=web keeps the resources whose name contains "web".
func (d *Debug) resources(w http.ResponseWriter, req *http.Request) {
	kindFilter := req.URL.Query().Get("kind")
	nameFilter := req.URL.Query().Get("name")
	var out []*convert.Resource
	for _, kind := range convert.Kinds {
		if kindFilter != "" && !strings.EqualFold(kindFilter, string(kind)) {
			continue
		}
		for _, e := range d.Cache.Entries(kind) {
			if nameFilter != "" && !strings.Contains(e.Name, nameFilter) {
				continue
			}
			r, err := convert.FromAny(e.Resource)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			out = append(out, r)
		}
	}
	body, err := convert.YAML(out, convert.RenderOptions{WithVersion: true})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
