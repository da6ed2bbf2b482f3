package cloudmap

import (
	"context"
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
)

// fakeAPI is a scripted Cloud Map for the lister's own logic.
type fakeAPI struct {
	services  []types.ServiceSummary
	instances map[string][]types.HttpInstanceSummary
	revision  map[string]int64
	notFound  map[string]bool
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

func (f *fakeAPI) DiscoverInstances(_ context.Context, in *sd.DiscoverInstancesInput, _ ...func(*sd.Options)) (*sd.DiscoverInstancesOutput, error) {
	f.count("DiscoverInstances")
	name := aws.ToString(in.ServiceName)
	if f.notFound[name] {
		return nil, &types.ServiceNotFound{Message: aws.String("gone")}
	}
	return &sd.DiscoverInstancesOutput{Instances: f.instances[name], InstancesRevision: aws.Int64(f.revision[name])}, nil
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
	return &lister{cfg: &cfg, mapper: m, metrics: newMetrics("t"), log: zap.NewNop(), api: f,
		now: func() time.Time { return *now }}
}

func inst(id, ip string) types.HttpInstanceSummary {
	return types.HttpInstanceSummary{InstanceId: aws.String(id), Attributes: map[string]string{AttrIPv4: ip, AttrPort: "80"}}
}

func TestRevisionAndFullResync(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := &fakeAPI{
		services:  []types.ServiceSummary{{Name: aws.String("web")}},
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
	if len(first) != 1 || f.calls["DiscoverInstances"] != 1 {
		t.Fatalf("first list: %+v, calls %v", first, f.calls)
	}
	// Same revision: the cache, even though the fake's content changed
	// (a revision is trusted until fullResync).
	f.instances["web"] = append(f.instances["web"], inst("b", "10.0.0.2"))
	now = now.Add(time.Minute)
	if g := list(); len(g[0].Services[0].Instances) != 1 || f.calls["DiscoverInstances"] != 1 || f.calls["DiscoverInstancesRevision"] != 1 {
		t.Fatalf("unchanged revision: %+v, calls %v", g, f.calls)
	}
	// fullResync after the last full read: read in full.
	now = now.Add(DefaultFullResync)
	if g := list(); len(g[0].Services[0].Instances) != 2 || f.calls["DiscoverInstances"] != 2 {
		t.Fatalf("full resync: %+v, calls %v", g, f.calls)
	}
	// A new revision: read in full.
	f.instances["web"] = f.instances["web"][:1]
	f.revision["web"] = 8
	now = now.Add(time.Minute)
	if g := list(); len(g[0].Services[0].Instances) != 1 || f.calls["DiscoverInstances"] != 3 {
		t.Fatalf("new revision: %+v, calls %v", g, f.calls)
	}
	// A health-checked service is always read in full.
	f.services[0].HealthCheckCustomConfig = &types.HealthCheckCustomConfig{}
	list()
	list()
	if f.calls["DiscoverInstances"] != 5 {
		t.Fatalf("health-checked: calls %v", f.calls)
	}
}

func TestListEdgeCases(t *testing.T) {
	now := time.Now()
	// A service deleted between ListServices and DiscoverInstances is
	// dropped, not an error; pages of ListServices are followed.
	f := &fakeAPI{
		services:     []types.ServiceSummary{{Name: aws.String("a")}, {Name: aws.String("b")}, {Name: aws.String("c")}},
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
	// A full DiscoverInstances reply may be truncated: an error.
	f = &fakeAPI{services: []types.ServiceSummary{{Name: aws.String("big")}}, instances: map[string][]types.HttpInstanceSummary{}}
	for i := range maxInstances {
		f.instances["big"] = append(f.instances["big"], inst(fmt.Sprint(i), "10.0.0.1"))
	}
	if _, err := newFakeLister(t, f, &now).List(context.Background()); err == nil || !strings.Contains(err.Error(), "may be incomplete") {
		t.Fatalf("truncated: %v", err)
	}
}
