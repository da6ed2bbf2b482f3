package consul

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// chainLoop is a loop with config entries and no Consul: enough for
// compileTraffic and decorate.
func chainLoop(t *testing.T, mut func(*Config), entries ...api.ConfigEntry) *loop {
	t.Helper()
	cfg := Config{ConfigEntries: ConfigEntriesConfig{TrafficPolicy: true}}
	if mut != nil {
		mut(&cfg)
	}
	cfg.SetDefaults()
	m, err := newMapper(&cfg, sources.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	s := &Source{cfg: cfg, mapper: m, metrics: newMetrics("t"), log: zap.NewNop()}
	l := &loop{s: s, config: newConfigState(cfg.ConfigEntries.kinds()), mapped: map[string]mapped{}, dc: "dc1"}
	for _, e := range entries {
		l.config.entries[e.GetKind()][e.GetName()] = e
	}
	l.compileTraffic()
	return l
}

func resolverEntry(name string, subsets map[string]string) *api.ServiceResolverConfigEntry {
	e := &api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: name, Subsets: map[string]api.ServiceResolverSubset{}}
	for n, f := range subsets {
		e.Subsets[n] = api.ServiceResolverSubset{Filter: f}
	}
	return e
}

func splitterEntry(name string, splits ...api.ServiceSplit) *api.ServiceSplitterConfigEntry {
	return &api.ServiceSplitterConfigEntry{Kind: api.ServiceSplitter, Name: name, Splits: splits}
}

// routeString renders a compiled service's routes compactly:
// "match -> host/subset:weight,..." per route, joined by " | ".
func routeString(cp *compiled) string {
	if cp == nil {
		return "<none>"
	}
	var parts []string
	for _, r := range cp.traffic.Routes {
		m := "*"
		if r.Match != nil {
			m = string(r.Match.Path.Kind) + ":" + r.Match.Path.Value
		}
		var ds []string
		for _, d := range r.Destinations {
			s := d.Host
			if d.Subset != "" {
				s += "/" + d.Subset
			}
			if len(r.Destinations) > 1 {
				s += ":" + strconv.FormatUint(uint64(d.Weight), 10)
			}
			ds = append(ds, s)
		}
		if r.Timeout > 0 {
			m += " timeout=" + r.Timeout.String()
		}
		parts = append(parts, m+" -> "+strings.Join(ds, ","))
	}
	return strings.Join(parts, " | ")
}

func notCarriedOf(l *loop) []string {
	var out []string
	for n := range l.config.notCarried {
		out = append(out, n.kind+" "+n.service+" "+n.field+" "+n.result())
	}
	slices.Sort(out)
	return out
}

