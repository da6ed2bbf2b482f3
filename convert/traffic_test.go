package convert

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
)

func withTraffic(s model.Service, t *model.Traffic) model.Service {
	s.Traffic = t
	return s
}

// fullTraffic uses every field of model.Traffic.
func fullTraffic() *model.Traffic {
	return &model.Traffic{
		Subsets: []model.Subset{
			{Name: "v1", Labels: model.MakeLabels("version", "v1")},
			{Name: "canary", Labels: model.MakeLabels("canary", "", "version", "v2")},
			{Name: "all"},
		},
		LoadBalancer: &model.LoadBalancer{Policy: model.LBRingHash, MinRingSize: 1024,
			Hash: &model.HashKey{Kind: model.HashCookie, Name: "session", CookieGenerate: true, CookieTTL: time.Hour, CookiePath: "/"}},
		ConnectTimeout: 2500 * time.Millisecond,
		Routes: []model.Route{
			{
				Match: &model.HTTPMatch{
					Path: model.StringMatch{Kind: model.MatchPrefix, Value: "/admin"}, IgnoreCase: true,
					Headers: []model.HeaderMatch{
						{Name: "X-Debug", Match: model.StringMatch{Kind: model.MatchPresent}},
						{Name: "X-Env", Match: model.StringMatch{Kind: model.MatchSuffix, Value: ".prod"}},
						{Name: "X-Test", Match: model.StringMatch{Kind: model.MatchExact, Value: "1"}, Invert: true},
					},
					Query:   []model.QueryMatch{{Name: "beta", Match: model.StringMatch{Kind: model.MatchPresent}}, {Name: "v", Match: model.StringMatch{Kind: model.MatchRegex, Value: "[0-9]+"}}},
					Methods: []string{"GET", "HEAD"},
				},
				Destinations:   []model.WeightedDestination{{Host: "admin.service.consul"}},
				Timeout:        3 * time.Second,
				Retries:        &model.Retries{Attempts: 3, On: []string{"connect-failure", "5xx", "503"}},
				PrefixRewrite:  "/",
				RequestHeaders: model.HeaderOps{Add: model.MakeLabels("x-from", "consul"), Set: model.MakeLabels("x-route", "admin"), Remove: []string{"x-internal"}},
			},
			{
				Match: &model.HTTPMatch{Path: model.StringMatch{Kind: model.MatchExact, Value: "/v2"}, Methods: []string{"POST"}},
				Destinations: []model.WeightedDestination{
					{Host: "web.service.consul", Subset: "canary", Weight: 1000, ResponseHeaders: model.HeaderOps{Set: model.MakeLabels("x-canary", "1")}},
					{Host: "web.service.consul", Subset: "v1", Weight: 9000},
				},
			},
			{Destinations: []model.WeightedDestination{{Host: "web.service.consul", Subset: "v1"}}},
		},
	}
}

// hostileTraffic holds what a registry writer could put in a traffic
// policy to break it: a subset on a reserved label, a route to it, a
// regex that does not compile.
func hostileTraffic() *model.Traffic {
	return &model.Traffic{
		Subsets: []model.Subset{
			{Name: "rev", Labels: model.MakeLabels("istio.io/rev", "canary")},
			{Name: "v1", Labels: model.MakeLabels("version", "v1")},
		},
		Routes: []model.Route{
			{Match: &model.HTTPMatch{Path: model.StringMatch{Kind: model.MatchRegex, Value: "(unclosed"}},
				Destinations: []model.WeightedDestination{{Host: "web.service.consul", Subset: "v1"}}},
			{Destinations: []model.WeightedDestination{{Host: "web.service.consul", Subset: "rev"}}},
		},
	}
}

func findKind(rs []*served.Resource, k served.Kind) *served.Resource {
	for _, r := range rs {
		if r.Kind == k {
			return r
		}
	}
	return nil
}

