package consul

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/registry-adapter/registry-adapter/model"
)

// published is what the loop publishes for a local service (nil: nothing).
func published(l *loop, name string) *model.Service {
	g, ok := l.published[name]
	if !ok || len(g.Services) != 1 {
		return nil
	}
	return &g.Services[0]
}

// flushed applies the answers, folds them in once, and returns the scopes
// re-mapped (sorted); a scope re-mapped twice fails the test.
func flushed(t *testing.T, l *loop, evs ...configEvent) []string {
	t.Helper()
	l.reconciled = map[string]int{}
	for _, ev := range evs {
		ev.apply(context.Background(), l)
	}
	l.flushConfig()
	for s, n := range l.reconciled {
		if n != 1 {
			t.Errorf("%s re-mapped %d times in one flush", s, n)
		}
	}
	got := slices.Sorted(maps.Keys(l.reconciled))
	l.reconciled = nil
	if len(got) > 10 {
		// Every service, or nearly: a count says enough.
		return []string{fmt.Sprintf("%d services", len(got))}
	}
	return got
}

func names(is ...int) []string {
	var out []string
	for _, i := range is {
		out = append(out, svcName(i))
	}
	slices.Sort(out)
	return out
}

// TestConfigChangeRemapsWhatItTouches: a change to one service's config
// entries compiles and re-maps that service and the services whose chains
// reach it, and no other; proxy-defaults re-maps every service; a deleted
// entry reverts what it stated.
func TestConfigChangeRemapsWhatItTouches(t *testing.T) {
	const n = 100
	entries := append(trafficEntries(n),
		// svc-00001 routes /api to svc-00010 (through its splitter).
		&api.ServiceRouterConfigEntry{Kind: api.ServiceRouter, Name: svcName(1), Routes: []api.ServiceRoute{{
			Match:       &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathPrefix: "/api"}},
			Destination: &api.ServiceRouteDestination{Service: svcName(10)},
		}}},
		// svc-00002 sends half to svc-00020's subset v2.
		splitterEntry(svcName(2), api.ServiceSplit{Weight: 50}, api.ServiceSplit{Weight: 50, Service: svcName(20), ServiceSubset: "v2"}),
		// svc-00003 redirects to svc-00010.
		&api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: svcName(3), Redirect: &api.ServiceResolverRedirect{Service: svcName(10)}},
	)
	l := entriesLoop(t, n, entries...)
	if got := len(l.published); got != n {
		t.Fatalf("published %d services", got)
	}
	routes := func(name string) string {
		s := published(l, name)
		if s == nil || s.Traffic == nil {
			return "<none>"
		}
		return routeString(&compiled{traffic: s.Traffic})
	}
	protocol := func(name string) model.Protocol { return published(l, name).Ports[0].Protocol }
	if got := routes(svcName(1)); got != "prefix:/api -> svc-00010.service.consul/v1:9000,svc-00010.service.consul/v2:1000 | * -> svc-00001.service.consul" {
		t.Fatalf("svc-00001 routes %s", got)
	}

	// One splitter: its service, and the two whose chains reach it (by
	// name: a redirect reads the name's entries too).
	if got, want := flushed(t, l, withEntry(l, kindSplitter, svcName(10), split9010(svcName(10), 70))), names(1, 3, 10); !slices.Equal(got, want) {
		t.Errorf("splitter of svc-00010: re-mapped %v, want %v", got, want)
	}
	if got := routes(svcName(10)); got != "* -> svc-00010.service.consul/v1:7000,svc-00010.service.consul/v2:3000" {
		t.Errorf("svc-00010 routes %s", got)
	}
	if got := routes(svcName(1)); !strings.HasPrefix(got, "prefix:/api -> svc-00010.service.consul/v1:7000,svc-00010.service.consul/v2:3000 |") {
		t.Errorf("svc-00001 routes %s: the route through svc-00010's splitter did not follow it", got)
	}

	// service-defaults: its service alone; deleted, the protocol reverts.
	if got, want := flushed(t, l, withEntry(l, kindServiceDefaults, svcName(30), &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: svcName(30), Protocol: "grpc"})), names(30); !slices.Equal(got, want) {
		t.Errorf("service-defaults of svc-00030: re-mapped %v, want %v", got, want)
	}
	if p := protocol(svcName(30)); p != model.ProtocolGRPC {
		t.Errorf("svc-00030 protocol %s", p)
	}
	if got, want := flushed(t, l, withEntry(l, kindServiceDefaults, svcName(30), nil)), names(30); !slices.Equal(got, want) {
		t.Errorf("service-defaults of svc-00030 deleted: re-mapped %v, want %v", got, want)
	}
	if p := protocol(svcName(30)); p != model.ProtocolTCP {
		t.Errorf("svc-00030 protocol %s after its service-defaults was deleted", p)
	}

	// A deleted resolver: the splits into its subsets are rejected, in its
	// own chain and in the chain that splits into it; written again, they
	// come back and the problems are gone.
	resolver20 := l.config.entries[kindResolver][svcName(20)]
	if got, want := flushed(t, l, withEntry(l, kindResolver, svcName(20), nil)), names(2, 20); !slices.Equal(got, want) {
		t.Errorf("resolver of svc-00020 deleted: re-mapped %v, want %v", got, want)
	}
	if s := published(l, svcName(20)); s.Traffic != nil {
		t.Errorf("svc-00020 traffic %+v after its resolver was deleted", s.Traffic)
	}
	wantIssues := "service-splitter svc-00002 Splits[1] rejected; service-splitter svc-00020 Splits[0] rejected"
	if got := strings.Join(notCarriedOf(l), "; "); got != wantIssues {
		t.Errorf("not carried\n got %s\nwant %s", got, wantIssues)
	}
	if got, want := flushed(t, l, withEntry(l, kindResolver, svcName(20), resolver20)), names(2, 20); !slices.Equal(got, want) {
		t.Errorf("resolver of svc-00020 back: re-mapped %v, want %v", got, want)
	}
	if got := notCarriedOf(l); len(got) != 0 {
		t.Errorf("not carried after the resolver came back: %v", got)
	}
	if got := routes(svcName(2)); got != "* -> svc-00002.service.consul:5000,svc-00020.service.consul/v2:5000" {
		t.Errorf("svc-00002 routes %s", got)
	}

	// Two answers folded in one pass: svc-00010 loses its splitter and its
	// resolver; the chains through it follow.
	if got, want := flushed(t, l, withEntry(l, kindSplitter, svcName(10), nil), withEntry(l, kindResolver, svcName(10), nil)), names(1, 3, 10); !slices.Equal(got, want) {
		t.Errorf("svc-00010's entries deleted: re-mapped %v, want %v", got, want)
	}
	if s := published(l, svcName(10)); s.Traffic != nil || s.Ports[0].Protocol != model.ProtocolHTTP {
		t.Errorf("svc-00010 after its resolver and splitter were deleted: traffic %+v, protocol %s", s.Traffic, s.Ports[0].Protocol)
	}
	if got := routes(svcName(1)); got != "prefix:/api -> svc-00010.service.consul | * -> svc-00001.service.consul" {
		t.Errorf("svc-00001 routes %s", got)
	}
	if _, ok := l.config.readers[svcName(10)][svcName(1)]; !ok {
		t.Errorf("svc-00001 no longer listed as reading svc-00010: %v", l.config.readers[svcName(10)])
	}

	// proxy-defaults: every service; deleted, every service reverts.
	pd := &api.ProxyConfigEntry{Kind: api.ProxyDefaults, Name: api.ProxyConfigGlobal, Config: map[string]any{"protocol": "http2"}}
	if got, want := flushed(t, l, withEntry(l, kindProxyDefaults, api.ProxyConfigGlobal, pd)), fmt.Sprintf("%d services", n); !slices.Equal(got, []string{want}) {
		t.Errorf("proxy-defaults: re-mapped %v, want %s", got, want)
	}
	if p, p0 := protocol(svcName(5)), protocol(svcName(0)); p != model.ProtocolHTTP2 || p0 != model.ProtocolHTTP {
		t.Errorf("proxy-defaults: svc-00005 %s (want HTTP2), svc-00000 %s (its service-defaults wins: HTTP)", p, p0)
	}
	if got, want := flushed(t, l, withEntry(l, kindProxyDefaults, api.ProxyConfigGlobal, nil)), fmt.Sprintf("%d services", n); !slices.Equal(got, []string{want}) {
		t.Errorf("proxy-defaults deleted: re-mapped %v, want %s", got, want)
	}
	if p := protocol(svcName(5)); p != model.ProtocolTCP {
		t.Errorf("svc-00005 protocol %s after proxy-defaults was deleted", p)
	}

	// Answers already waiting when the loop takes one are applied with it
	// and folded in once.
	l.events = make(chan event, 4)
	l.reconciled = map[string]int{}
	withEntry(l, kindSplitter, svcName(40), split9010(svcName(40), 60)).apply(context.Background(), l)
	l.events <- withEntry(l, kindSplitter, svcName(50), split9010(svcName(50), 60))
	l.events <- withEntry(l, kindServiceDefaults, svcName(60), &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: svcName(60), Protocol: "grpc"})
	l.applyWaiting(context.Background())
	if len(l.events) != 0 {
		t.Errorf("%d answers left waiting", len(l.events))
	}
	if got, want := flushed(t, l), names(40, 50, 60); !slices.Equal(got, want) {
		t.Errorf("three waiting answers: re-mapped %v, want %v", got, want)
	}

	// An answer that changes nothing re-maps nothing.
	if got := flushed(t, l, withEntry(l, kindSplitter, svcName(40), l.config.entries[kindSplitter][svcName(40)])); len(got) != 0 {
		t.Errorf("an unchanged answer re-mapped %v", got)
	}
}

