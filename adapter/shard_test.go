package adapter

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
	"github.com/registry-adapter/registry-adapter/sources"
)

func TestShardOfIsStableAndSpreads(t *testing.T) {
	counts := make([]int, 4)
	for i := range 4000 {
		host := fmt.Sprintf("svc-%d.example.com", i)
		s := ShardOf(host, 4)
		if s != ShardOf(host, 4) {
			t.Fatalf("%s: shard changed between calls", host)
		}
		counts[s]++
	}
	for i, n := range counts {
		// A uniform hash puts 1000 ± ~30 in each; 800 catches a broken one.
		if n < 800 {
			t.Errorf("shard %d got %d of 4000 hosts: %v", i, n, counts)
		}
	}
	if ShardOf("a.example.com", 1) != 0 || ShardOf("a.example.com", 0) != 0 {
		t.Error("one shard must be shard 0")
	}
}

// TestShardedAdapterRoutesByHost runs enough hosts through a sharded adapter
// to take the parallel conversion path, and checks that every resource lands
// in its host's shard only, the union is what one publisher gets, and a
// deletion reaches the shard that holds the host.
func TestShardedAdapterRoutesByHost(t *testing.T) {
	const k, n = 3, 2 * parallelFrom
	var groups []model.Group
	for i := range n {
		s := svc(fmt.Sprintf("svc-%03d", i), fmt.Sprintf("10.0.%d.%d", i/200, i%200+1))
		groups = append(groups, group(s))
	}
	run := func(shards int) ([]*recordingPublisher, *chanSource) {
		src := newChanSource()
		pubs := make([]*recordingPublisher, shards)
		ps := make([]Publisher, shards)
		for i := range pubs {
			pubs[i] = newRecorder()
			ps[i] = pubs[i]
		}
		named := []NamedSource{{Name: "src", Source: src, Reporter: sources.NewReporter("src", nil)}}
		a := NewSharded(named, Settings{Output: opts(), Debounce: DebounceConfig{Quiet: time.Millisecond, Max: time.Millisecond}}, ps, nil, zaptest.NewLogger(t))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			<-done
		})
		src.batches <- groups
		waitUntil(t, "ready", a.Ready)
		return pubs, src
	}

	single, _ := run(1)
	want := single[0].names(served.KindServiceEntry)
	if len(want) != n {
		t.Fatalf("one publisher got %d ServiceEntries, want %d", len(want), n)
	}

	sharded, src := run(k)
	var union []string
	for i, p := range sharded {
		names := p.names(served.KindServiceEntry)
		if len(names) == 0 {
			t.Errorf("shard %d is empty", i)
		}
		for _, name := range names {
			host := name[len(convert.DefaultNamespace+"/"):]
			if got := ShardOf(host, k); got != i {
				t.Errorf("%s served by shard %d, belongs to %d", name, i, got)
			}
		}
		if !p.Ready() {
			t.Errorf("shard %d not marked ready", i)
		}
		union = append(union, names...)
	}
	slices.Sort(union)
	if !slices.Equal(union, want) {
		t.Errorf("the shards' union differs from one publisher's set: %d vs %d names", len(union), len(want))
	}

	gone := groups[7]
	owner := sharded[ShardOf(gone.Services[0].Host, k)]
	src.batches <- []model.Group{{Scope: gone.Scope}}
	waitUntil(t, "deletion reaches the owning shard", func() bool {
		return !slices.Contains(owner.names(served.KindServiceEntry), convert.DefaultNamespace+"/"+gone.Services[0].Host)
	})
}
