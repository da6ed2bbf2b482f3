package consul

import (
	"context"
	"fmt"
	"testing"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/model"
)

// svcName is the name of service i of entriesLoop.
func svcName(i int) string { return fmt.Sprintf("svc-%05d", i) }

// entriesLoop is a loop that has published n services (svcName) of 3
// instances each, versions v1, v2, v1, on one port whose protocol no meta
// states, with the given config entries, as after its initial state.
func entriesLoop(tb testing.TB, n int, entries ...api.ConfigEntry) *loop {
	tb.Helper()
	cfg := Config{ConfigEntries: ConfigEntriesConfig{TrafficPolicy: true}}
	cfg.SetDefaults()
	m, err := newMapper(&cfg, sourcesLimits())
	if err != nil {
		tb.Fatal(err)
	}
	s := &Source{cfg: cfg, mapper: m, metrics: newMetrics("t"), log: zap.NewNop()}
	l := &loop{s: s, config: newConfigState(cfg.ConfigEntries.kinds()), dc: "dc1",
		desired: map[string]*model.Service{}, published: map[string]model.Group{}, pending: map[string]model.Group{},
		claims: map[string]map[string]bool{}, failing: map[string]bool{}, filtered: map[string]bool{},
		warned: map[string]string{}, mapped: map[string]mapped{}}
	for i := range n {
		name := svcName(i)
		svc := &model.Service{Name: name, Host: name + ".service.consul", Ports: []model.Port{{Number: 8080, Protocol: model.ProtocolTCP}}}
		for j := range 3 {
			svc.Instances = append(svc.Instances, model.Instance{ID: fmt.Sprintf("n%d/%s", j, name),
				Address: fmt.Sprintf("10.%d.%d.%d", j, i/256, i%256), Ports: model.TargetPortsFromMap(map[uint32]uint32{8080: 8080}),
				Labels: model.MakeLabels("version", fmt.Sprintf("v%d", j%2+1))})
		}
		l.mapped[name] = mapped{defaulted: []uint32{8080}}
		l.setDesired(name, svc)
	}
	byKind := map[string]map[string]api.ConfigEntry{}
	for _, k := range l.config.kinds {
		byKind[k] = map[string]api.ConfigEntry{}
	}
	for _, e := range entries {
		byKind[e.GetKind()][e.GetName()] = e
	}
	for _, k := range l.config.kinds {
		configEvent{kind: k, entries: byKind[k]}.apply(context.Background(), l)
	}
	l.flushConfig()
	l.initialSent = true
	clear(l.pending)
	return l
}

// trafficEntries are the load driver's -consul-traffic entries for n
// services: every 10th has service-defaults (http), a resolver with
// subsets v1 and v2, and a 90/10 splitter.
func trafficEntries(n int) []api.ConfigEntry {
	var out []api.ConfigEntry
	for i := 0; i < n; i += 10 {
		out = append(out, &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: svcName(i), Protocol: "http"},
			resolverEntry(svcName(i), map[string]string{"v1": "Service.Meta.version == v1", "v2": "Service.Meta.version == v2"}),
			split9010(svcName(i), 90))
	}
	return out
}

// split9010 is name's splitter: w% to subset v1, the rest to v2.
func split9010(name string, w int) *api.ServiceSplitterConfigEntry {
	return splitterEntry(name, api.ServiceSplit{Weight: float32(w), ServiceSubset: "v1"}, api.ServiceSplit{Weight: float32(100 - w), ServiceSubset: "v2"})
}

// withEntry is the loop's current list of kind with e set (or name
// deleted when e is nil): the answer Consul gives after one write.
func withEntry(l *loop, kind, name string, e api.ConfigEntry) configEvent {
	entries := map[string]api.ConfigEntry{}
	for k, v := range l.config.entries[kind] {
		entries[k] = v
	}
	if e == nil {
		delete(entries, name)
	} else {
		entries[name] = e
	}
	return configEvent{kind: kind, entries: entries}
}

// BenchmarkConfigChange is the loop's work for one splitter change among
// 1k and 10k services (each answer carries every splitter, as Consul's
// /v1/config/service-splitter does): the answer's diff, the one chain
// compiled again, the one service re-mapped.
func BenchmarkConfigChange(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			l := entriesLoop(b, n, trafficEntries(n)...)
			k := 0
			b.ReportAllocs()
			for b.Loop() {
				name := svcName((k * 10) % n)
				ev := withEntry(l, kindSplitter, name, split9010(name, 51+k%40))
				k++
				ev.apply(context.Background(), l)
				l.flushConfig()
				if len(l.pending) != 1 {
					b.Fatalf("pending %d scopes, want 1", len(l.pending))
				}
				clear(l.pending)
			}
		})
	}
}