// randomEntry is a config entry of kind for name, or nil (deleted), drawn
// among shapes that reach other services, subsets that may be missing,
// and parts Istio cannot state.
func randomEntry(rng *rand.Rand, kind, name string, universe []string) api.ConfigEntry {
	if rng.IntN(4) == 0 {
		return nil
	}
	other := func() string { return universe[rng.IntN(len(universe))] }
	subset := func() string { return []string{"", "v1", "v2", "v3"}[rng.IntN(4)] }
	switch kind {
	case kindServiceDefaults:
		return &api.ServiceConfigEntry{Kind: kind, Name: name, Protocol: []string{"http", "grpc", "tcp", "bogus", ""}[rng.IntN(5)]}
	case kindProxyDefaults:
		return &api.ProxyConfigEntry{Kind: kind, Name: api.ProxyConfigGlobal, Config: map[string]any{"protocol": []string{"http2", "http"}[rng.IntN(2)]}}
	case kindResolver:
		e := resolverEntry(name, map[string]string{"v1": "Service.Meta.version == v1", "v2": "Service.Meta.version == v2"})
		switch rng.IntN(5) {
		case 0:
			e.Subsets["v2"] = api.ServiceResolverSubset{Filter: "Service.Meta.version != v1"} // rejected
		case 1:
			e.Redirect = &api.ServiceResolverRedirect{Service: other(), ServiceSubset: subset()}
		case 2:
			e.DefaultSubset = subset()
		case 3:
			e.Failover = map[string]api.ServiceResolverFailover{"*": {Datacenters: []string{"dc2"}}} // ignored
		}
		return e
	case kindSplitter:
		var splits []api.ServiceSplit
		for w := range 1 + rng.IntN(2) {
			s := api.ServiceSplit{Weight: float32(30 + 40*w), ServiceSubset: subset()}
			if rng.IntN(2) == 0 {
				s.Service = other()
			}
			splits = append(splits, s)
		}
		if len(splits) == 1 {
			splits[0].Weight = 100
		}
		return splitterEntry(name, splits...)
	default:
		d := &api.ServiceRouteDestination{Service: other(), ServiceSubset: subset()}
		if rng.IntN(5) == 0 {
			d.NumRetries = 2 // rejected: no condition
		}
		return &api.ServiceRouterConfigEntry{Kind: kind, Name: name, Routes: []api.ServiceRoute{{
			Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathPrefix: "/" + other()}}, Destination: d,
		}}}
	}
}