func TestCompileChains(t *testing.T) {
	v1v2 := map[string]string{"v1": "Service.Meta.version == v1", "v2": "Service.Meta.version == v2"}
	for _, c := range []struct {
		name    string
		mut     func(*Config)
		entries []api.ConfigEntry
		service string
		routes  string
		issues  string // notCarried, sorted, joined by "; "
	}{
		{
			name: "resolver and splitter",
			entries: []api.ConfigEntry{resolverEntry("web", v1v2),
				splitterEntry("web", api.ServiceSplit{Weight: 90, ServiceSubset: "v1"}, api.ServiceSplit{Weight: 10, ServiceSubset: "v2"})},
			service: "web", routes: "* -> web.service.consul/v1:9000,web.service.consul/v2:1000",
		},
		{
			name:    "subsets alone need no route",
			entries: []api.ConfigEntry{resolverEntry("web", v1v2)},
			service: "web", routes: "",
		},
		{
			name: "default subset and timeout",
			entries: []api.ConfigEntry{func() api.ConfigEntry {
				e := resolverEntry("web", v1v2)
				e.DefaultSubset, e.RequestTimeout = "v1", 3*time.Second
				return e
			}()},
			service: "web", routes: "* timeout=3s -> web.service.consul/v1",
		},
		{
			name: "router to another service's split, default through own resolver",
			entries: []api.ConfigEntry{
				func() api.ConfigEntry { e := resolverEntry("web", v1v2); e.DefaultSubset = "v2"; return e }(),
				resolverEntry("api", v1v2),
				splitterEntry("api", api.ServiceSplit{Weight: 75, ServiceSubset: "v1"}, api.ServiceSplit{Weight: 25, ServiceSubset: "v2"}),
				&api.ServiceRouterConfigEntry{Kind: api.ServiceRouter, Name: "web", Routes: []api.ServiceRoute{
					{Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathPrefix: "/api"}}, Destination: &api.ServiceRouteDestination{Service: "api"}},
					{Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathExact: "/old"}}, Destination: &api.ServiceRouteDestination{ServiceSubset: "v1"}},
				}},
			},
			service: "web", routes: "prefix:/api -> api.service.consul/v1:7500,api.service.consul/v2:2500 | exact:/old -> web.service.consul/v1 | * -> web.service.consul/v2",
		},
		{
			name: "nested splitters multiply",
			entries: []api.ConfigEntry{
				resolverEntry("web-a", v1v2),
				splitterEntry("web", api.ServiceSplit{Weight: 50, Service: "web-a"}, api.ServiceSplit{Weight: 50, Service: "web-b"}),
				splitterEntry("web-a", api.ServiceSplit{Weight: 80, ServiceSubset: "v1"}, api.ServiceSplit{Weight: 20, ServiceSubset: "v2"}),
			},
			service: "web", routes: "* -> web-a.service.consul/v1:4000,web-a.service.consul/v2:1000,web-b.service.consul:5000",
		},
		{
			name: "redirect",
			entries: []api.ConfigEntry{&api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: "web",
				Redirect: &api.ServiceResolverRedirect{Service: "web-v2"}}},
			service: "web", routes: "* -> web-v2.service.consul",
		},
		{
			name: "redirect to another datacenter the template cannot tell apart",
			entries: []api.ConfigEntry{&api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: "web",
				Redirect: &api.ServiceResolverRedirect{Datacenter: "dc2"}}},
			service: "web", routes: "<none>",
			issues: "service-resolver web Redirect rejected",
		},
		{
			name: "redirect to another datacenter with its own host",
			mut:  func(c *Config) { c.HostTemplate = "{{.Service}}.{{.Datacenter}}.consul" },
			entries: []api.ConfigEntry{&api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: "web",
				Redirect: &api.ServiceResolverRedirect{Datacenter: "dc2"}}},
			service: "web", routes: "* -> web.dc2.consul",
		},
		{
			name: "an unexpressible filter rejects the resolver and what routes through it",
			entries: []api.ConfigEntry{
				resolverEntry("web", v1v2),
				resolverEntry("api", map[string]string{"v1": "Service.Meta.version == v1", "v2": "Service.Meta.version != v1"}),
				&api.ServiceRouterConfigEntry{Kind: api.ServiceRouter, Name: "web", Routes: []api.ServiceRoute{
					{Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathPrefix: "/api"}}, Destination: &api.ServiceRouteDestination{Service: "api", ServiceSubset: "v1"}},
				}},
			},
			service: "api", routes: "<none>",
			issues: "service-resolver api Subsets.v2.Filter rejected; service-router web Routes[0].Destination rejected",
		},
		{
			name: "failover is left out alone",
			entries: []api.ConfigEntry{func() api.ConfigEntry {
				e := resolverEntry("web", v1v2)
				e.DefaultSubset = "v1"
				e.Failover = map[string]api.ServiceResolverFailover{"*": {Datacenters: []string{"dc2"}}}
				return e
			}()},
			service: "web", routes: "* -> web.service.consul/v1",
			issues: "service-resolver web Failover ignored",
		},
		{
			name: "a route to a missing subset",
			entries: []api.ConfigEntry{resolverEntry("web", v1v2),
				splitterEntry("web", api.ServiceSplit{Weight: 50, ServiceSubset: "v1"}, api.ServiceSplit{Weight: 50, ServiceSubset: "v3"})},
			service: "web", routes: "",
			issues: "service-splitter web Splits[1] rejected",
		},
		{
			name: "retries without a condition",
			entries: []api.ConfigEntry{&api.ServiceRouterConfigEntry{Kind: api.ServiceRouter, Name: "web", Routes: []api.ServiceRoute{
				{Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathPrefix: "/"}}, Destination: &api.ServiceRouteDestination{NumRetries: 3}},
			}}},
			service: "web", routes: "<none>",
			issues: "service-router web Routes[0].Destination.NumRetries rejected",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := chainLoop(t, c.mut, c.entries...)
			cp := l.config.compiled[c.service]
			got := routeString(cp)
			if c.routes == "" && cp != nil && len(cp.traffic.Routes) == 0 {
				got = ""
			}
			if got != c.routes {
				t.Errorf("routes\n got %s\nwant %s", got, c.routes)
			}
			if issues := strings.Join(notCarriedOf(l), "; "); issues != c.issues {
				t.Errorf("not carried\n got %s\nwant %s", issues, c.issues)
			}
			for _, n := range notCarriedOf(l) {
				f := strings.Fields(n)
				if v := testutil.ToFloat64(l.s.metrics.notCarried.WithLabelValues(f[0], f[1], f[2], f[3])); v != 1 {
					t.Errorf("gauge for %s = %v", n, v)
				}
			}
		})
	}
}

