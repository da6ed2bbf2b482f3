package adapter

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
	"github.com/registry-adapter/registry-adapter/sources"
)

func runWithState(t *testing.T, path string, src *chanSource) (*Adapter, *recordingPublisher, func()) {
	t.Helper()
	pub := newRecorder()
	a := New([]NamedSource{{Name: "src0", Source: src, Reporter: sources.NewReporter("src0", nil)}},
		Settings{Output: opts(), Debounce: DebounceConfig{Quiet: time.Millisecond, Max: 5 * time.Millisecond},
			Guard:     GuardConfig{MaxDeletionShare: 0.5, MinInstances: 10, Manual: true},
			StateFile: StateFileConfig{Path: path, ServeAfter: 100 * time.Millisecond, MinInterval: time.Millisecond}},
		pub, nil, zaptest.NewLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	return a, pub, stop
}

func TestStateFileServesSavedStateWhenSourcesAreDown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")

	// First life: the source syncs; its state is saved.
	src := newChanSource()
	a, pub, stop := runWithState(t, path, src)
	src.batches <- fleet(12)
	waitUntil(t, "ready", a.Ready)
	waitUntil(t, "state saved", func() bool {
		s, err := loadState(path, defaultStateMaxBytes)
		return err == nil && s != nil && len(s.Sources["src0"]["web"]) == 1 && len(s.Sources["src0"]["web"][0].Instances) == 12
	})
	first := pub.names(served.KindWorkloadEntry)
	stop()

	// Second life: the registry is unreachable. After serveAfter the adapter
	// serves what it saved instead of holding istiod unready.
	down := newChanSource()
	a, pub, stop = runWithState(t, path, down)
	defer stop()
	if a.Ready() {
		t.Fatal("ready before serveAfter with no source synced")
	}
	waitUntil(t, "serving the saved state", a.Ready)
	if got := pub.names(served.KindWorkloadEntry); len(got) != len(first) {
		t.Fatalf("serving %d WorkloadEntries from the saved state, want %d", len(got), len(first))
	}
	// The registry comes back with an empty catalog: the guard holds that
	// against the restored state rather than wiping istiod.
	down.batches <- []model.Group{}
	waitUntil(t, "held", func() bool { return len(a.Held()) == 1 })
	if got := len(pub.names(served.KindWorkloadEntry)); got != 12 {
		t.Errorf("%d WorkloadEntries after an empty first sync, want the 12 saved", got)
	}
}

func TestStateFileCorruptIsIgnored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := newChanSource()
	a, _, stop := runWithState(t, path, src)
	defer stop()
	src.batches <- fleet(3)
	waitUntil(t, "ready from the source", a.Ready)
	waitUntil(t, "state rewritten", func() bool { s, err := loadState(path, defaultStateMaxBytes); return err == nil && s != nil })
}

// saveAt writes a state of n instances of service web for source src0, saved
// at the given time.
func saveAt(t *testing.T, path string, at time.Time, n int) {
	t.Helper()
	st := &savedState{Format: stateFormat, SavedAt: at,
		Sources: map[string]map[string][]model.Service{"src0": {"web": fleet(n)[0].Services}}}
	if err := writeState(path, st, defaultStateMaxBytes); err != nil {
		t.Fatal(err)
	}
}

