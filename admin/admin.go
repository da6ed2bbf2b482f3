// Package admin is the operator's HTTP surface of the daemon: metrics,
// health and readiness probes, the debug dumps, pprof and the release of
// held deletions. It needs the concrete server and adapter, so it lives
// apart from both, wired together by cmd/registry-adapter.
package admin

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/registry-adapter/registry-adapter/adapter"
	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/served"
	"github.com/registry-adapter/registry-adapter/server"
	"github.com/registry-adapter/registry-adapter/sources"
)

// Debug serves the daemon's HTTP endpoints on two listeners. The probe
// listener carries /metrics, /healthz and /readyz: the kubelet and Prometheus
// reach it from outside the pod. The admin listener carries /debug/* (every
// address and identity served), pprof and the release of held deletions: it
// is loopback-only (kubectl port-forward) unless a bearer token guards it.
type Debug struct {
	Adapter *adapter.Adapter
	// Caches are the served sets, Caches[i] on Server's shard i.
	Caches   []*server.Cache
	Server   *server.Server
	Sources  []adapter.NamedSource
	Gatherer prometheus.Gatherer
	Log      *zap.Logger
	// TokenFile, when set, holds the bearer token every admin request must
	// carry. It is read on each request, so a rotated token applies at once.
	TokenFile string

	// dumps counts the /debug/resources dumps running now.
	dumps atomic.Int32
}

// maxDumps bounds concurrent /debug/resources dumps: each walks every served
// resource and decodes it again, and a loop of them would starve the adapter.
const maxDumps = 2

// ReleaseHeader names the held change a release applies. A custom header
// makes the release a non-simple request: a web page cannot send it across
// origins without a CORS preflight, which this server never grants.
const ReleaseHeader = "Registry-Adapter-Held-Change"

// ProbeHandler serves /metrics, /healthz and /readyz.
func (d *Debug) ProbeHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", d.healthz)
	mux.HandleFunc("/readyz", d.readyz)
	return mux
}

// AdminHandler serves /debug/* and pprof, behind the bearer token when
// TokenFile is set, and otherwise only to requests addressed to an IP
// address or localhost (requireLocalHost).
func (d *Debug) AdminHandler() http.Handler {
	mux := http.NewServeMux()
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
	if d.TokenFile == "" {
		return requireLocalHost(mux)
	}
	return d.requireToken(mux)
}

// requireLocalHost refuses a request whose Host header names anything but
// an IP address or localhost. Without a token, the admin listener trusts
// whoever reaches it, which is meant to be a port-forward on the operator's
// own machine; but a web page the operator visits can reach it too, by
// DNS rebinding: its name, re-resolved to 127.0.0.1, makes the browser send
// same-origin requests to the forwarded port (reading /debug/resources, the
// registry's every address and identity) with the page's name as Host.
// Browsers always send the name they resolved, so a Host that is an IP
// address or localhost (which browsers resolve themselves, RFC 6761) is a
// request no rebinding can forge. With a token the check is not needed: a
// page cannot know the token.
func requireLocalHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !localHost(req.Host) {
			http.Error(w, "the admin endpoints answer only requests addressed to an IP address or localhost, such as http://127.0.0.1:15015 through kubectl port-forward (a page that re-resolves its own name to this address must not read them)", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, req)
	})
}

// localHost reports whether a Host header value is empty (HTTP/1.0), an IP
// address or localhost (or a name under .localhost), with or without a port.
func localHost(host string) bool {
	if host == "" {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), ".")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	host = strings.ToLower(host)
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// Handler serves both, for one loopback listener.
func (d *Debug) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/debug/", d.AdminHandler())
	mux.Handle("/", d.ProbeHandler())
	return mux
}

// requireToken admits requests carrying "Authorization: Bearer <token>".
func (d *Debug) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		want, err := readToken(d.TokenFile)
		if err != nil {
			d.Log.Error("cannot read the admin token; refusing admin requests", zap.Error(err))
			http.Error(w, "admin token unavailable", http.StatusServiceUnavailable)
			return
		}
		got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, req)
	})
}

func readToken(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("admin token %s: %w", path, err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("admin token %s: empty", path)
	}
	return b, nil
}

// Timeouts of the two servers. A client that sends its request slowly, or
// never reads the answer, holds a connection and a goroutine no longer than
// these. The admin write timeout leaves room for pprof's 30 s profile and a
// large resource dump through a port-forward.
var (
	probeTimeouts = timeouts{header: 5 * time.Second, read: 10 * time.Second, write: 30 * time.Second, idle: time.Minute}
	adminTimeouts = timeouts{header: 5 * time.Second, read: 10 * time.Second, write: 2 * time.Minute, idle: time.Minute}
)

type timeouts struct{ header, read, write, idle time.Duration }

func (t timeouts) server(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: t.header, ReadTimeout: t.read, WriteTimeout: t.write, IdleTimeout: t.idle}
}