func TestCompileResolverFields(t *testing.T) {
	e := resolverEntry("web", map[string]string{"canary": `"canary" in Service.Tags`, "v2": "Service.Meta.version == v2"})
	e.ConnectTimeout = 1500 * time.Millisecond
	e.LoadBalancer = &api.LoadBalancer{Policy: "ring_hash", RingHashConfig: &api.RingHashConfig{MinimumRingSize: 2048, MaximumRingSize: 8192},
		HashPolicies: []api.HashPolicy{
			{Field: "cookie", FieldValue: "session", CookieConfig: &api.CookieConfig{Session: true, Path: "/app"}},
			{SourceIP: true},
		}}
	l := chainLoop(t, nil, e)
	cp := l.config.compiled["web"]
	if cp == nil {
		t.Fatal("nothing compiled")
	}
	tr := cp.traffic
	if len(tr.Subsets) != 2 || tr.Subsets[0].Name != "canary" || !tr.Subsets[0].Labels.Equal(model.MakeLabels("canary", "")) {
		t.Errorf("subsets %+v", tr.Subsets)
	}
	if strings.Join(cp.tagLabels, ",") != "canary" {
		t.Errorf("tag labels %v", cp.tagLabels)
	}
	lb := tr.LoadBalancer
	if lb.Policy != model.LBRingHash || lb.MinRingSize != 2048 || lb.Hash == nil || lb.Hash.Kind != model.HashCookie ||
		!lb.Hash.CookieGenerate || lb.Hash.CookieTTL != 0 || lb.Hash.CookiePath != "/app" {
		t.Errorf("load balancer %+v hash %+v", lb, lb.Hash)
	}
	if tr.ConnectTimeout != 1500*time.Millisecond {
		t.Errorf("connect timeout %v", tr.ConnectTimeout)
	}
	want := "service-resolver web LoadBalancer.HashPolicies[1] ignored; service-resolver web LoadBalancer.RingHashConfig.MaximumRingSize ignored"
	if got := strings.Join(notCarriedOf(l), "; "); got != want {
		t.Errorf("not carried\n got %s\nwant %s", got, want)
	}

	// OnlyPassing only matters when instances in warning are served.
	e = resolverEntry("web", nil)
	e.Subsets["ok"] = api.ServiceResolverSubset{Filter: "Service.Meta.version == v1", OnlyPassing: true}
	if l := chainLoop(t, nil, e); l.config.compiled["web"] == nil || len(l.config.notCarried) != 0 {
		t.Errorf("OnlyPassing without includeWarning: %v", notCarriedOf(l))
	}
	l = chainLoop(t, func(c *Config) { c.IncludeWarning = true }, e)
	if l.config.compiled["web"] != nil || strings.Join(notCarriedOf(l), "") != "service-resolver web Subsets.ok.OnlyPassing rejected" {
		t.Errorf("OnlyPassing with includeWarning: compiled %v, not carried %v", l.config.compiled["web"], notCarriedOf(l))
	}
}

func TestCompileRouteFields(t *testing.T) {
	r := &api.ServiceRouterConfigEntry{Kind: api.ServiceRouter, Name: "web", Routes: []api.ServiceRoute{{
		Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{
			PathRegex: "/v[0-9]+/.*", CaseInsensitive: true, Methods: []string{"GET", "PUT"},
			Header: []api.ServiceRouteHTTPMatchHeader{
				{Name: "x-debug", Present: true}, {Name: "x-env", Suffix: ".prod"}, {Name: "x-test", Exact: "1", Invert: true},
			},
			QueryParam: []api.ServiceRouteHTTPMatchQueryParam{{Name: "beta", Present: true}, {Name: "v", Regex: "[0-9]+"}},
		}},
		Destination: &api.ServiceRouteDestination{
			Service: "api", PrefixRewrite: "/", RequestTimeout: 2 * time.Second, IdleTimeout: time.Minute,
			NumRetries: 4, RetryOnConnectFailure: true, RetryOnStatusCodes: []uint32{503}, RetryOn: []string{"reset"},
			RequestHeaders:  &api.HTTPHeaderModifiers{Set: map[string]string{"x-route": "api"}},
			ResponseHeaders: &api.HTTPHeaderModifiers{Remove: []string{"x-internal"}},
		},
	}}}
	l := chainLoop(t, nil, r)
	cp := l.config.compiled["web"]
	if cp == nil || len(cp.traffic.Routes) != 2 {
		t.Fatalf("compiled %+v", cp)
	}
	rt := cp.traffic.Routes[0]
	m := rt.Match
	if m.Path != (model.StringMatch{Kind: model.MatchRegex, Value: "/v[0-9]+/.*"}) || !m.IgnoreCase || strings.Join(m.Methods, ",") != "GET,PUT" ||
		len(m.Headers) != 3 || m.Headers[1].Match.Kind != model.MatchSuffix || !m.Headers[2].Invert || len(m.Query) != 2 || m.Query[0].Match.Kind != model.MatchPresent {
		t.Errorf("match %+v", m)
	}
	if rt.Timeout != 2*time.Second || rt.PrefixRewrite != "/" || rt.Retries == nil || rt.Retries.Attempts != 4 ||
		strings.Join(rt.Retries.On, ",") != "reset,connect-failure,503" {
		t.Errorf("route %+v retries %+v", rt, rt.Retries)
	}
	if v, _ := rt.RequestHeaders.Set.Get("x-route"); v != "api" || strings.Join(rt.ResponseHeaders.Remove, ",") != "x-internal" {
		t.Errorf("headers %+v %+v", rt.RequestHeaders, rt.ResponseHeaders)
	}
	if got := strings.Join(notCarriedOf(l), "; "); got != "service-router web Routes[0].Destination.IdleTimeout ignored" {
		t.Errorf("not carried %s", got)
	}
	// Two conditions on one header: Istio has one per header.
	r.Routes[0].Match.HTTP.Header = append(r.Routes[0].Match.HTTP.Header, api.ServiceRouteHTTPMatchHeader{Name: "X-Debug", Exact: "1"})
	l = chainLoop(t, nil, r)
	if l.config.compiled["web"] != nil || !strings.Contains(strings.Join(notCarriedOf(l), ""), "Routes[0].Match.HTTP rejected") {
		t.Errorf("a second condition on a header: compiled %v, not carried %v", l.config.compiled["web"], notCarriedOf(l))
	}
}