func TestTrafficTranslation(t *testing.T) {
	res, rej := Service("web.service.consul", []Contribution{{"dc1", withTraffic(web(inst("n/web", "10.0.0.1")), fullTraffic())}}, testOpts())
	if len(rej) > 0 {
		t.Fatalf("rejections: %v", rej)
	}
	var kinds []served.Kind
	for _, r := range res {
		kinds = append(kinds, r.Kind)
	}
	if want := []served.Kind{served.KindServiceEntry, served.KindWorkloadEntry, served.KindDestinationRule, served.KindVirtualService}; !slices.Equal(kinds, want) {
		t.Fatalf("kinds %v, want %v", kinds, want)
	}
	dr := findKind(res, served.KindDestinationRule).Spec.(*networking.DestinationRule)
	vs := findKind(res, served.KindVirtualService).Spec.(*networking.VirtualService)
	ch := dr.GetTrafficPolicy().GetLoadBalancer().GetConsistentHash()
	if ch.GetRingHash().GetMinimumRingSize() != 1024 || ch.GetHttpCookie().GetTtl().AsDuration() != time.Hour || ch.GetHttpCookie().GetPath() != "/" {
		t.Errorf("consistent hash %v", ch)
	}
	if got := dr.GetTrafficPolicy().GetConnectionPool().GetTcp().GetConnectTimeout().AsDuration(); got != 2500*time.Millisecond {
		t.Errorf("connect timeout %v", got)
	}
	if dr.Subsets[2].Labels != nil {
		t.Errorf("a subset without labels has labels %v", dr.Subsets[2].Labels)
	}
	m := vs.Http[0].Match[0]
	if m.Headers["x-debug"] == nil || m.Headers["x-debug"].MatchType != nil {
		t.Errorf("a present header is not an empty match: %v", m.Headers)
	}
	if got := m.Headers["x-env"].GetRegex(); got != `.*\.prod` {
		t.Errorf("suffix as regex %q", got)
	}
	if m.WithoutHeaders["x-test"].GetExact() != "1" || m.Headers["x-test"] != nil {
		t.Errorf("an inverted header match is not in withoutHeaders: %v / %v", m.Headers, m.WithoutHeaders)
	}
	if m.GetMethod().GetRegex() != "GET|HEAD" || vs.Http[1].Match[0].GetMethod().GetExact() != "POST" {
		t.Errorf("methods %v, %v", m.GetMethod(), vs.Http[1].Match[0].GetMethod())
	}
	if !m.IgnoreUriCase || m.GetUri().GetPrefix() != "/admin" {
		t.Errorf("uri %v ignore case %v", m.GetUri(), m.IgnoreUriCase)
	}
	if r := vs.Http[0].Retries; r.GetAttempts() != 3 || r.GetRetryOn() != "connect-failure,5xx,503" {
		t.Errorf("retries %v", r)
	}
	// Weights in hundredths of a percent read as percent, and a single
	// destination carries none.
	if w := []int32{vs.Http[1].Route[0].Weight, vs.Http[1].Route[1].Weight}; !slices.Equal(w, []int32{10, 90}) {
		t.Errorf("weights %v, want [10 90]", w)
	}
	if w := reducedWeights([]model.WeightedDestination{{Weight: 3333}, {Weight: 6667}}); !slices.Equal(w, []int32{3333, 6667}) {
		t.Errorf("weights %v, want their precision kept", w)
	}
	if w := reducedWeights([]model.WeightedDestination{{Weight: 3}, {Weight: 1}}); !slices.Equal(w, []int32{3, 1}) {
		t.Errorf("weights %v, want [3 1]", w)
	}
	if vs.Http[2].Route[0].Weight != 0 || vs.Http[2].Match != nil {
		t.Errorf("default route %v", prototext.Format(vs.Http[2]))
	}
}

