package poll

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type step struct {
	groups []model.Group
	err    error
}

// scripted returns each step's answer once, then blocks until ctx ends.
func scripted(steps []step, calls chan<- int) Lister {
	i := 0
	return ListerFunc(func(ctx context.Context) ([]model.Group, error) {
		if i >= len(steps) {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		s := steps[i]
		i++
		calls <- i
		return s.groups, s.err
	})
}

func g(scope string, addrs ...string) model.Group {
	svc := model.Service{Name: scope, Host: scope + ".example.com"}
	for _, a := range addrs {
		svc.Instances = append(svc.Instances, model.Instance{ID: a, Address: a})
	}
	return model.Group{Scope: scope, Services: []model.Service{svc}}
}

func TestPollSendsOnlyChangesAndNeverErrors(t *testing.T) {
	calls := make(chan int, 100)
	steps := []step{
		{groups: []model.Group{g("web", "10.0.0.1"), g("db", "10.0.1.1")}},
		{groups: []model.Group{g("web", "10.0.0.1"), g("db", "10.0.1.1")}}, // unchanged: nothing sent
		{err: errors.New("500 internal error")},                            // error: nothing sent, no deletion
		{err: &ThrottledError{Err: errors.New("RequestLimitExceeded")}},
		{groups: []model.Group{g("web", "10.0.0.1", "10.0.0.2")}}, // web changed, db gone
	}
	rep := sources.NewReporter("aws", nil)
	s := New(Config{RefreshInterval: time.Millisecond, Timeout: time.Second, MaxBackoff: time.Millisecond},
		scripted(steps, calls), sources.Options{Name: "aws", Logger: zaptest.NewLogger(t), Reporter: rep})
	out := make(chan []model.Group)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	recv := func() []model.Group {
		t.Helper()
		select {
		case b := <-out:
			return b
		case <-time.After(10 * time.Second):
			t.Fatal("no batch")
			return nil
		}
	}
	first := recv()
	if len(first) != 2 {
		t.Fatalf("first batch has %d groups, want the full state (2)", len(first))
	}
	// The next batch is the one after the errors: only what changed.
	second := recv()
	got := map[string]int{}
	for _, grp := range second {
		n := 0
		for _, svc := range grp.Services {
			n += len(svc.Instances)
		}
		got[grp.Scope] = n
	}
	if fmt.Sprint(got) != "map[db:0 web:2]" {
		t.Errorf("second batch %v, want web changed and db removed", got)
	}
	// By then all five lists ran: the unchanged one and the two errors sent nothing.
	if n := len(calls); n != 5 {
		t.Errorf("%d lists, want 5", n)
	}
	st := rep.Status()
	if !st.Synced || st.Stale || st.LastError == "" || st.Services != 1 || st.Instances != 2 {
		t.Errorf("status %+v", st)
	}
}

func TestBackoff(t *testing.T) {
	s := New(Config{RefreshInterval: 30 * time.Second, Timeout: time.Minute, MaxBackoff: 5 * time.Minute}, nil,
		sources.Options{Logger: zaptest.NewLogger(t), Reporter: sources.NewReporter("x", nil)})
	s.jitter = func(time.Duration) time.Duration { return 0 }
	cases := []struct {
		failures int
		err      error
		want     time.Duration
	}{
		{1, errors.New("x"), 3 * time.Second},
		{2, errors.New("x"), 6 * time.Second},
		{5, errors.New("x"), 48 * time.Second},
		{50, errors.New("x"), 5 * time.Minute},
		{1, &ThrottledError{Err: errors.New("429"), RetryAfter: 20 * time.Second}, 20 * time.Second},
		{1, &ThrottledError{Err: errors.New("429")}, 3 * time.Second},
	}
	for _, c := range cases {
		if got := s.backoff(c.failures, c.err); got != c.want {
			t.Errorf("backoff(%d, %v) = %s, want %s", c.failures, c.err, got, c.want)
		}
	}
	for err, want := range map[error]string{
		errors.New("boom"): "api",
		fmt.Errorf("list: %w", &ThrottledError{Err: errors.New("x")}): "throttled",
		fmt.Errorf("list: %w", context.DeadlineExceeded):              "timeout",
	} {
		if got := ErrorKind(err); got != want {
			t.Errorf("ErrorKind(%v) = %s, want %s", err, got, want)
		}
	}
}

// TestBackoffCapsRetryAfter: a Retry-After beyond maxBackoff waits
// maxBackoff (plus its jitter), not what the API asked.
func TestBackoffCapsRetryAfter(t *testing.T) {
	s := New(Config{RefreshInterval: time.Second, Timeout: time.Second, MaxBackoff: 5 * time.Minute}, nil, sources.Options{})
	s.jitter = func(time.Duration) time.Duration { return 0 }
	for _, ra := range []time.Duration{time.Hour, math.MaxInt64} {
		if got := s.backoff(1, &ThrottledError{Err: errors.New("slow down"), RetryAfter: ra}); got != 5*time.Minute {
			t.Errorf("Retry-After %v: wait %v, want 5m", ra, got)
		}
	}
	if got := s.backoff(1, &ThrottledError{Err: errors.New("slow down"), RetryAfter: 90 * time.Second}); got != 90*time.Second {
		t.Errorf("Retry-After 90s: wait %v", got)
	}
}

// A deliberate panic in the lister's mapping of one answer: recovered,
// counted as a failed list of kind "panic" and logged with its stack; the
// last good state stays (nothing sent), and the next list flows.
func TestPollRecoversAPanicInTheLister(t *testing.T) {
	calls := make(chan int, 100)
	i := 0
	lister := ListerFunc(func(ctx context.Context) ([]model.Group, error) {
		i++
		calls <- i
		switch i {
		case 1:
			return []model.Group{g("web", "10.0.0.1")}, nil
		case 2:
			var m map[string]int
			m["web"]++ // a nil map write in the mapping
		case 3:
			return []model.Group{g("web", "10.0.0.1", "10.0.0.2")}, nil
		}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	reg := prometheus.NewRegistry()
	rep := sources.NewReporter("aws", sources.NewMetrics(reg))
	core, logs := observer.New(zap.WarnLevel)
	s := New(Config{RefreshInterval: time.Millisecond, Timeout: time.Second, MaxBackoff: time.Millisecond},
		lister, sources.Options{Name: "aws", Logger: zap.New(core), Reporter: rep})
	out := make(chan []model.Group)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	recv := func() []model.Group {
		t.Helper()
		select {
		case b := <-out:
			return b
		case <-time.After(10 * time.Second):
			t.Fatal("no batch")
			return nil
		}
	}
	if b := recv(); len(b) != 1 || len(b[0].Services[0].Instances) != 1 {
		t.Fatalf("first batch %+v", b)
	}
	// The list after the panic is sent: the source kept running.
	if b := recv(); len(b) != 1 || len(b[0].Services[0].Instances) != 2 {
		t.Fatalf("batch after the panic %+v", b)
	}
	es := logs.FilterMessage("list failed; keeping the last good state").All()
	if len(es) != 1 || es[0].ContextMap()["kind"] != "panic" ||
		!strings.Contains(fmt.Sprint(es[0].ContextMap()["stack"]), "poll_test.go") {
		t.Fatalf("want one warning of kind panic with its stack; got %v", logs.All())
	}
	n, err := testutil.GatherAndCount(reg, "registry_adapter_source_errors_total")
	if err != nil || n != 1 {
		t.Errorf("errors_total series: %d, %v", n, err)
	}
	if st := rep.Status(); st.Stale || !strings.Contains(st.LastError, "panic in listing the registry: assignment to entry in nil map") {
		t.Errorf("status %+v: want the panic as the last error, and not stale after the next list", st)
	}
}
