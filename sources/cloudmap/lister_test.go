package cloudmap

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sd "github.com/aws/aws-sdk-go-v2/service/servicediscovery"
	"github.com/aws/aws-sdk-go-v2/service/servicediscovery/types"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

// fakeAPI is a scripted Cloud Map for the lister's own logic.
type fakeAPI struct {
	services  []types.ServiceSummary
	instances map[string][]types.HttpInstanceSummary
	revision  map[string]int64
	notFound  map[string]bool
	// panics: ListInstances panics for these services (an SDK bug).
	panics map[string]bool
	// servicePages splits ListServices into pages of one; badToken repeats
	// the first token.
	servicePages, badToken bool

	mu    sync.Mutex // the lister reads services concurrently
	calls map[string]int
}

func (f *fakeAPI) count(op string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[op]++
}

func (f *fakeAPI) ListNamespaces(_ context.Context, _ *sd.ListNamespacesInput, _ ...func(*sd.Options)) (*sd.ListNamespacesOutput, error) {
	f.count("ListNamespaces")
	return &sd.ListNamespacesOutput{Namespaces: []types.NamespaceSummary{{Name: aws.String("ns"), Id: aws.String("ns-1")}}}, nil
}

func (f *fakeAPI) ListServices(_ context.Context, in *sd.ListServicesInput, _ ...func(*sd.Options)) (*sd.ListServicesOutput, error) {
	f.count("ListServices")
	if !f.servicePages {
		return &sd.ListServicesOutput{Services: f.services}, nil
	}
	i := 0
	if in.NextToken != nil {
		fmt.Sscan(*in.NextToken, &i)
	}
	out := &sd.ListServicesOutput{Services: f.services[i : i+1]}
	if i+1 < len(f.services) {
		next := i + 1
		if f.badToken {
			next = 1
		}
		out.NextToken = aws.String(fmt.Sprint(next))
	}
	return out, nil
}

// page returns the page of n items that token (an offset) starts, and the
// next token, the way moto does; badToken makes it repeat the first token.
func (f *fakeAPI) page(n int, token *string, max *int32) (lo, hi int, next *string) {
	if token != nil {
		fmt.Sscan(*token, &lo)
	}
	hi = min(lo+int(aws.ToInt32(max)), n)
	if max == nil {
		hi = n
	}
	if hi < n {
		t := hi
		if f.badToken {
			t = int(aws.ToInt32(max))
		}
		next = aws.String(fmt.Sprint(t))
	}
	return lo, hi, next
}

// ListInstances takes the service's name as its ID (svc sets Id = Name).
func (f *fakeAPI) ListInstances(_ context.Context, in *sd.ListInstancesInput, _ ...func(*sd.Options)) (*sd.ListInstancesOutput, error) {
	f.count("ListInstances")
	name := aws.ToString(in.ServiceId)
	if f.panics[name] {
		var m map[string]int
		m[name]++
	}
	if f.notFound[name] {
		return nil, &types.ServiceNotFound{Message: aws.String("gone")}
	}
	all := f.instances[name]
	lo, hi, next := f.page(len(all), in.NextToken, in.MaxResults)
	out := &sd.ListInstancesOutput{NextToken: next}
	for _, i := range all[lo:hi] {
		out.Instances = append(out.Instances, types.InstanceSummary{Id: i.InstanceId, Attributes: i.Attributes})
	}
	return out, nil
}

func (f *fakeAPI) GetInstancesHealthStatus(_ context.Context, in *sd.GetInstancesHealthStatusInput, _ ...func(*sd.Options)) (*sd.GetInstancesHealthStatusOutput, error) {
	f.count("GetInstancesHealthStatus")
	all := f.instances[aws.ToString(in.ServiceId)]
	lo, hi, next := f.page(len(all), in.NextToken, in.MaxResults)
	out := &sd.GetInstancesHealthStatusOutput{NextToken: next, Status: map[string]types.HealthStatus{}}
	for _, i := range all[lo:hi] {
		if i.HealthStatus != "" {
			out.Status[aws.ToString(i.InstanceId)] = i.HealthStatus
		}
	}
	return out, nil
}