func TestTrafficLoadBalancers(t *testing.T) {
	for _, c := range []struct {
		lb   model.LoadBalancer
		want *networking.LoadBalancerSettings
	}{
		{model.LoadBalancer{Policy: model.LBLeastRequest}, &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: networking.LoadBalancerSettings_LEAST_REQUEST}}},
		{model.LoadBalancer{Policy: model.LBRandom}, &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: networking.LoadBalancerSettings_RANDOM}}},
		{model.LoadBalancer{Policy: model.LBRoundRobin}, &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: networking.LoadBalancerSettings_ROUND_ROBIN}}},
		{model.LoadBalancer{Policy: model.LBMaglev, Hash: &model.HashKey{Kind: model.HashSourceIP}}, &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_ConsistentHash{
			ConsistentHash: &networking.LoadBalancerSettings_ConsistentHashLB{
				HashAlgorithm: &networking.LoadBalancerSettings_ConsistentHashLB_Maglev{Maglev: &networking.LoadBalancerSettings_ConsistentHashLB_MagLev{TableSize: 65537}},
				HashKey:       &networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp{UseSourceIp: true}}}}},
		{model.LoadBalancer{Policy: model.LBRingHash, Hash: &model.HashKey{Kind: model.HashHeader, Name: "X-User"}}, &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_ConsistentHash{
			ConsistentHash: &networking.LoadBalancerSettings_ConsistentHashLB{
				HashAlgorithm: &networking.LoadBalancerSettings_ConsistentHashLB_RingHash_{RingHash: &networking.LoadBalancerSettings_ConsistentHashLB_RingHash{}},
				HashKey:       &networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName{HttpHeaderName: "x-user"}}}}},
		// A cookie only hashed, never generated: no TTL at all.
		{model.LoadBalancer{Policy: model.LBRingHash, Hash: &model.HashKey{Kind: model.HashCookie, Name: "id"}}, &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_ConsistentHash{
			ConsistentHash: &networking.LoadBalancerSettings_ConsistentHashLB{
				HashAlgorithm: &networking.LoadBalancerSettings_ConsistentHashLB_RingHash_{RingHash: &networking.LoadBalancerSettings_ConsistentHashLB_RingHash{}},
				HashKey:       &networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie{HttpCookie: &networking.LoadBalancerSettings_ConsistentHashLB_HTTPCookie{Name: "id"}}}}}},
	} {
		got := loadBalancer(&c.lb)
		if !proto.Equal(got, c.want) {
			t.Errorf("%+v: got %v, want %v", c.lb, got, c.want)
		}
	}
	// A session cookie: generated, with a zero TTL.
	got := loadBalancer(&model.LoadBalancer{Policy: model.LBRingHash, Hash: &model.HashKey{Kind: model.HashCookie, Name: "id", CookieGenerate: true}})
	if ttl := got.GetConsistentHash().GetHttpCookie().GetTtl(); ttl == nil || ttl.AsDuration() != 0 {
		t.Errorf("session cookie TTL %v, want 0s", ttl)
	}
}

// TestTrafficRejections: a subset the label policy would leave unselectable
// is left out, and so is a VirtualService that routes to it; a
// VirtualService istiod would reject is left out alone; the ServiceEntry
// and WorkloadEntry stay.
func TestTrafficRejections(t *testing.T) {
	res, rej := Service("web.service.consul", []Contribution{{"dc1", withTraffic(web(inst("n/web", "10.0.0.1")), hostileTraffic())}}, testOpts())
	if findKind(res, served.KindServiceEntry) == nil || findKind(res, served.KindWorkloadEntry) == nil {
		t.Fatalf("the service was lost: %v", res)
	}
	dr := findKind(res, served.KindDestinationRule)
	if dr == nil || len(dr.Spec.(*networking.DestinationRule).Subsets) != 1 {
		t.Fatalf("DestinationRule %v, want one subset (v1)", dr)
	}
	if vs := findKind(res, served.KindVirtualService); vs != nil {
		t.Errorf("a VirtualService routing to a left-out subset was served: %v", vs.Spec)
	}
	var reasons []string
	for _, r := range rej {
		reasons = append(reasons, string(r.Kind)+" "+r.Code+": "+r.Reason)
		if r.Source != "dc1" || r.Name == "" {
			t.Errorf("rejection without source or item: %+v", r)
		}
	}
	all := strings.Join(reasons, "\n")
	for _, want := range []string{`DestinationRule traffic-policy: subset "rev"`, `VirtualService traffic-policy: route 1 goes to subset "rev"`} {
		if !strings.Contains(all, want) {
			t.Errorf("no rejection %q in:\n%s", want, all)
		}
	}

	// Without the subset route, the bad regex is istiod's to reject: the
	// VirtualService is left out by validation, the DestinationRule stays.
	tr := hostileTraffic()
	tr.Routes = tr.Routes[:1]
	res, rej = Service("web.service.consul", []Contribution{{"dc1", withTraffic(web(inst("n/web", "10.0.0.1")), tr)}}, testOpts())
	if findKind(res, served.KindVirtualService) != nil || findKind(res, served.KindDestinationRule) == nil {
		t.Errorf("kinds served with an invalid regex: %v", res)
	}
	found := false
	for _, r := range rej {
		found = found || r.Kind == served.KindVirtualService && r.Code == CodeInvalid && strings.Contains(r.Reason, "(unclosed")
	}
	if !found {
		t.Errorf("no validation rejection naming the regex: %v", rej)
	}
}

