package adapter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/model"
)

// StateFileConfig enables saving the last known state to disk. istiod exits
// at start when its config source refuses the connection and stays unready
// until every type is answered; the adapter answers only once every source
// has synced. If a registry is unreachable while the adapter restarts, that
// holds every istiod that restarts meanwhile unready. With a state file the
// adapter can serve what it last knew instead. Off by default: serving old
// state is a trade-off an operator should choose.
type StateFileConfig struct {
	// Path of the file; empty disables it.
	Path string `yaml:"path"`
	// ServeAfter: when the sources have not all synced this long after start,
	// serve the saved state (default 30s).
	ServeAfter time.Duration `yaml:"serveAfter"`
	// MinInterval between two writes (default 10s); the latest state is
	// always the one written.
	MinInterval time.Duration `yaml:"minInterval"`
	// MaxAge: a saved state older than this is not served at start
	// (default 24h). The age counts from when the adapter last served the
	// state, not from when it last changed: the file is rewritten every
	// MaxAge/4 while nothing changes, and at shutdown.
	MaxAge time.Duration `yaml:"maxAge"`
	// MaxBytes: a state file larger than this is not read (default 64 MiB),
	// so that a damaged or planted file cannot exhaust the adapter's memory
	// at start.
	MaxBytes int64 `yaml:"maxBytes"`
}

// Why these defaults: the state file bridges a registry outage across a
// restart of the adapter. Older than a day, the addresses it holds are more
// likely wrong than right for fleets that scale or get replaced daily, and a
// cloud address reused by another machine would receive the traffic; an
// operator who wants longer sets it. A state takes about 250 bytes of JSON
// per instance (three labels, a locality), so 64 MiB holds some 250,000
// instances: three times what the chart's 512Mi memory limit serves (75k
// instances, BENCHMARKS.md). Loading costs about 4x the file's size
// (measured: a 61 MiB file of 256k instances allocated 260 MiB while
// loading and left 217 MiB of heap), so a file at the limit still loads
// under 512Mi; a larger one, damaged or planted, would kill the pod at
// every start instead.
const (
	defaultStateMaxAge   = 24 * time.Hour
	defaultStateMaxBytes = 64 << 20
)

// SetDefaults fills unset fields.
func (c *StateFileConfig) SetDefaults() {
	if c.ServeAfter == 0 {
		c.ServeAfter = 30 * time.Second
	}
	if c.MinInterval == 0 {
		c.MinInterval = 10 * time.Second
	}
	if c.MaxAge == 0 {
		c.MaxAge = defaultStateMaxAge
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = defaultStateMaxBytes
	}
}

// Validate reports an invalid configuration.
func (c *StateFileConfig) Validate() error {
	if c.ServeAfter < 0 || c.MinInterval < 0 || c.MaxAge < 0 {
		return errors.New("stateFile: durations must not be negative")
	}
	if c.MaxBytes < 0 {
		return errors.New("stateFile.maxBytes must not be negative")
	}
	return nil
}

// refresh is how often an unchanged state is written again, so that its
// savedAt says when it was last served.
func (c *StateFileConfig) refresh() time.Duration {
	return max(c.MaxAge/4, c.MinInterval, time.Second)
}

// savedState is the file's content: every source's scopes, as the store
// holds them.
type savedState struct {
	Format  int                                   `json:"format"`
	SavedAt time.Time                             `json:"savedAt"`
	Sources map[string]map[string][]model.Service `json:"sources"`
}

const stateFormat = 1

// snapshot copies the store's maps; the service slices themselves are never
// modified once stored, so sharing them is safe.
func (st *Store) snapshot() map[string]map[string][]model.Service {
	out := make(map[string]map[string][]model.Service, len(st.scopes))
	for source, scopes := range st.scopes {
		m := make(map[string][]model.Service, len(scopes))
		for scope, svcs := range scopes {
			m[scope] = svcs
		}
		out[source] = m
	}
	return out
}

// loadState reads a saved state of at most maxBytes. A missing file is not
// an error. The size is checked before reading, and the read itself stops
// past the limit (a file that grows, or one whose size stat does not tell).
func loadState(path string, maxBytes int64) (*savedState, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		// A FIFO would block the start; a device could be endless.
		return nil, fmt.Errorf("state file %s: not a regular file (%s)", path, fi.Mode().Type())
	}
	if fi.Size() > maxBytes {
		return nil, fmt.Errorf("state file %s: %d bytes, over the limit of %d (stateFile.maxBytes); not read", path, fi.Size(), maxBytes)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	defer f.Close()
	// Sized from stat, so that reading does not grow (and copy) the buffer.
	buf := bytes.NewBuffer(make([]byte, 0, fi.Size()+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(f, maxBytes+1)); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	b := buf.Bytes()
	if int64(len(b)) > maxBytes {
		return nil, fmt.Errorf("state file %s: more than the limit of %d bytes (stateFile.maxBytes); not read further", path, maxBytes)
	}
	var s savedState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	if s.Format != stateFormat {
		return nil, fmt.Errorf("state file %s: format %d, want %d", path, s.Format, stateFormat)
	}
	return &s, nil
}

// writeState writes atomically: a reader (or a crash) sees the old file or
// the new one, never half of one.
func writeState(path string, s *savedState, maxBytes int64) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("state file: encode: %w", err)
	}
	if int64(len(b)) > maxBytes {
		// Written anyway (it is what is served now), but said loudly: the
		// next start refuses it.
		err = fmt.Errorf("state file %s: %d bytes, over the limit of %d (stateFile.maxBytes): the next start will not read it", path, len(b), maxBytes)
	}
	if werr := writeFileAtomic(path, b); werr != nil {
		return werr
	}
	return err
}

