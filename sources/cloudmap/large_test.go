package cloudmap

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sd "github.com/aws/aws-sdk-go-v2/service/servicediscovery"

	"github.com/aws/aws-sdk-go-v2/service/servicediscovery/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sync/errgroup"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// countingProxy forwards to moto and counts the requests per Cloud Map
// operation (the X-Amz-Target header, "Route53AutoNaming_v20170314.<op>").
type countingProxy struct {
	URL   string
	mu    sync.Mutex
	calls map[string]int
}

func newCountingProxy(t *testing.T) *countingProxy {
	t.Helper()
	target, err := url.Parse(harness.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	tr := harness.Transport.Clone()
	rp.Transport = tr
	p := &countingProxy{calls: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, op, _ := strings.Cut(req.Header.Get("X-Amz-Target"), ".")
		p.mu.Lock()
		p.calls[op]++
		p.mu.Unlock()
		rp.ServeHTTP(w, req)
	}))
	t.Cleanup(func() { srv.Close(); tr.CloseIdleConnections() })
	p.URL = srv.URL
	return p
}

func (p *countingProxy) reset() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.calls
	p.calls = map[string]int{}
	return c
}

// TestMotoLargeService reads a service past DiscoverInstances' limit of
// 1000 instances from moto (1250: registering costs moto about 10 ms a
// request; TestListInstancesPages takes a fake to 2500): every instance is in the list exactly once,
// with its health (every third UNHEALTHY through a custom health check,
// which the batch marks critical and convert never serves), and one refresh
// costs one ListInstances and one GetInstancesHealthStatus request per page
// of 100, counted at a proxy in front of moto and in the requests metric.
//
// moto 5.2.1 pages ListInstances and GetInstancesHealthStatus by MaxResults
// with an offset as NextToken (without MaxResults it returns everything in
// one reply, where AWS stops at 100), so the pages here are moto's own.
func TestMotoLargeService(t *testing.T) {
	harness.Need(t)
	const (
		big   = 1250 // custom health check: 13 pages, the last one partial
		plain = 150  // no health check: no GetInstancesHealthStatus
	)
	c := newCloud(t)
	ns := c.namespace("mesh.local")
	bigID := c.service(ns, "big", true)
	plainID := c.service(ns, "plain", false)

	want := map[string]model.Health{}
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(4)
	start := time.Now()
	for i := range big + plain {
		g.Go(func() error {
			svcID, id, h := bigID, fmt.Sprintf("b-%05d", i), model.HealthPassing
			if i >= big {
				svcID, id = plainID, fmt.Sprintf("p-%05d", i)
			}
			ctx := context.Background()
			if _, err := c.sd.RegisterInstance(ctx, &sd.RegisterInstanceInput{ServiceId: aws.String(svcID), InstanceId: aws.String(id),
				Attributes: map[string]string{AttrIPv4: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), AttrPort: "8080"}}); err != nil {
				return fmt.Errorf("RegisterInstance %s: %w", id, err)
			}
			if i < big && i%3 == 0 {
				if _, err := c.sd.UpdateInstanceCustomHealthStatus(ctx, &sd.UpdateInstanceCustomHealthStatusInput{
					ServiceId: aws.String(svcID), InstanceId: aws.String(id), Status: types.CustomHealthStatusUnhealthy}); err != nil {
					return fmt.Errorf("UpdateInstanceCustomHealthStatus %s: %w", id, err)
				}
				h = model.HealthCritical
			}
			mu.Lock()
			want[id] = h
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("registered %d instances in %v", len(want), time.Since(start))

	proxy := newCountingProxy(t)
	reg := prometheus.NewRegistry()
	src, err := New(Config{Region: testRegion, Endpoint: proxy.URL, Namespace: "mesh.local"},
		sources.Options{Name: "cloudmap-large", Logger: zaptest.NewLogger(t), Registerer: reg,
			Reporter: sources.NewReporter("cloudmap-large", sources.NewMetrics(reg))})
	if err != nil {
		t.Fatal(err)
	}
	l := src.Lister
	l.maxAttempts = 1
	t.Cleanup(l.CloseIdleConnections)

	start = time.Now()
	groups, err := l.List(context.Background())
	t.Logf("first List: %v", time.Since(start))
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	got := map[string]model.Health{}
	for _, g := range groups {
		for _, in := range g.Services[0].Instances {
			if _, dup := got[in.ID]; dup {
				t.Fatalf("instance %s listed twice", in.ID)
			}
			got[in.ID] = in.Health
		}
	}
	if len(got) != len(want) {
		t.Fatalf("listed %d instances, want %d", len(got), len(want))
	}
	critical := 0
	for id, h := range want {
		if got[id] != h {
			t.Fatalf("instance %s: health %v, want %v", id, got[id], h)
		}
		if h == model.HealthCritical {
			critical++
		}
	}
	if critical != (big+2)/3 {
		t.Fatalf("%d critical instances, want %d", critical, (big+2)/3)
	}

	// One refresh: the namespace and service lists (one page each), 13
	// pages of big with their 13 pages of health, and plain's revision
	// (read before its instances) and 2 pages.
	wantCalls := map[string]int{
		"ListNamespaces": 1, "ListServices": 1, "ListInstances": 13 + 2, "GetInstancesHealthStatus": 13,
		"DiscoverInstancesRevision": 1,
	}
	calls := proxy.reset()
	if fmt.Sprint(calls) != fmt.Sprint(wantCalls) {
		t.Fatalf("requests %v, want %v", calls, wantCalls)
	}
	for op, n := range wantCalls {
		if m := testutil.ToFloat64(l.metrics.Requests.WithLabelValues(op, "ok")); m != float64(n) {
			t.Fatalf("requests_total{operation=%q,result=ok} = %v, want %d", op, m, n)
		}
	}

	// Again: plain's revision did not move, so only it is read from the
	// cache; big (health-checked) is read in full, every page.
	if _, err := l.List(context.Background()); err != nil {
		t.Fatalf("second List: %v", err)
	}
	wantCalls["ListInstances"] = 13
	if calls := proxy.reset(); fmt.Sprint(calls) != fmt.Sprint(wantCalls) {
		t.Fatalf("second refresh: requests %v, want %v", calls, wantCalls)
	}
}