func (f *fakeAPI) DiscoverInstancesRevision(_ context.Context, in *sd.DiscoverInstancesRevisionInput, _ ...func(*sd.Options)) (*sd.DiscoverInstancesRevisionOutput, error) {
	f.count("DiscoverInstancesRevision")
	return &sd.DiscoverInstancesRevisionOutput{InstancesRevision: aws.Int64(f.revision[aws.ToString(in.ServiceName)])}, nil
}

func newFakeLister(t *testing.T, f *fakeAPI, now *time.Time) *lister {
	t.Helper()
	cfg := Config{Region: "us-east-1", Namespace: "ns"}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m, err := newMapper(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &lister{cfg: &cfg, mapper: m, metrics: newMetrics("t"), log: zap.NewNop(), Client: cloudsource.ReadyClient[cloudMapAPI](f),
		now: func() time.Time { return *now }}
}

func svc(name string) types.ServiceSummary {
	return types.ServiceSummary{Name: aws.String(name), Id: aws.String(name)}
}

func inst(id, ip string) types.HttpInstanceSummary {
	return types.HttpInstanceSummary{InstanceId: aws.String(id), Attributes: map[string]string{AttrIPv4: ip, AttrPort: "80"}}
}

func TestRevisionAndFullResync(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := &fakeAPI{
		services:  []types.ServiceSummary{svc("web")},
		instances: map[string][]types.HttpInstanceSummary{"web": {inst("a", "10.0.0.1")}},
		revision:  map[string]int64{"web": 7},
	}
	l := newFakeLister(t, f, &now)
	list := func() []model.Group {
		t.Helper()
		g, err := l.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	first := list()
	if len(first) != 1 || f.calls["ListInstances"] != 1 {
		t.Fatalf("first list: %+v, calls %v", first, f.calls)
	}
	// Same revision: the cache, even though the fake's content changed
	// (a revision is trusted until fullResync).
	f.instances["web"] = append(f.instances["web"], inst("b", "10.0.0.2"))
	now = now.Add(time.Minute)
	if g := list(); len(g[0].Services[0].Instances) != 1 || f.calls["ListInstances"] != 1 || f.calls["DiscoverInstancesRevision"] != 2 {
		t.Fatalf("unchanged revision: %+v, calls %v", g, f.calls)
	}
	// fullResync after the last full read: read in full.
	now = now.Add(DefaultFullResync)
	if g := list(); len(g[0].Services[0].Instances) != 2 || f.calls["ListInstances"] != 2 {
		t.Fatalf("full resync: %+v, calls %v", g, f.calls)
	}
	// A new revision: read in full.
	f.instances["web"] = f.instances["web"][:1]
	f.revision["web"] = 8
	now = now.Add(time.Minute)
	if g := list(); len(g[0].Services[0].Instances) != 1 || f.calls["ListInstances"] != 3 {
		t.Fatalf("new revision: %+v, calls %v", g, f.calls)
	}
	// A health-checked service is always read in full.
	f.services[0].HealthCheckCustomConfig = &types.HealthCheckCustomConfig{}
	list()
	list()
	if f.calls["ListInstances"] != 5 || f.calls["GetInstancesHealthStatus"] != 2 {
		t.Fatalf("health-checked: calls %v", f.calls)
	}
}

func TestListEdgeCases(t *testing.T) {
	now := time.Now()
	// A service deleted between ListServices and ListInstances is
	// dropped, not an error; pages of ListServices are followed.
	f := &fakeAPI{
		services:     []types.ServiceSummary{svc("a"), svc("b"), svc("c")},
		instances:    map[string][]types.HttpInstanceSummary{"a": {inst("1", "10.0.0.1")}, "c": {inst("3", "10.0.0.3")}},
		notFound:     map[string]bool{"b": true},
		servicePages: true,
	}
	g, err := newFakeLister(t, f, &now).List(context.Background())
	if err != nil || len(g) != 2 || g[0].Scope != "a" || g[1].Scope != "c" || f.calls["ListServices"] != 3 {
		t.Fatalf("groups %+v err %v calls %v", g, err, f.calls)
	}
	// A repeated NextToken fails the list.
	f.badToken = true
	if _, err := newFakeLister(t, f, &now).List(context.Background()); err == nil || !strings.Contains(err.Error(), "NextToken repeated") {
		t.Fatalf("repeated token: %v", err)
	}
}

// A panic in one service's worker (an SDK bug, a mapping bug) is the list's
// error, naming the service, instead of ending the process: the poll loop
// then keeps the last good state and lists again after its backoff.
func TestWorkerPanicFailsTheList(t *testing.T) {
	now := time.Now()
	f := &fakeAPI{
		services:  []types.ServiceSummary{svc("a"), svc("b")},
		instances: map[string][]types.HttpInstanceSummary{"a": {inst("1", "10.0.0.1")}, "b": {inst("2", "10.0.0.2")}},
		panics:    map[string]bool{"b": true},
	}
	l := newFakeLister(t, f, &now)
	_, err := l.List(context.Background())
	var pe *sources.PanicError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), `panic in reading Cloud Map service "b"`) || poll.ErrorKind(err) != "panic" {
		t.Fatalf("List: %v; want the worker's panic", err)
	}
	delete(f.panics, "b")
	if g, err := l.List(context.Background()); err != nil || len(g) != 2 {
		t.Fatalf("the next list: %+v, %v", g, err)
	}
}