// TestDecorate: the protocol of ports that state none comes from
// service-defaults, then proxy-defaults; the traffic policy and the labels
// of plain tags its subsets select by go on the service.
func TestDecorate(t *testing.T) {
	sd := &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "web", Protocol: "http2"}
	pd := &api.ProxyConfigEntry{Kind: api.ProxyDefaults, Name: api.ProxyConfigGlobal, Config: map[string]any{"protocol": "grpc"}}
	res := resolverEntry("web", map[string]string{"canary": `"canary" in Service.Tags`})
	l := chainLoop(t, nil, sd, pd, res)
	svc := model.Service{Name: "web", Host: "web.service.consul",
		Ports: []model.Port{{Number: 80, Protocol: model.ProtocolTCP}, {Number: 81, Protocol: model.ProtocolHTTP}},
		Instances: []model.Instance{
			{ID: "n1/web", Labels: model.MakeLabels("version", "v1")},
			{ID: "n2/web"},
			{ID: "n3/web", Labels: model.MakeLabels("canary", "meta-wins")},
		}}
	l.mapped["web"] = mapped{defaulted: []uint32{80}, tags: map[string][]string{"n1/web": {"canary", "other"}, "n3/web": {"canary"}}}
	got := l.decorate("web", svc)
	if got.Ports[0].Protocol != model.ProtocolHTTP2 || got.Ports[1].Protocol != model.ProtocolHTTP {
		t.Errorf("ports %+v: the defaulted port takes service-defaults, the stated one keeps its own", got.Ports)
	}
	if svc.Ports[0].Protocol != model.ProtocolTCP || svc.Instances[0].Labels.Len() != 1 {
		t.Error("decorate modified its input")
	}
	if v, ok := got.Instances[0].Labels.Get("canary"); !ok || v != "" {
		t.Errorf("instance with the plain tag: labels %s", got.Instances[0].Labels)
	}
	if got.Instances[0].Labels.Len() != 2 || got.Instances[1].Labels.Len() != 0 {
		t.Errorf("labels %s, %s: only named plain tags become labels", got.Instances[0].Labels, got.Instances[1].Labels)
	}
	if v, _ := got.Instances[2].Labels.Get("canary"); v != "meta-wins" {
		t.Errorf("a meta label of the same key was replaced: %s", got.Instances[2].Labels)
	}
	if got.Traffic == nil || len(got.Traffic.Subsets) != 1 {
		t.Errorf("traffic %+v", got.Traffic)
	}
	// Without service-defaults, proxy-defaults; a peer's service is left alone.
	delete(l.config.entries[kindServiceDefaults], "web")
	if got := l.decorate("web", svc); got.Ports[0].Protocol != model.ProtocolGRPC {
		t.Errorf("proxy-defaults: %+v", got.Ports)
	}
	if got := l.decorate("peer/west/web", svc); got.Ports[0].Protocol != model.ProtocolTCP || got.Traffic != nil {
		t.Errorf("a peer's service was decorated: %+v", got)
	}
	// Protocol reading off: nothing from service-defaults or proxy-defaults.
	off := false
	l2 := chainLoop(t, func(c *Config) { c.ConfigEntries.Protocol = &off })
	l2.mapped["web"] = mapped{defaulted: []uint32{80}}
	if got := l2.decorate("web", svc); got.Ports[0].Protocol != model.ProtocolTCP {
		t.Errorf("protocol off: %+v", got.Ports)
	}
}
