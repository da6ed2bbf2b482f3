package static

import (
	"context"
	"testing"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// TestRun: the whole list once, the status synced, then nothing until the
// context ends.
func TestRun(t *testing.T) {
	cfg := Config{Services: []Service{{Name: "web", Ports: []Port{{Number: 80}},
		Instances: []Instance{{Address: "10.0.0.1"}, {Address: "10.0.0.2"}}}}}
	cfg.SetDefaults()
	rep := sources.NewReporter("vms", nil)
	s, err := (&cfg).New(sources.Options{Name: "vms", Reporter: rep})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan []model.Group)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()
	batch := <-out
	if len(batch) != 1 || batch[0].Scope != "web" || len(batch[0].Services[0].Instances) != 2 {
		t.Fatalf("batch %+v", batch)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := rep.Status(); !st.Synced || st.Services != 1 || st.Instances != 2 {
		t.Fatalf("status %+v", st)
	}
	select {
	case b := <-out:
		t.Fatalf("second batch %+v", b)
	default:
	}
}
