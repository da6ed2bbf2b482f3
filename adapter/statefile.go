package adapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
}

// SetDefaults fills unset fields.
func (c *StateFileConfig) SetDefaults() {
	if c.ServeAfter == 0 {
		c.ServeAfter = 30 * time.Second
	}
	if c.MinInterval == 0 {
		c.MinInterval = 10 * time.Second
	}
}

// Validate reports an invalid configuration.
func (c *StateFileConfig) Validate() error {
	if c.ServeAfter < 0 || c.MinInterval < 0 {
		return errors.New("stateFile: durations must not be negative")
	}
	return nil
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

// loadState reads a saved state. A missing file is not an error.
func loadState(path string) (*savedState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
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
func writeState(path string, s *savedState) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("state file: encode: %w", err)
	}
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

// stateWriter writes the latest snapshot it was given, at most once per
// interval, in the background so the adapter loop never waits on the disk.
type stateWriter struct {
	path     string
	interval time.Duration
	log      *zap.Logger
	latest   chan map[string]map[string][]model.Service
	done     chan struct{}
}

func newStateWriter(path string, interval time.Duration, log *zap.Logger) *stateWriter {
	return &stateWriter{path: path, interval: interval, log: log,
		latest: make(chan map[string]map[string][]model.Service, 1), done: make(chan struct{})}
}

// offer replaces any snapshot still waiting to be written.
func (w *stateWriter) offer(snap map[string]map[string][]model.Service) {
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
	write := func(snap map[string]map[string][]model.Service) {
		if err := writeState(w.path, &savedState{Format: stateFormat, SavedAt: time.Now().UTC(), Sources: snap}); err != nil {
			w.log.Error("cannot save state", zap.Error(err))
		}
	}
	for {
		select {
		case snap := <-w.latest:
			write(snap)
		case <-ctx.Done():
			// The last state is worth keeping for the next start.
			select {
			case snap := <-w.latest:
				write(snap)
			default:
			}
			return
		}
		select {
		case <-time.After(w.interval):
		case <-ctx.Done():
			select {
			case snap := <-w.latest:
				write(snap)
			default:
			}
			return
		}
	}
}

// restoreState loads the state file into the store, for the sources still
// configured, and reports whether there was anything to restore.
func (a *Adapter) restoreState() bool {
	saved, err := loadState(a.state.Path)
	if err != nil {
		a.log.Error("ignoring the state file", zap.Error(err))
		return false
	}
	if saved == nil {
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
	a.log.Info("loaded the saved state", zap.String("path", a.state.Path), zap.Time("savedAt", saved.SavedAt),
		zap.Int("hosts", len(a.store.hosts)))
	return restored
}