// Run serves the probes on probeAddr and the admin endpoints on adminAddr
// until ctx is done. An empty adminAddr, or the same address, serves both on
// probeAddr (the configuration allows that only on loopback).
func (d *Debug) Run(ctx context.Context, probeAddr, adminAddr string) error {
	if adminAddr == "" || adminAddr == probeAddr {
		lis, err := net.Listen("tcp", probeAddr)
		if err != nil {
			return fmt.Errorf("debug: listen %s: %w", probeAddr, err)
		}
		d.Log.Info("serving metrics, probes and admin endpoints", zap.String("address", lis.Addr().String()))
		return serve(ctx, adminTimeouts.server(d.Handler()), lis)
	}
	probe, err := net.Listen("tcp", probeAddr)
	if err != nil {
		return fmt.Errorf("debug: listen %s: %w", probeAddr, err)
	}
	admin, err := net.Listen("tcp", adminAddr)
	if err != nil {
		probe.Close()
		return fmt.Errorf("admin: listen %s: %w", adminAddr, err)
	}
	d.Log.Info("serving metrics and probes", zap.String("address", probe.Addr().String()))
	d.Log.Info("serving admin endpoints", zap.String("address", admin.Addr().String()), zap.Bool("token", d.TokenFile != ""))
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serve(ctx, probeTimeouts.server(d.ProbeHandler()), probe) })
	g.Go(func() error { return serve(ctx, adminTimeouts.server(d.AdminHandler()), admin) })
	return g.Wait()
}

// Serve serves every endpoint on lis until ctx is done (tests).
func (d *Debug) Serve(ctx context.Context, lis net.Listener) error {
	return serve(ctx, adminTimeouts.server(d.Handler()), lis)
}

func serve(ctx context.Context, srv *http.Server, lis net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
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

// Ready is what /readyz answers 200 for: every xDS listener serving, and every source's first state published.
func (d *Debug) Ready() bool { return d.Server.Serving() && d.Adapter.Ready() }

// ReadyGauge is registry_adapter_ready, 1 while Ready: Prometheus does not see the kubelet's probes, and the
// not-ready alert needs the same answer.
func (d *Debug) ReadyGauge() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "registry_adapter_ready",
		Help: "1 while /readyz answers 200: every xDS listener serving and every source's first state published.",
	}, func() float64 {
		if d.Ready() {
			return 1
		}
		return 0
	})
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
// POST /debug/allow-deletions?source=NAME with the header
// Registry-Adapter-Held-Change: ID, the id /debug/held shows. Naming the
// change means a release cannot apply a different one than the operator
// read (the held change grew meanwhile, or was replaced); the custom header
// keeps browsers from sending it cross-origin.
func (d *Debug) allowDeletions(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	id := req.Header.Get(ReleaseHeader)
	if id == "" {
		http.Error(w, "name the held change to release in the "+ReleaseHeader+" header (its id on /debug/held)", http.StatusBadRequest)
		return
	}
	source := req.URL.Query().Get("source")
	if err := d.Adapter.AllowDeletions(req.Context(), source, id); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	d.Log.Warn("operator allowed a held mass deletion", zap.String("source", source), zap.String("change", id),
		zap.String("remote", req.RemoteAddr))
	_, _ = fmt.Fprintf(w, "applied the held change %s of %s\n", id, source)
}

// resources prints what is served now, the union of every shard, as YAML.
// ?kind=ServiceEntry limits the kind, ?name=web keeps the resources whose
// name contains "web", ?shard=N keeps shard N's. With more than one shard a
// comment before each document names its shard and listener, which is the
// config source istiod reads it from.
func (d *Debug) resources(w http.ResponseWriter, req *http.Request) {
	if d.dumps.Add(1) > maxDumps {
		d.dumps.Add(-1)
		http.Error(w, fmt.Sprintf("%d resource dumps are running; try again", maxDumps), http.StatusTooManyRequests)
		return
	}
	defer d.dumps.Add(-1)
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
	type shardEntry struct {
		shard int
		entry served.Entry
	}
	// Streamed: each document is written as it is decoded, so a dump of
	// 50k resources costs one resource of memory, not the whole YAML.
	w.Header().Set("Content-Type", "application/yaml")
	first := true
	for _, kind := range served.Kinds {
		if kindFilter != "" && !strings.EqualFold(kindFilter, string(kind)) {
			continue
		}
		var list []shardEntry
		for i, c := range d.Caches {
			if shardFilter >= 0 && i != shardFilter {
				continue
			}
			for _, e := range c.Entries(kind) {
				if nameFilter == "" || strings.Contains(e.Name, nameFilter) {
					list = append(list, shardEntry{i, e})
				}
			}
		}
		// The same order as with one shard: by name within a kind.
		slices.SortFunc(list, func(a, b shardEntry) int { return strings.Compare(a.entry.Name, b.entry.Name) })
		for _, s := range list {
			var doc bytes.Buffer
			r, err := served.Decode(s.entry.Resource)
			var y []byte
			if err == nil {
				y, err = convert.YAML([]*served.Resource{r}, convert.RenderOptions{WithVersion: true})
			}
			if err != nil {
				// Headers are gone: say it in the stream and stop.
				fmt.Fprintf(w, "# error: shard %d %s %s: %v\n", s.shard, kind, s.entry.Name, err)
				return
			}
			if !first {
				doc.WriteString("---\n")
			}
			first = false
			if len(d.Caches) > 1 {
				fmt.Fprintf(&doc, "# shard %d of %d", s.shard, len(d.Caches))
				if s.shard < len(addrs) && addrs[s.shard] != nil {
					fmt.Fprintf(&doc, ", listener %s", addrs[s.shard])
				}
				doc.WriteString("\n")
			}
			doc.Write(y)
			if _, err := w.Write(doc.Bytes()); err != nil {
				return // the client went away
			}
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