func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("state file: write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("state file: sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// stateSnapshot is the store's content and when it was last known current.
type stateSnapshot struct {
	sources map[string]map[string][]model.Service
	// asOf is zero when every source has synced since start (the write time
	// is then the state's time); otherwise it is the restored file's savedAt,
	// so that state no source has confirmed does not grow younger by being
	// written again.
	asOf time.Time
}

// stateWriter writes the latest snapshot it was given, at most once per
// interval, in the background so the adapter loop never waits on the disk.
// While nothing changes it writes the last snapshot again every refresh, and
// once more at shutdown, so that savedAt tells when the state was last served.
type stateWriter struct {
	path     string
	interval time.Duration
	refresh  time.Duration
	maxBytes int64
	log      *zap.Logger
	now      func() time.Time
	latest   chan stateSnapshot
	done     chan struct{}
}

func newStateWriter(cfg StateFileConfig, now func() time.Time, log *zap.Logger) *stateWriter {
	return &stateWriter{path: cfg.Path, interval: cfg.MinInterval, refresh: cfg.refresh(), maxBytes: cfg.MaxBytes,
		log: log, now: now, latest: make(chan stateSnapshot, 1), done: make(chan struct{})}
}

// offer replaces any snapshot still waiting to be written.
func (w *stateWriter) offer(snap stateSnapshot) {
	for {
		select {
		case w.latest <- snap:
			return
		default:
			select {
			case <-w.latest:
			default:
			}
		}
	}
}

func (w *stateWriter) run(ctx context.Context) {
	defer close(w.done)
	var last *stateSnapshot
	write := func(snap stateSnapshot) {
		last = &snap
		at := snap.asOf
		if at.IsZero() {
			at = w.now().UTC()
		}
		if err := writeState(w.path, &savedState{Format: stateFormat, SavedAt: at, Sources: snap.sources}, w.maxBytes); err != nil {
			w.log.Error("cannot save state", zap.Error(err))
		}
	}
	// stop writes what is pending, or else the last state again: the next
	// start reads when it was last served.
	stop := func() {
		select {
		case snap := <-w.latest:
			write(snap)
		default:
			if last != nil {
				write(*last)
			}
		}
	}
	refresh := time.NewTimer(w.refresh)
	defer refresh.Stop()
	for {
		select {
		case snap := <-w.latest:
			write(snap)
		case <-refresh.C:
			if last != nil {
				write(*last)
			}
		case <-ctx.Done():
			stop()
			return
		}
		refresh.Reset(w.refresh)
		select {
		case <-time.After(w.interval):
		case <-ctx.Done():
			stop()
			return
		}
	}
}

// restoreState loads the state file into the store, for the sources still
// configured, and reports whether there was anything to restore.
func (a *Adapter) restoreState() bool {
	saved, err := loadState(a.state.Path, a.state.MaxBytes)
	if err != nil {
		a.log.Error("ignoring the state file; starting without it", zap.Error(err))
		return false
	}
	if saved == nil {
		return false
	}
	now := a.now()
	age := now.Sub(saved.SavedAt)
	switch {
	case age > a.state.MaxAge:
		// Serving addresses this old risks sending traffic to machines that
		// have since taken them over; better to wait for the registries.
		a.log.Warn("ignoring the state file: saved longer ago than stateFile.maxAge; starting without it",
			zap.String("path", a.state.Path), zap.Time("savedAt", saved.SavedAt),
			zap.Duration("age", age.Round(time.Second)), zap.Duration("maxAge", a.state.MaxAge))
		return false
	case -age > a.state.MaxAge:
		// Its age cannot be known (a clock moved, or the file was not
		// written by an adapter).
		a.log.Warn("ignoring the state file: saved further in the future than stateFile.maxAge; starting without it",
			zap.String("path", a.state.Path), zap.Time("savedAt", saved.SavedAt), zap.Duration("maxAge", a.state.MaxAge))
		return false
	}
	restored := false
	for _, src := range a.sources {
		scopes, ok := saved.Sources[src.Name]
		if !ok {
			continue
		}
		groups := make([]model.Group, 0, len(scopes))
		for scope, svcs := range scopes {
			groups = append(groups, model.Group{Scope: scope, Services: svcs})
		}
		a.store.Replace(src.Name, groups)
		restored = true
	}
	if restored {
		a.restoredAt = saved.SavedAt
	}
	a.log.Info("loaded the saved state", zap.String("path", a.state.Path), zap.Time("savedAt", saved.SavedAt),
		zap.Int("hosts", len(a.store.hosts)))
	return restored
}
