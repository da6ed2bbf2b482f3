package adapter

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

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
		s, err := loadState(path)
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
	waitUntil(t, "state rewritten", func() bool { s, err := loadState(path); return err == nil && s != nil })
}