// gaugeSeries lists the series a gauge vector holds, with their values.
func gaugeSeries(v *prometheus.GaugeVec) []string {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(v)
	mfs, _ := reg.Gather()
	var out []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, lp.GetName()+"="+lp.GetValue())
			}
			out = append(out, strings.Join(ls, ",")+fmt.Sprintf(" %v", m.GetGauge().GetValue()))
		}
	}
	slices.Sort(out)
	return out
}

// TestConfigFlushMatchesFullCompile: after any sequence of config entry
// changes, folded one by one or several at once, the services the loop
// publishes, their compiled chains, and what it reports as not carried are
// those of a loop that compiled everything from the same entries.
func TestConfigFlushMatchesFullCompile(t *testing.T) {
	const n = 12
	universe := names(0, 1, 2, 3, 4, 5, 6, 7, 20) // svc-00020 is not a service
	kinds := []string{kindServiceDefaults, kindResolver, kindResolver, kindSplitter, kindSplitter, kindRouter, kindProxyDefaults}
	rng := rand.New(rand.NewPCG(26, 10))
	l := entriesLoop(t, n)
	// The draw must reach what the test is about: chains that go through
	// other services, and parts not carried.
	across, problems := 0, 0
	for step := range 400 {
		var evs []configEvent
		for range 1 + rng.IntN(3) {
			kind := kinds[rng.IntN(len(kinds))]
			name := universe[rng.IntN(len(universe))]
			if kind == kindProxyDefaults {
				if rng.IntN(3) != 0 {
					continue // rare, as in a mesh
				}
				name = api.ProxyConfigGlobal
			}
			ev := withEntry(l, kind, name, randomEntry(rng, kind, name, universe))
			// Apply each answer before drawing the next: the next is
			// Consul's list after it.
			ev.apply(context.Background(), l)
			evs = append(evs, ev)
		}
		l.flushConfig()
		var all []api.ConfigEntry
		for _, k := range l.config.kinds {
			for _, e := range l.config.entries[k] {
				all = append(all, e)
			}
		}
		full := entriesLoop(t, n, all...)
		what := fmt.Sprintf("step %d (%d answers)", step, len(evs))
		for i := range n {
			name := svcName(i)
			a, b := published(l, name), published(full, name)
			if (a == nil) != (b == nil) || a != nil && !a.Equal(*b) {
				t.Fatalf("%s: %s published\n%+v\nwant (full compile)\n%+v", what, name, a, b)
			}
		}
		for _, name := range universe {
			if a, b := routeString(l.config.compiled[name]), routeString(full.config.compiled[name]); a != b {
				t.Fatalf("%s: %s compiled %s, want %s", what, name, a, b)
			}
		}
		if a, b := strings.Join(notCarriedOf(l), "; "), strings.Join(notCarriedOf(full), "; "); a != b {
			t.Fatalf("%s: not carried\n got %s\nwant %s", what, a, b)
		}
		if a, b := gaugeSeries(l.s.metrics.notCarried), gaugeSeries(full.s.metrics.notCarried); !slices.Equal(a, b) {
			t.Fatalf("%s: not-carried gauge\n got %v\nwant %v", what, a, b)
		}
		if len(l.config.notCarried) > 0 {
			problems++
		}
		for name, ch := range l.config.chains {
			if len(ch.reads) > 1 && l.config.compiled[name] != nil {
				across++
				break
			}
		}
	}
	t.Logf("steps with a chain through another service: %d; with parts not carried: %d", across, problems)
	if across < 100 || problems < 100 {
		t.Errorf("the draw reached too few chains through other services (%d) or problems (%d) in 400 steps", across, problems)
	}
}