// TestListInstancesPages: every page of ListInstances and of
// GetInstancesHealthStatus is read, one request per page; an instance is
// in the batch once, with the health its page of GetInstancesHealthStatus
// gives (UNHEALTHY: critical, which convert never serves; missing: unknown,
// served); queryParameters filter on the client.
func TestListInstancesPages(t *testing.T) {
	for _, tc := range []struct {
		name          string
		n             int
		healthChecked bool
		query         map[string]string
		wantPages     int
	}{
		{name: "empty", n: 0, wantPages: 1},
		{name: "one page", n: pageSize, healthChecked: true, wantPages: 1},
		{name: "one more than a page", n: pageSize + 1, healthChecked: true, wantPages: 2},
		{name: "past DiscoverInstances' 1000", n: 2500, healthChecked: true, wantPages: 25},
		{name: "no health check", n: 2500, wantPages: 25},
		{name: "query parameters", n: 1001, healthChecked: true, query: map[string]string{"tier": "even"}, wantPages: 11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			s := svc("big")
			if tc.healthChecked {
				s.HealthCheckCustomConfig = &types.HealthCheckCustomConfig{}
			}
			f := &fakeAPI{services: []types.ServiceSummary{s}, instances: map[string][]types.HttpInstanceSummary{}}
			want := map[string]model.Health{}
			for i := range tc.n {
				in := inst(fmt.Sprintf("i-%05d", i), fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
				in.Attributes["tier"] = []string{"even", "odd"}[i%2]
				// Every third unhealthy, every seventh not reported yet.
				h := model.HealthPassing
				switch {
				case i%3 == 0:
					in.HealthStatus = types.HealthStatusUnhealthy
					h = model.HealthCritical
				case i%7 == 0:
					h = model.HealthUnknown
				default:
					in.HealthStatus = types.HealthStatusHealthy
				}
				if !tc.healthChecked {
					h = model.HealthPassing
				}
				filtered := tc.query != nil && in.Attributes["tier"] != tc.query["tier"]
				if !filtered {
					want[aws.ToString(in.InstanceId)] = h
				}
				f.instances["big"] = append(f.instances["big"], in)
			}
			l := newFakeLister(t, f, &now)
			l.cfg.QueryParameters = tc.query
			groups, err := l.List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]model.Health{}
			for _, g := range groups {
				for _, in := range g.Services[0].Instances {
					if _, dup := got[in.ID]; dup {
						t.Fatalf("instance %s served twice", in.ID)
					}
					got[in.ID] = in.Health
				}
			}
			if len(got) != len(want) {
				t.Fatalf("served %d instances, want %d", len(got), len(want))
			}
			for id, h := range want {
				if got[id] != h {
					t.Fatalf("instance %s: health %v, want %v", id, got[id], h)
				}
			}
			wantHealth := 0
			if tc.healthChecked && tc.n > 0 {
				wantHealth = tc.wantPages
			}
			if f.calls["ListInstances"] != tc.wantPages || f.calls["GetInstancesHealthStatus"] != wantHealth {
				t.Fatalf("calls %v, want %d ListInstances and %d GetInstancesHealthStatus", f.calls, tc.wantPages, wantHealth)
			}
		})
	}
}
