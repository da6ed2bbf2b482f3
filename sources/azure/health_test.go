package azure

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource/cloudsourcetest"
)

// setHealth sets the vmHealth the Application Health extension reports in
// a VM's instance view (state: healthy, unhealthy, initializing, unknown),
// as Resource Manager returns it: {"status": {"code":
// "HealthState/<state>", "level", "displayStatus"}}; "" removes it (no
// extension).
func (f *fakeARM) setHealth(name, state string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	iv := f.vms[name]["properties"].(map[string]any)["instanceView"].(map[string]any)
	if state == "" {
		delete(iv, "vmHealth")
		return
	}
	display := map[string]string{"healthy": "Healthy", "unhealthy": "Unhealthy", "initializing": "Initializing",
		"unknown": "Unknown"}[state]
	iv["vmHealth"] = map[string]any{"status": map[string]any{"code": "HealthState/" + state, "level": "Info", "displayStatus": display}}
}

func withHealth(in model.Instance, h model.Health) model.Instance {
	in.Health = h
	return in
}

// TestHealth: with health enabled, a VM whose Application Health turns
// unhealthy leaves its services at the next list and comes back when
// healthy; unknown keeps the last answer; a VM without the extension is
// served (unknown); one initializing is not served yet; a failing list
// changes nothing.
func TestHealth(t *testing.T) {
	f := newFakeARM(t)
	fixture(f)
	for _, vm := range []string{"web-1", "web-2", "api-1"} {
		f.setHealth(vm, "healthy")
	}
	// db-1 has no Application Health extension.
	s, rep := newTestSource(t, f, func(c *Config) {
		c.Ports = []Port{{Number: 8000, Protocol: "http"}}
		c.Health.Enabled = true
	})
	// Buffered: a batch sent when none should be is seen by None, rather
	// than blocking the source.
	r := cloudsourcetest.Start(t, s, cloudsourcetest.Options{Reporter: rep, Buffer: 10})
	w1, w2, a1 := withHealth(web1, model.HealthPassing), withHealth(web2, model.HealthPassing), withHealth(api1, model.HealthPassing)
	api := func(instances ...model.Instance) model.Group {
		return group("api", []model.Port{{Number: 8000, Protocol: model.ProtocolHTTP}, httpGRPC[0], httpGRPC[1]}, instances...)
	}
	cloudsourcetest.AssertGroups(t, r.Next(t), []model.Group{
		api(w2, a1),
		group("cache", []model.Port{{Number: 5432, Protocol: model.ProtocolTCP}}, db1),
		group("db", []model.Port{{Number: 5432, Protocol: model.ProtocolTCP}}, db1),
		group("web", httpGRPC, w1, w2),
	})

	byHealth := func(h string) float64 { return testutil.ToFloat64(s.Lister.metrics.Health.WithLabelValues(h)) }
	f.setHealth("web-2", "unhealthy")
	// api's ports are the union of its VMs': without web-2, api-1's alone.
	cloudsourcetest.AssertGroups(t, r.Next(t), []model.Group{
		group("api", []model.Port{{Number: 8000, Protocol: model.ProtocolHTTP}}, a1), group("web", httpGRPC, w1)})
	f.listStarts.Wait(t, f.listStarts.Now(), 1)
	if byHealth("passing") != 2 || byHealth("critical") != 1 || byHealth("unknown") != 1 ||
		testutil.ToFloat64(s.Lister.metrics.Skipped.WithLabelValues(cloudsource.SkipUnhealthy)) != 1 {
		t.Errorf("by health: passing %v critical %v unknown %v", byHealth("passing"), byHealth("critical"), byHealth("unknown"))
	}

	// Unknown is no answer: web-2 stays out.
	f.setHealth("web-2", "unknown")
	f.listStarts.Wait(t, f.listStarts.Now(), 3)
	r.None(t)

	// A failing list changes nothing, whatever happened meanwhile.
	f.setFailAlways("virtualMachines", &armFailure{status: 500, code: "InternalServerError"})
	f.setHealth("web-2", "healthy")
	f.setHealth("web-1", "unhealthy")
	f.listStarts.Wait(t, f.listStarts.Now(), 3)
	r.None(t)
	f.setFailAlways("virtualMachines", nil)
	cloudsourcetest.AssertGroups(t, r.Next(t), []model.Group{api(w2, a1), group("web", httpGRPC, w2)})

	// A new VM is served once its application reports healthy.
	f.setHealth("web-1", "healthy")
	cloudsourcetest.AssertGroups(t, r.Next(t), []model.Group{group("web", httpGRPC, w1, w2)})
	f.put(azvm{name: "web-3", rg: "rg-mesh", zone: "2", vmID: vmWeb3, ip: "10.1.0.13", tags: withPorts(tags("mesh-service", "web"))})
	f.setHealth("web-3", "initializing")
	f.listStarts.Wait(t, f.listStarts.Now(), 3)
	r.None(t)
	f.setHealth("web-3", "healthy")
	web3 := inst(vmWeb3, "10.1.0.13", "eastus/eastus-2", vnet("rg-mesh"), withPorts(tags("mesh-service", "web")), "")
	cloudsourcetest.AssertGroups(t, r.Next(t), []model.Group{group("web", httpGRPC, w1, w2, withHealth(web3, model.HealthPassing))})
}

// TestHealthOff: without health, vmHealth is not read: an unhealthy VM is
// served, its health unknown.
func TestHealthOff(t *testing.T) {
	f := newFakeARM(t)
	fixture(f)
	f.setHealth("web-1", "unhealthy")
	s, _ := newTestSource(t, f, func(c *Config) { c.Ports = []Port{{Number: 8000, Protocol: "http"}} })
	cloudsourcetest.AssertGroups(t, mustList(t, s), fixtureGroups())
}
