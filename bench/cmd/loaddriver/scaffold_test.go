package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeScenario records the steps runScenario calls; fail names the step
// that returns boom, block the step that waits for its ctx to end (after
// calling onBlock, if set).
type fakeScenario struct {
	calls   []string
	fail    string
	block   string
	onBlock func()
	ctxs    map[string]context.Context
}

var boom = errors.New("boom")

func (f *fakeScenario) step(ctx context.Context, name string) error {
	f.calls = append(f.calls, name)
	if f.ctxs == nil {
		f.ctxs = map[string]context.Context{}
	}
	f.ctxs[name] = ctx
	if f.block == name {
		if f.onBlock != nil {
			f.onBlock()
		}
		<-ctx.Done()
		return context.Cause(ctx)
	}
	if f.fail == name {
		return boom
	}
	return nil
}

func (f *fakeScenario) start(ctx context.Context) error   { return f.step(ctx, "start") }
func (f *fakeScenario) ready(ctx context.Context) error   { return f.step(ctx, "ready") }
func (f *fakeScenario) measure(ctx context.Context) error { return f.step(ctx, "measure") }
func (f *fakeScenario) stop()                             { f.calls = append(f.calls, "stop") }

func TestRunScenario(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fail      string
		calls     []string
		wantErr   string // substring; "" is no error
		wantIsErr error
	}{
		{"every step", "", []string{"start", "ready", "measure", "stop"}, "", nil},
		{"start fails", "start", []string{"start", "stop"}, "N=1000 K=4: start: boom", boom},
		{"ready fails", "ready", []string{"start", "ready", "stop"}, "N=1000 K=4: ready: boom", boom},
		{"measure fails", "measure", []string{"start", "ready", "measure", "stop"}, "N=1000 K=4: measure: boom", boom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeScenario{fail: tc.fail}
			err := runScenario(context.Background(), "N=1000 K=4", time.Minute, f)
			if !slices.Equal(f.calls, tc.calls) {
				t.Errorf("calls %v, want %v", f.calls, tc.calls)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr || !errors.Is(err, tc.wantIsErr) {
				t.Errorf("error %v, want %q wrapping %v", err, tc.wantErr, tc.wantIsErr)
			}
		})
	}
}

// ready gets a deadline of readyTimeout; a scenario that is not ready by
// then fails with the scenario's name and the limit, and measure never runs.
func TestRunScenarioReadyDeadline(t *testing.T) {
	f := &fakeScenario{block: "ready"}
	err := runScenario(context.Background(), "1000 services, https", 20*time.Millisecond, f)
	if err == nil || !strings.HasPrefix(err.Error(), "1000 services, https: ready: not ready after 20ms") {
		t.Errorf("error %v, want the name, the step and the limit", err)
	}
	if want := []string{"start", "ready", "stop"}; !slices.Equal(f.calls, want) {
		t.Errorf("calls %v, want %v", f.calls, want)
	}
	if _, ok := f.ctxs["ready"].Deadline(); !ok {
		t.Error("ready's ctx has no deadline")
	}
}

// A cancelled ctx (SIGINT in a family of cases) stops the sequence: nothing
// starts when it is cancelled before, a running step sees it, no later
// step runs, and what started is stopped.
func TestRunScenarioCancel(t *testing.T) {
	t.Run("before start", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		f := &fakeScenario{}
		err := runScenario(ctx, "N=10000 inline", time.Minute, f)
		if len(f.calls) != 0 {
			t.Errorf("calls %v, want none", f.calls)
		}
		if err == nil || !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "N=10000 inline: ") {
			t.Errorf("error %v, want the name and context.Canceled", err)
		}
	})
	for _, step := range []string{"start", "ready", "measure"} {
		t.Run("during "+step, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			f := &fakeScenario{block: step, onBlock: cancel}
			err := runScenario(ctx, "N=10000 inline", time.Minute, f)
			want := append(slices.Clone(f.calls[:len(f.calls)-1]), "stop")
			if f.calls[len(f.calls)-2] != step || !slices.Equal(f.calls, want) {
				t.Errorf("calls %v, want every step up to %s, then stop", f.calls, step)
			}
			if err == nil || !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "N=10000 inline: "+step+": ") {
				t.Errorf("error %v, want the name, the step and context.Canceled", err)
			}
		})
	}
	// Cancelled between ready and measure: measure does not run.
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeScenario{}
	s := &cancelAfterReady{fakeScenario: f, cancel: cancel}
	err := runScenario(ctx, "x", time.Minute, s)
	if want := []string{"start", "ready", "stop"}; !slices.Equal(f.calls, want) || !errors.Is(err, context.Canceled) {
		t.Errorf("calls %v, error %v; want %v and context.Canceled", f.calls, err, want)
	}
}

type cancelAfterReady struct {
	*fakeScenario
	cancel context.CancelFunc
}

func (c *cancelAfterReady) ready(ctx context.Context) error {
	err := c.fakeScenario.ready(ctx)
	c.cancel()
	return err
}