// TestStateFileRestoreLimits: what restoreState serves at start, against the
// age and size limits. Each refused file is named in an error or warning, and
// the adapter starts without it (nothing restored, so it waits for its
// sources as if there were no file).
func TestStateFileRestoreLimits(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name     string
		cfg      StateFileConfig
		setup    func(t *testing.T, path string)
		restored bool
		level    zapcore.Level
		log      []string // substrings of one log line at level
	}{{
		name:     "recent state is restored",
		setup:    func(t *testing.T, path string) { saveAt(t, path, now.Add(-time.Hour), 5) },
		restored: true, level: zap.InfoLevel, log: []string{"loaded the saved state"},
	}, {
		name:  "older than maxAge (default 24h) is ignored",
		setup: func(t *testing.T, path string) { saveAt(t, path, now.Add(-25*time.Hour), 5) },
		level: zap.WarnLevel, log: []string{"longer ago than stateFile.maxAge", "maxAge:24h0m0s", "state.json"},
	}, {
		name:     "a maxAge that is set wins over the default",
		cfg:      StateFileConfig{MaxAge: 72 * time.Hour},
		setup:    func(t *testing.T, path string) { saveAt(t, path, now.Add(-25*time.Hour), 5) },
		restored: true, level: zap.InfoLevel, log: []string{"loaded the saved state"},
	}, {
		name:  "saved further in the future than maxAge is ignored",
		setup: func(t *testing.T, path string) { saveAt(t, path, now.Add(48*time.Hour), 5) },
		level: zap.WarnLevel, log: []string{"further in the future than stateFile.maxAge"},
	}, {
		name:  "no savedAt is ignored",
		setup: func(t *testing.T, path string) { saveAt(t, path, time.Time{}, 5) },
		level: zap.WarnLevel, log: []string{"longer ago than stateFile.maxAge"},
	}, {
		// A sparse file of 1 TiB: reading it would take the test's whole
		// timeout and more memory than the machine has, so passing shows the
		// file was refused before it was read.
		name: "larger than maxBytes (default 64 MiB) is refused unread",
		setup: func(t *testing.T, path string) {
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(1 << 40); err != nil {
				t.Skipf("no sparse file of 1 TiB here: %v", err)
			}
		},
		level: zap.ErrorLevel, log: []string{"1099511627776 bytes, over the limit of 67108864 (stateFile.maxBytes)", "state.json"},
	}, {
		name:  "a valid state one byte over a set maxBytes is refused",
		cfg:   StateFileConfig{MaxBytes: -1}, // replaced by the file's size - 1 below
		setup: func(t *testing.T, path string) { saveAt(t, path, now.Add(-time.Minute), 5) },
		level: zap.ErrorLevel, log: []string{"over the limit of", "(stateFile.maxBytes)"},
	}, {
		name:  "not a regular file",
		setup: func(t *testing.T, path string) { os.Mkdir(path, 0o700) },
		level: zap.ErrorLevel, log: []string{"not a regular file", "state.json"},
	}, {
		name:  "no file",
		setup: func(t *testing.T, path string) {},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			c.setup(t, path)
			cfg := c.cfg
			cfg.Path = path
			if cfg.MaxBytes == -1 {
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				cfg.MaxBytes = fi.Size() - 1
			}
			core, logs := observer.New(zap.InfoLevel)
			a := New([]NamedSource{{Name: "src0", Source: newChanSource(), Reporter: sources.NewReporter("src0", nil)}},
				Settings{Output: opts(), StateFile: cfg}, newRecorder(), nil, zap.New(core))
			if got := a.restoreState(); got != c.restored {
				t.Fatalf("restored %v, want %v; logs: %v", got, c.restored, messages(logs))
			}
			if hosts := len(a.store.hosts); c.restored != (hosts == 1) {
				t.Errorf("%d hosts in the store after restoring %v", hosts, c.restored)
			}
			if c.log == nil {
				if n := logs.FilterLevelExact(zap.ErrorLevel).Len() + logs.FilterLevelExact(zap.WarnLevel).Len(); n != 0 {
					t.Errorf("want no warning or error, got %v", messages(logs))
				}
				return
			}
			found := false
			for _, e := range logs.FilterLevelExact(c.level).All() {
				line := e.Message + " " + fmt.Sprint(e.ContextMap())
				ok := true
				for _, want := range c.log {
					ok = ok && strings.Contains(line, want)
				}
				found = found || ok
			}
			if !found {
				t.Errorf("want a %s line containing %q, got %v", c.level, c.log, messages(logs))
			}
		})
	}
}

func messages(logs *observer.ObservedLogs) []string {
	var out []string
	for _, e := range logs.All() {
		out = append(out, e.Level.String()+": "+e.Message+" "+fmt.Sprint(e.ContextMap()))
	}
	return out
}

// TestStateFileReadStopsAtLimit: a file whose size stat does not tell (as in
// /proc) is read no further than maxBytes.
func TestStateFileReadStopsAtLimit(t *testing.T) {
	const proc = "/proc/self/maps" // size 0 to stat, several KiB to read
	if _, err := os.Stat(proc); err != nil {
		t.Skip("no /proc here")
	}
	path := filepath.Join(t.TempDir(), "state.json")
	if err := os.Symlink(proc, path); err != nil {
		t.Fatal(err)
	}
	_, err := loadState(path, 100)
	if err == nil || !strings.Contains(err.Error(), "more than the limit of 100 bytes") || !strings.Contains(err.Error(), path) {
		t.Fatalf("want the limit error naming %s, got %v", path, err)
	}
}