// TestTrafficNothingToSay: a policy with nothing Istio would do differently
// makes no resources; a service without one makes none either.
func TestTrafficNothingToSay(t *testing.T) {
	for _, tr := range []*model.Traffic{nil, {}, {LoadBalancer: &model.LoadBalancer{}}} {
		res, _ := Service("web.service.consul", []Contribution{{"dc1", withTraffic(web(inst("n/web", "10.0.0.1")), tr)}}, testOpts())
		if r := findKind(res, served.KindDestinationRule); r != nil {
			t.Errorf("%+v: DestinationRule %v", tr, r.Spec)
		}
		if r := findKind(res, served.KindVirtualService); r != nil {
			t.Errorf("%+v: VirtualService %v", tr, r.Spec)
		}
	}
}

// TestTrafficLabelPolicy: subsets name the keys the instances carry after
// the output's label prefix, and a key the allow-list leaves out makes the
// subset unusable.
func TestTrafficLabelPolicy(t *testing.T) {
	tr := &model.Traffic{Subsets: []model.Subset{{Name: "v1", Labels: model.MakeLabels("version", "v1")}}}
	opts := testOpts(func(o *Options) { o.Labels.Prefix = "consul.example.com/" })
	res, _ := Service("web.service.consul", []Contribution{{"dc1", withTraffic(web(inst("n/web", "10.0.0.1")), tr)}}, opts)
	dr := findKind(res, served.KindDestinationRule).Spec.(*networking.DestinationRule)
	we := findKind(res, served.KindWorkloadEntry)
	if dr.Subsets[0].Labels["consul.example.com/version"] != "v1" || we.Labels["consul.example.com/version"] != "v1" {
		t.Errorf("subset labels %v, instance labels %v", dr.Subsets[0].Labels, we.Labels)
	}
	opts = testOpts(func(o *Options) { o.Labels.Allow = []string{"team"} })
	res, rej := Service("web.service.consul", []Contribution{{"dc1", withTraffic(web(inst("n/web", "10.0.0.1")), tr)}}, opts)
	if r := findKind(res, served.KindDestinationRule); r != nil || len(rej) != 1 || rej[0].Code != CodeTraffic {
		t.Errorf("a subset on a label the allow-list drops: DestinationRule %v, rejections %v", r, rej)
	}
}

// TestTrafficExportTo: the rules share the ServiceEntry's visibility, but
// "~" (a ServiceEntry's alone) becomes ".", the output namespace.
func TestTrafficExportTo(t *testing.T) {
	for _, c := range []struct{ in, want []string }{{nil, nil}, {[]string{"*"}, []string{"*"}}, {[]string{"~"}, []string{"."}}, {[]string{".", "ns1"}, []string{".", "ns1"}}} {
		res, rej := Service("web.service.consul", []Contribution{{"dc1", withTraffic(web(inst("n/web", "10.0.0.1")), fullTraffic())}},
			testOpts(func(o *Options) { o.ExportTo = c.in }))
		dr, vs := findKind(res, served.KindDestinationRule), findKind(res, served.KindVirtualService)
		if dr == nil || vs == nil {
			t.Fatalf("exportTo %q: rules left out: %v", c.in, rej)
		}
		if got := dr.Spec.(*networking.DestinationRule).ExportTo; !slices.Equal(got, c.want) {
			t.Errorf("exportTo %q: DestinationRule %q, want %q", c.in, got, c.want)
		}
		if got := vs.Spec.(*networking.VirtualService).ExportTo; !slices.Equal(got, c.want) {
			t.Errorf("exportTo %q: VirtualService %q, want %q", c.in, got, c.want)
		}
	}
}
