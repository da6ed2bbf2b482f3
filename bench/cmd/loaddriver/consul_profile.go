package main

// Where a Consul change's time goes (with -profile): CPU profiles of Consul
// (its dev agent serves /debug/pprof) and of the adapter over the first sync
// and the churn, and each change split at the driver's proxy into Consul's
// part (the write until the first answer for its service leaves Consul) and
// the adapter's (that answer until the client decoded the change).

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/registry-adapter/registry-adapter/bench/internal/measure"
)

// healthTimes records, while on, when each /v1/health/service/ answer
// completed at the proxy, by path.
type healthTimes struct {
	mu    sync.Mutex
	on    bool
	times map[string][]int64
}

func (h *healthTimes) start() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.on, h.times = true, map[string][]int64{}
}

func (h *healthTimes) note(path string) {
	if !strings.HasPrefix(path, "/v1/health/service/") {
		return
	}
	t := time.Now().UnixNano()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.on {
		h.times[path] = append(h.times[path], t)
	}
}

// firstAfter is the first answer for path completed after t (0: none).
func (h *healthTimes) firstAfter(path string, t int64) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, x := range h.times[path] {
		if x > t {
			return x
		}
	}
	return 0
}

func (h *healthTimes) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.on, h.times = false, nil
}

// consulProfile fetches a CPU profile of the Consul agent at addr over d into
// dir/name, in the background; wait for it with the returned function.
func consulProfile(addr string, d time.Duration, dir, name string) func() {
	if dir == "" {
		return func() {}
	}
	_ = os.MkdirAll(dir, 0o755)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(d.Seconds())))
		if err != nil {
			progress("consul profile: %v", err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return
		}
		defer f.Close()
		_, _ = io.Copy(f, resp.Body)
	}()
	return func() { <-done }
}

// adapterProfile starts a CPU profile of the adapter child into dir/name;
// the returned function stops it.
func adapterProfile(child *childProc, dir, name string) func() {
	if dir == "" {
		return func() {}
	}
	_ = os.MkdirAll(dir, 0o755)
	if _, err := child.do(command{Op: "profile", Path: filepath.Join(dir, name)}); err != nil {
		progress("profile: %v", err)
	}
	return func() { _, _ = child.do(command{Op: "profile"}) }
}

// splitNote is the note on where the changes' time went: Consul's part and
// the adapter's, each as p50 / p99.
func splitNote(services int, mode string, consul, adapter []float64) string {
	q := func(v []float64) string {
		if len(v) == 0 {
			return "none"
		}
		slices.Sort(v)
		return fmt.Sprintf("p50 %.2f s, p99 %.2f s, max %.2f s", measure.Quantile(v, 0.5), measure.Quantile(v, 0.99), v[len(v)-1])
	}
	return fmt.Sprintf("Consul %d services, %s: where a change's time goes (%d changes): Consul (the write until the first "+
		"answer for its service left the driver's proxy) %s; adapter and client (that answer until the client decoded the change) %s.",
		services, mode, len(consul), q(consul), q(adapter))
}