// TestStateFileAgeSurvivesRestarts: a restored state that no source has
// confirmed keeps its savedAt when it is written again, so that restarts
// while the registries are down cannot keep an old state young forever. Once
// every source has synced, the file carries the time of that state.
func TestStateFileAgeSurvivesRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	old := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	saveAt(t, path, old, 12)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}

	down := newChanSource()
	a, _, stop := runWithState(t, path, down)
	waitUntil(t, "serving the saved state", a.Ready)
	// Serving the restored state offers it to the writer, which writes it at
	// once (minInterval 1ms; a new file renamed over the old one): the file
	// must still say when it was saved.
	waitUntil(t, "the restored state written again", func() bool {
		fi, err := os.Stat(path)
		return err == nil && !os.SameFile(before, fi)
	})
	s, err := loadState(path, defaultStateMaxBytes)
	if err != nil || s == nil {
		t.Fatalf("state file after the restart: %v", err)
	}
	if !s.SavedAt.Equal(old) {
		t.Errorf("savedAt %v after writing the restored state again, want the original %v", s.SavedAt, old)
	}
	stop()
	if s, err = loadState(path, defaultStateMaxBytes); err != nil || !s.SavedAt.Equal(old) {
		t.Errorf("savedAt after shutdown with no source synced: %v (%v), want %v", s.SavedAt, err, old)
	}

	// Once the saved state is served, the registry answers with what was
	// saved: nothing changes, but the state is now confirmed, and current
	// from then on.
	up := newChanSource()
	a, _, stop = runWithState(t, path, up)
	defer stop()
	waitUntil(t, "serving the saved state", a.Ready)
	up.batches <- fleet(12)
	waitUntil(t, "a fresh savedAt", func() bool {
		s, err := loadState(path, defaultStateMaxBytes)
		return err == nil && s != nil && time.Since(s.SavedAt) < time.Hour && len(s.Sources["src0"]["web"][0].Instances) == 12
	})
}

// TestStateFileRefreshedWhileUnchanged: a state that does not change is
// written again every maxAge/4 (at least 1s), so that its age at the next
// start counts from when it was last served, not from when it last changed.
func TestStateFileRefreshedWhileUnchanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	src := newChanSource()
	pub := newRecorder()
	a := New([]NamedSource{{Name: "src0", Source: src, Reporter: sources.NewReporter("src0", nil)}},
		Settings{Output: opts(), Debounce: DebounceConfig{Quiet: time.Millisecond, Max: 5 * time.Millisecond},
			StateFile: StateFileConfig{Path: path, MinInterval: time.Millisecond, MaxAge: 2 * time.Second}},
		pub, nil, zaptest.NewLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	src.batches <- fleet(3)
	var first time.Time
	waitUntil(t, "state saved", func() bool {
		s, err := loadState(path, defaultStateMaxBytes)
		if err == nil && s != nil {
			first = s.SavedAt
		}
		return !first.IsZero()
	})
	waitUntil(t, "the unchanged state written again", func() bool {
		s, err := loadState(path, defaultStateMaxBytes)
		return err == nil && s != nil && s.SavedAt.After(first)
	})
}

// TestStateFileKeepsTrafficPolicy: a service's traffic policy survives the
// state file, so a restarted adapter serving its saved state serves the
// same DestinationRules and VirtualServices.
func TestStateFileKeepsTrafficPolicy(t *testing.T) {
	svc := model.Service{Name: "web", Host: "web.service.consul", Ports: []model.Port{{Number: 80, Protocol: model.ProtocolHTTP}},
		Instances: []model.Instance{{ID: "a", Address: "10.0.0.1", Labels: model.MakeLabels("version", "v1")}},
		Traffic: &model.Traffic{
			Subsets:        []model.Subset{{Name: "v1", Labels: model.MakeLabels("version", "v1")}, {Name: "all"}},
			LoadBalancer:   &model.LoadBalancer{Policy: model.LBRingHash, MinRingSize: 64, Hash: &model.HashKey{Kind: model.HashCookie, Name: "id", CookieGenerate: true, CookieTTL: time.Hour}},
			ConnectTimeout: 1500 * time.Millisecond,
			Routes: []model.Route{
				{Match: &model.HTTPMatch{Path: model.StringMatch{Kind: model.MatchPrefix, Value: "/a"}, Headers: []model.HeaderMatch{{Name: "x", Match: model.StringMatch{Kind: model.MatchPresent}, Invert: true}},
					Methods: []string{"GET"}},
					Destinations: []model.WeightedDestination{{Host: "a.service.consul", Subset: "v1", Weight: 9000, RequestHeaders: model.HeaderOps{Set: model.MakeLabels("k", "v")}}, {Host: "b", Weight: 1000}},
					Timeout:      time.Second, Retries: &model.Retries{Attempts: 2, On: []string{"5xx"}}, PrefixRewrite: "/",
					ResponseHeaders: model.HeaderOps{Remove: []string{"x-internal"}}},
				{Destinations: []model.WeightedDestination{{Host: "web.service.consul", Subset: "all"}}},
			},
		}}
	path := filepath.Join(t.TempDir(), "state.json")
	want := map[string]map[string][]model.Service{"src0": {"web": {svc}}}
	if err := writeState(path, &savedState{Format: stateFormat, Sources: want}, defaultStateMaxBytes); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(path, defaultStateMaxBytes)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Sources, want) {
		t.Errorf("state file changed the service:\n got %+v\nwant %+v", got.Sources["src0"]["web"][0].Traffic, svc.Traffic)
	}
}
