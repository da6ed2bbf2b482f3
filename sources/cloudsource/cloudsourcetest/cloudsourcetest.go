// Package cloudsourcetest is what the tests of the cloud sources share:
// running a source and taking its batches, comparing groups, waiting for a
// fake API's lists without sleeping, and reading a metric.
package cloudsourcetest

import (
	"context"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap/zaptest"
	"go.yaml.in/yaml/v3"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// Options are Start's; all are optional.
type Options struct {
	// Buffer is the capacity of the batch channel: with 0, the source
	// waits for the test to take each batch.
	Buffer int
	// Reporter is the source's: its status is shown when a wait fails.
	Reporter *sources.Reporter
	// Registry holds the source's metrics, for Metric.
	Registry *prometheus.Registry
}

// Running is a source started by Start.
type Running struct {
	Options
	out chan []model.Group
}

// Start runs s until the test ends, when it checks that Run returns
// without an error.
func Start(t *testing.T, s sources.Source, o Options) *Running {
	t.Helper()
	r := &Running{Options: o, out: make(chan []model.Group, o.Buffer)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, r.out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return r
}

// status is the source's status, for failure messages.
// StartNew makes a source with newSource (its package's New over the
// test's configuration) under name, with a test logger, a reporter and a
// registry of its own, lets tune adjust it (a fast schedule, test clients),
// and runs it until the test ends (Start, with a buffer of 100 batches).
func StartNew[S sources.Source](t *testing.T, name string, newSource func(sources.Options) (S, error),
	tune func(S, sources.Options),
) *Running {
	t.Helper()
	reg := prometheus.NewRegistry()
	rep := sources.NewReporter(name, sources.NewMetrics(reg))
	opts := sources.Options{Name: name, Logger: zaptest.NewLogger(t), Reporter: rep, Registerer: reg}
	src, err := newSource(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tune(src, opts)
	return Start(t, src, Options{Buffer: 100, Reporter: rep, Registry: reg})
}

func (r *Running) status() any {
	if r.Reporter == nil {
		return "(no reporter)"
	}
	return r.Reporter.Status()
}

// Next waits for the next batch and returns it sorted by scope.
func (r *Running) Next(t *testing.T) []model.Group {
	t.Helper()
	select {
	case b := <-r.out:
		slices.SortFunc(b, func(a, b model.Group) int { return strings.Compare(a.Scope, b.Scope) })
		return b
	case <-time.After(20 * time.Second):
		t.Fatalf("no batch within 20s; status %+v", r.status())
		return nil
	}
}

// None asserts that no batch is waiting.
func (r *Running) None(t *testing.T) {
	t.Helper()
	select {
	case b := <-r.out:
		t.Fatalf("unexpected batch %+v", b)
	default:
	}
}

// WaitFor polls cond (a condition on the source's status and metrics, not
// on time) until it holds.
func (r *Running) WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; status %+v", what, r.status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Metric returns the value of the counter or gauge of Registry with this
// name and these labels (0 when absent).
func (r *Running) Metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if !hasLabel(m, k, v) {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

// AssertGroups reports got and want when they differ.
func AssertGroups(t *testing.T, got, want []model.Group) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("groups differ\n got: %+v\nwant: %+v", got, want)
	}
}

// ListStarts counts the lists a fake API saw start, so that a test can wait
// for a source's next lists without sleeping. The zero value is ready; its
// methods are safe for concurrent use.
type ListStarts struct {
	mu     sync.Mutex
	n      int
	notify chan struct{} // closed and replaced on every start
}

// Start records a list start (a first-page request).
func (l *ListStarts) Start() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	if l.notify != nil {
		close(l.notify)
	}
	l.notify = make(chan struct{})
}

// Now returns the number of list starts so far.
func (l *ListStarts) Now() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// Wait waits until n more lists have started than at baseline.
func (l *ListStarts) Wait(t *testing.T, baseline, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		l.mu.Lock()
		done := l.n >= baseline+n
		if l.notify == nil {
			l.notify = make(chan struct{})
		}
		ch := l.notify
		l.mu.Unlock()
		if done {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("fewer than %d lists started", n)
		}
	}
}

// READMEConfig decodes the configuration example of the package's
// README.md (its first yaml block) strictly, as the adapter does, and
// returns the first source's configuration under key, with its defaults
// filled in and validated: the documented keys stay the real ones.
func READMEConfig[C any, P interface {
	*C
	SetDefaults()
	Validate() error
}](t *testing.T, key string) P {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(b), "```yaml\n")
	block, _, _ := strings.Cut(rest, "```")
	// sources: [{name: ..., <key>: {...}}], with no other key.
	entry := reflect.StructOf([]reflect.StructField{
		{Name: "Name", Type: reflect.TypeFor[string](), Tag: `yaml:"name"`},
		{Name: "Config", Type: reflect.TypeFor[P](), Tag: reflect.StructTag(`yaml:"` + key + `"`)},
	})
	doc := reflect.New(reflect.StructOf([]reflect.StructField{
		{Name: "Sources", Type: reflect.SliceOf(entry), Tag: `yaml:"sources"`},
	}))
	dec := yaml.NewDecoder(strings.NewReader(block))
	dec.KnownFields(true)
	if err := dec.Decode(doc.Interface()); err != nil {
		t.Fatal(err)
	}
	list := doc.Elem().Field(0)
	if list.Len() == 0 || list.Index(0).Field(1).IsNil() {
		t.Fatalf("README.md's example has no %s source", key)
	}
	c := list.Index(0).Field(1).Interface().(P)
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}
