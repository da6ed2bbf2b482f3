// Package admin is the operator's HTTP surface of the daemon: metrics,
// health and readiness probes, the debug dumps, pprof and the release of
// held deletions. It needs the concrete server and adapter, so it lives
// apart from both, wired together by cmd/registry-adapter.
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/adapter"
	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/server"
	"github.com/registry-adapter/registry-adapter/sources"
)

// Debug serves metrics, health and debug endpoints over HTTP.
type Debug struct {
	Adapter *adapter.Adapter
	// Caches are the served sets, Caches[i] on Server's shard i.
	Caches   []*server.Cache
	Server   *server.Server
	Sources  []adapter.NamedSource
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

// healthz says whether the process can do its job at all: every xDS
// listener is up. It does not depend on registries: restarting the adapter because
// Consul is down would only make things worse.
func (d *Debug) healthz(w http.ResponseWriter, _ *http.Request) {
	if !d.Server.Serving() {
		http.Error(w, "an xDS listener is not serving", http.StatusServiceUnavailable)
		return
	}
	_, _ = fmt.Fprintln(w, "ok")
}

type readiness struct {
	Ready   bool                 `json:"ready"`
	Serving bool                 `json:"serving"`
	Synced  bool                 `json:"synced"`
	Sources []sources.Status     `json:"sources"`
	Held    []adapter.HeldChange `json:"heldDeletions,omitempty"`
	// Shards lists every listener: istiod is ready only once each of its
	// config sources answered, so one shard down makes the adapter unready.
	Shards []server.ShardStatus `json:"shards"`
}

// readyz is ready once every source delivered its first state, that state
// is published, and the listener is up. A source that fails later keeps the
// adapter ready (its last good state is served) and shows up as stale.
func (d *Debug) readyz(w http.ResponseWriter, _ *http.Request) {
	r := readiness{Serving: d.Server.Serving(), Synced: d.Adapter.Ready(), Sources: d.statuses(), Held: d.Adapter.Held(),
		Shards: d.Server.Status()}
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

// resources prints what is served now, the union of every shard, as YAML.
// ?kind=ServiceEntry limits the kind, ?name=web keeps the resources whose
// name contains "web", ?shard=N keeps shard N's. With more than one shard a
// comment before each document names its shard and listener, which is the
// config source istiod reads it from.
func (d *Debug) resources(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	kindFilter, nameFilter := q.Get("kind"), q.Get("name")
	shardFilter := -1
	if v := q.Get("shard"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n >= len(d.Caches) {
			http.Error(w, fmt.Sprintf("shard %q: want 0 to %d", v, len(d.Caches)-1), http.StatusBadRequest)
			return
		}
		shardFilter = n
	}
	var addrs []net.Addr
	if d.Server != nil {
		addrs = d.Server.Addrs()
	}
	type served struct {
		shard int
		entry server.Entry
	}
	var body bytes.Buffer
	for _, kind := range convert.Kinds {
		if kindFilter != "" && !strings.EqualFold(kindFilter, string(kind)) {
			continue
		}
		var list []served
		for i, c := range d.Caches {
			if shardFilter >= 0 && i != shardFilter {
				continue
			}
			for _, e := range c.Entries(kind) {
				if nameFilter == "" || strings.Contains(e.Name, nameFilter) {
					list = append(list, served{i, e})
				}
			}
		}
		// The same order as with one shard: by name within a kind.
		slices.SortFunc(list, func(a, b served) int { return strings.Compare(a.entry.Name, b.entry.Name) })
		for _, s := range list {
			r, err := convert.FromAny(s.entry.Resource)
			if err != nil {
				http.Error(w, fmt.Sprintf("shard %d %s %s: %v", s.shard, kind, s.entry.Name, err), http.StatusInternalServerError)
				return
			}
			doc, err := convert.YAML([]*convert.Resource{r}, convert.RenderOptions{WithVersion: true})
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			if body.Len() > 0 {
				body.WriteString("---\n")
			}
			if len(d.Caches) > 1 {
				fmt.Fprintf(&body, "# shard %d of %d", s.shard, len(d.Caches))
				if s.shard < len(addrs) && addrs[s.shard] != nil {
					fmt.Fprintf(&body, ", listener %s", addrs[s.shard])
				}
				body.WriteString("\n")
			}
			body.Write(doc)
		}
	}
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(body.Bytes())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
