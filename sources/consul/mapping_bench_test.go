package consul

import (
	"fmt"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/registry-adapter/registry-adapter/sources"
)

// BenchmarkMapService maps one health answer of 100 instances, each with
// tags, meta, a tagged address and two checks: the work of every watch's
// every answer.
func BenchmarkMapService(b *testing.B) {
	var c Config
	c.SetDefaults()
	c.TaggedAddresses = []string{"lan_ipv4"}
	m, err := newMapper(&c, sourcesLimits())
	if err != nil {
		b.Fatal(err)
	}
	var entries []*api.ServiceEntry
	for i := range 100 {
		e := testEntry(fmt.Sprintf("vm-%03d", i), fmt.Sprintf("10.1.%d.%d", i/256, i%256), api.AgentService{
			ID: fmt.Sprintf("web-%d", i), Service: "web", Port: 8080,
			Tags:            []string{"v1", "version=v1", "env=prod", "team|payments"},
			Meta:            map[string]string{"protocol": "http", "owner": "team-a", "build": fmt.Sprint(i)},
			TaggedAddresses: map[string]api.ServiceAddress{"lan_ipv4": {Address: fmt.Sprintf("10.2.%d.%d", i/256, i%256), Port: 8080}},
		}, "serfHealth=passing", "http=passing")
		e.Node.Meta = map[string]string{"zone": "z1"}
		entries = append(entries, e)
	}
	b.ReportAllocs()
	for b.Loop() {
		if r := m.mapService("web", "", entries); r.svc == nil || len(r.svc.Instances) != 100 {
			b.Fatalf("mapped %+v", r)
		}
	}
}

// sourcesLimits are the limits the adapter gives a source by default.
func sourcesLimits() sources.Limits { return sources.Limits{PortsPerInstance: 256} }
