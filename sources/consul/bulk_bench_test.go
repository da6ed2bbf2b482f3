package consul

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
)

// BenchmarkBulkFirstState is the adapter's share of the bulk first read at
// 30,000 services of 3 instances (the load driver's registry: ten instances
// per node, a tag, a meta key and a check each): decoding the node dump and
// the node list, grouping the entries by service, and mapping every service.
func BenchmarkBulkFirstState(b *testing.B) {
	const services, perNode = 30000, 10
	var dump []map[string]any
	var nodes []map[string]any
	for k := range services * 3 {
		svc, j := k/3, k%3
		if k%perNode == 0 {
			node := fmt.Sprintf("node-%05d", k/perNode)
			addr := fmt.Sprintf("10.250.%d.%d", (k/perNode)>>8&0xff, (k/perNode)&0xff)
			dump = append(dump, map[string]any{"Node": node, "Address": addr, "Services": []any{}, "Checks": []any{}})
			nodes = append(nodes, map[string]any{"Node": node, "Address": addr, "Datacenter": "dc1"})
		}
		d := dump[len(dump)-1]
		id := fmt.Sprintf("svc-%06d-%d", svc, j)
		// Every field Consul 1.22 writes for them (its dev agent's answer,
		// without the indentation dev mode adds: 617 bytes per instance).
		d["Services"] = append(d["Services"].([]any), map[string]any{"ID": id, "Service": fmt.Sprintf("svc-%06d", svc),
			"Address": fmt.Sprintf("10.%d.%d.%d", (k>>16)&0xff, (k>>8)&0xff, k&0xff), "Port": 8080,
			"Tags": []string{"version=v1"}, "Meta": map[string]string{"protocol": "http"}, "Weights": map[string]int{"Passing": 1, "Warning": 1},
			"EnableTagOverride": false, "Proxy": map[string]any{"Mode": "", "MeshGateway": map[string]any{}, "Expose": map[string]any{}},
			"Connect": map[string]any{}, "PeerName": "", "CreateIndex": 100000 + k, "ModifyIndex": 100000 + k})
		d["Checks"] = append(d["Checks"].([]any), map[string]any{"Node": d["Node"], "CheckID": "service:" + id, "Name": "alive",
			"Status": "passing", "Notes": "", "Output": "", "ServiceID": id, "ServiceName": fmt.Sprintf("svc-%06d", svc),
			"ServiceTags": []string{"version=v1"}, "Type": "", "Interval": "", "Timeout": "", "ExposedPort": 0,
			"Definition": map[string]any{}, "CreateIndex": 100000 + k, "ModifyIndex": 100000 + k})
	}
	dumpJSON, _ := json.Marshal(dump)
	nodesJSON, _ := json.Marshal(nodes)
	var cfg Config
	cfg.SetDefaults()
	m, err := newMapper(&cfg, sourcesLimits())
	if err != nil {
		b.Fatal(err)
	}
	s := &Source{cfg: cfg, log: zap.NewNop()}
	b.Logf("node dump %d bytes (%d per instance), node list %d bytes", len(dumpJSON), len(dumpJSON)/(services*3), len(nodesJSON))
	b.ReportAllocs()
	for b.Loop() {
		var d []*dumpNode
		var n []*api.Node
		if err := json.NewDecoder(bytes.NewReader(dumpJSON)).Decode(&d); err != nil {
			b.Fatal(err)
		}
		if err := json.NewDecoder(bytes.NewReader(nodesJSON)).Decode(&n); err != nil {
			b.Fatal(err)
		}
		entries := s.toEntries(d, n)
		if len(entries) != services {
			b.Fatalf("%d services", len(entries))
		}
		for name, es := range entries {
			if r := m.mapService(name, "", es); r.svc == nil || len(r.svc.Instances) != 3 {
				b.Fatalf("%s: %+v", name, r)
			}
		}
	}
}