// fakeChild answers the child's protocol over pipes: "start" with T0, and
// "stats" with Ready once readyAfter stats have been asked (never if < 0).
func fakeChild(t *testing.T, readyAfter int) (*childProc, *int) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	asked := new(int)
	go func() {
		dec, enc := json.NewDecoder(inR), json.NewEncoder(outW)
		for {
			var c command
			if err := dec.Decode(&c); err != nil {
				outW.CloseWithError(err)
				return
			}
			var r reply
			switch c.Op {
			case "start":
				r.T0 = 1000
			case "stats":
				*asked++
				r.Stats = &stats{Ready: readyAfter >= 0 && *asked >= readyAfter, ReadyAt: 1000 + int64(*asked)}
			default:
				r.Err = "unknown op " + c.Op
			}
			if err := enc.Encode(r); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { inW.Close(); outR.Close() })
	return &childProc{in: inW, dec: json.NewDecoder(outR)}, asked
}

func TestStartReady(t *testing.T) {
	child, asked := fakeChild(t, 3)
	sync, err := adapterReady(context.Background(), child)
	if err != nil {
		t.Fatal(err)
	}
	if *asked != 3 || sync != 3 {
		t.Errorf("ready after %d polls, sync %d; want 3 and ReadyAt-T0 = 3", *asked, sync)
	}

	child, _ = fakeChild(t, -1)
	ctx, cancel := context.WithTimeoutCause(context.Background(), 50*time.Millisecond, errors.New("not ready after 50ms"))
	defer cancel()
	_, err = adapterReady(ctx, child)
	if err == nil || err.Error() != "adapter child not ready after 50ms" {
		t.Errorf("error %v, want the child not ready after the limit", err)
	}
}

func TestMeshConfigAndArgs(t *testing.T) {
	want := "rootNamespace: istio-system\ntrustDomain: cluster.local\nconfigSources:\n- address: xds://127.0.0.1:1\n- address: xds://127.0.0.1:2\n"
	if got := meshConfig("127.0.0.1:1", "127.0.0.1:2"); got != want {
		t.Errorf("meshConfig:\n%s\nwant\n%s", got, want)
	}
	path, err := writeMesh(t.TempDir(), "mesh.yaml", "127.0.0.1:1", "127.0.0.1:2")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(path, "/mesh.yaml") {
		t.Errorf("path %s", path)
	}
	o := options{quiet: 100 * time.Millisecond, max: time.Second}
	got := strings.Join(adapterArgs(o, "inline", 1000, "-shards", "4"), " ")
	if want := "-mode inline -services 1000 -quiet 100ms -max 1s -shards 4"; got != want {
		t.Errorf("adapterArgs %q, want %q", got, want)
	}
}

// A family of cases: every case runs even after one fails, each is followed
// by after (istiod stopped) and a load average, the table is rendered with
// the load averages and a line per failed case follows it; once ctx is
// cancelled (SIGINT) no further case starts, and what was measured is still
// rendered.
func TestRunCases(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cancelAt  int // case that cancels ctx (-1: none)
		failAt    int // case that fails (-1: none)
		ran       []int
		lines     []string
		wantErr   string
		loadCount int
	}{
		{"all pass", -1, -1, []int{0, 1, 2}, []string{"table of 0 1 2 over 4 loads"}, "", 4},
		{"one fails", -1, 1, []int{0, 1, 2}, []string{"table of 0 2 over 4 loads", "- failed: N=1 boom"}, "1 of 3 runs failed", 4},
		{"interrupted", 0, -1, []int{0}, []string{"table of 0 over 2 loads"}, "interrupted", 2},
		{"interrupted in a failing case", 1, 1, []int{0, 1}, []string{"table of 0 over 3 loads", "- failed: N=1 boom"}, "interrupted", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var ran, ok []int
			var afters, loads int
			lines, err := runCases(ctx, "test", 3, func(ctx context.Context, i int) error {
				ran = append(ran, i)
				if i == tc.cancelAt {
					cancel()
				}
				if i == tc.failAt {
					return fmt.Errorf("N=%d boom", i)
				}
				ok = append(ok, i)
				return nil
			}, func() { afters++ }, func() string { loads++; return fmt.Sprint(loads) }, func(l []string) []string {
				return []string{fmt.Sprintf("table of %s over %d loads", strings.Trim(fmt.Sprint(ok), "[]"), len(l))}
			})
			if !slices.Equal(ran, tc.ran) || afters != len(tc.ran) || loads != tc.loadCount {
				t.Errorf("ran %v with %d afters and %d load averages; want %v, %d, %d", ran, afters, loads, tc.ran, len(tc.ran), tc.loadCount)
			}
			if !slices.Equal(lines, tc.lines) {
				t.Errorf("lines %q, want %q", lines, tc.lines)
			}
			if (err == nil) != (tc.wantErr == "") || (err != nil && err.Error() != tc.wantErr) {
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}
