package consul

import (
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/registry-adapter/registry-adapter/model"
)

func TestDecodeConfigEntries(t *testing.T) {
	ev := decodeConfigEntries(kindResolver, []map[string]any{
		{"Kind": "service-resolver", "Name": "web", "DefaultSubset": "v1", "ConnectTimeout": "5s",
			"Subsets": map[string]any{"v1": map[string]any{"Filter": "Service.Meta.version == v1"}}},
		{"Kind": "service-resolver", "Name": "bad", "ConnectTimeout": "five seconds"},
		{"Kind": "service-splitter", "Name": "odd"},
		{"Name": "kindless"},
	})
	if len(ev.entries) != 1 {
		t.Fatalf("entries %v", ev.entries)
	}
	r, ok := ev.entries["web"].(*api.ServiceResolverConfigEntry)
	if !ok || r.DefaultSubset != "v1" || r.ConnectTimeout.String() != "5s" || r.Subsets["v1"].Filter == "" {
		t.Errorf("decoded %+v", ev.entries["web"])
	}
	var msgs []string
	for _, is := range ev.issues {
		msgs = append(msgs, is.message)
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{`service-resolver "bad"`, `service-resolver "odd" came back as kind "service-splitter"`, `service-resolver "kindless"`} {
		if !strings.Contains(all, want) {
			t.Errorf("no issue naming %s in:\n%s", want, all)
		}
	}
}

func setEntry(t *testing.T, c *api.Client, e api.ConfigEntry) {
	t.Helper()
	ok, _, err := c.ConfigEntries().Set(e, nil)
	must(t, err)
	if !ok {
		t.Fatalf("Consul did not write %s %s", e.GetKind(), e.GetName())
	}
}

func portProtocols(s *model.Service) string {
	if s == nil {
		return "<none>"
	}
	var out []string
	for _, p := range s.Ports {
		out = append(out, string(p.Protocol))
	}
	return strings.Join(out, ",")
}

// TestConsulConfigEntries runs the source against config entries written
// with Consul's API, on an agent of its own (proxy-defaults is global).
func TestConsulConfigEntries(t *testing.T) {
	t.Parallel()
	a := startAgent(t, agentOpts{})
	c := a.client(t, "")
	// ce-web: nothing states its protocol but service-defaults. ce-api:
	// meta states it, and wins. ce-db: only proxy-defaults.
	catalogNode(t, c, "ce-n1", "127.0.8.1", nil, &api.AgentService{ID: "ce-web", Service: "ce-web", Port: 8080,
		Meta: map[string]string{"version": "v1"}}, api.HealthPassing)
	catalogNode(t, c, "ce-n2", "127.0.8.2", nil, &api.AgentService{ID: "ce-web", Service: "ce-web", Port: 8080,
		Meta: map[string]string{"version": "v2"}, Tags: []string{"canary"}}, api.HealthPassing)
	catalogNode(t, c, "ce-n1", "127.0.8.1", nil, &api.AgentService{ID: "ce-api", Service: "ce-api", Port: 9090,
		Meta: map[string]string{"protocol": "grpc"}}, api.HealthPassing)
	catalogNode(t, c, "ce-n3", "127.0.8.3", nil, &api.AgentService{ID: "ce-db", Service: "ce-db", Port: 5432}, api.HealthPassing)
	setEntry(t, c, &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "ce-web", Protocol: "http"})
	setEntry(t, c, &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "ce-api", Protocol: "http"})
	setEntry(t, c, &api.ProxyConfigEntry{Kind: api.ProxyDefaults, Name: api.ProxyConfigGlobal, Config: map[string]any{"protocol": "http2"}})

	cfg := testConfig(a.addr, "ce-")
	cfg.ConfigEntries.TrafficPolicy = true
	h := runSource(t, cfg)
	h.next("initial")
	for svc, want := range map[string]string{"ce-web": "HTTP", "ce-api": "GRPC", "ce-db": "HTTP2"} {
		if got := portProtocols(h.state.svc(svc)); got != want {
			t.Errorf("%s: protocol %s, want %s", svc, got, want)
		}
	}
	if tr := h.state.svc("ce-web").Traffic; tr != nil {
		t.Errorf("traffic before any resolver: %+v", tr)
	}

	// A resolver and a splitter: subsets, and a 90/10 split.
	setEntry(t, c, &api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: "ce-web", Subsets: map[string]api.ServiceResolverSubset{
		"v1": {Filter: "Service.Meta.version == v1"}, "v2": {Filter: "Service.Meta.version == v2"}, "canary": {Filter: `"canary" in Service.Tags`},
	}})
	setEntry(t, c, &api.ServiceSplitterConfigEntry{Kind: api.ServiceSplitter, Name: "ce-web", Splits: []api.ServiceSplit{
		{Weight: 90, ServiceSubset: "v1"}, {Weight: 10, ServiceSubset: "v2"},
	}})
	h.waitFor("the split", func(v view) bool {
		s := v.svc("ce-web")
		return s != nil && s.Traffic != nil && len(s.Traffic.Routes) == 1 && len(s.Traffic.Routes[0].Destinations) == 2
	})
	web := h.state.svc("ce-web")
	tr := web.Traffic
	if len(tr.Subsets) != 3 || tr.Subsets[2].Name != "v2" || !tr.Subsets[2].Labels.Equal(model.MakeLabels("version", "v2")) {
		t.Errorf("subsets %+v", tr.Subsets)
	}
	if d := tr.Routes[0].Destinations; d[0].Host != "ce-web.service.consul" || d[0].Subset != "v1" || d[0].Weight != 9000 || d[1].Subset != "v2" || d[1].Weight != 1000 {
		t.Errorf("split %+v", d)
	}
	for _, in := range web.Instances {
		_, canary := in.Labels.Get("canary")
		if canary != (in.ID == "ce-n2/ce-web") {
			t.Errorf("instance %s labels %s: only the instance tagged canary carries the canary label", in.ID, in.Labels)
		}
	}

	// service-defaults changes the protocol: the next batch carries it.
	setEntry(t, c, &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "ce-web", Protocol: "grpc"})
	h.waitFor("protocol from service-defaults", func(v view) bool { return portProtocols(v.svc("ce-web")) == "GRPC" })

	// A resolver Istio cannot state: reported by service and field, the
	// service still served, without traffic policy.
	setEntry(t, c, &api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: "ce-db", Subsets: map[string]api.ServiceResolverSubset{
		"zone-a": {Filter: `Node.Meta.zone == "a"`},
	}})
	h.waitLog("Consul config entry not carried")
	h.waitGauge("not carried", h.src.metrics.notCarried.WithLabelValues(kindResolver, "ce-db", "Subsets.zone-a.Filter", "rejected"), 1)
	if s := h.state.svc("ce-db"); s == nil || s.Traffic != nil || len(s.Instances) != 1 {
		t.Errorf("ce-db after its resolver was rejected: %+v", s)
	}

	// Removing the splitter removes the route; the subsets stay.
	_, err := c.ConfigEntries().Delete(api.ServiceSplitter, "ce-web", nil)
	must(t, err)
	h.waitFor("the split gone", func(v view) bool {
		s := v.svc("ce-web")
		return s != nil && s.Traffic != nil && len(s.Traffic.Routes) == 0 && len(s.Traffic.Subsets) == 3
	})
	if got := h.counter(h.src.metrics.requests.WithLabelValues("config", "ok")); got < 5 {
		t.Errorf("config requests ok = %v, want at least one per kind", got)
	}
}
