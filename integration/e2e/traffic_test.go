package e2e

// Traffic through the real istiod: a proxyless gRPC client's RPCs to echo
// servers registered in Consul, a static source and EC2, through both sinks
// and both output modes (traffic_rig_test.go), while the registry changes.

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// pathLoads are one path's steady loads.
type pathLoads struct {
	echo, zoned *load
}

// TestTrafficFollowsTheRegistry: every RPC reaches a registered, passing
// instance (the ledger checks every RPC every server served); a critical
// instance gets no RPC once trafficBound has passed since Consul said so,
// and gets traffic again once it passes; a deregistered instance gets none
// and a new one gets traffic; a multi-port service answers on each port; a
// static-source and an EC2 instance are reachable; with instances in two
// zones, a client in zone a spreads over both until a DestinationRule turns
// on locality failover, then stays in its zone while it has healthy
// instances there, fails over to the other zone, and comes back. Through
// xDS and Kubernetes sinks, inline and workloadentry modes at once.
func TestTrafficFollowsTheRegistry(t *testing.T) {
	t.Parallel()
	c, consulAddr := startConsul(t, 0)
	moto := startMoto(t)

	echo := []echoInstance{
		newEchoInstance(t, "echo", "echo-1", ""), newEchoInstance(t, "echo", "echo-2", ""),
		newEchoInstance(t, "echo", "echo-3", ""),
	}
	echo4 := newEchoInstance(t, "echo", "echo-4", "") // registered later
	mp := []echoInstance{
		newEchoInstance(t, "mp", "mp-1", "", echoPort, echoPort+1), newEchoInstance(t, "mp", "mp-2", "", echoPort, echoPort+1),
	}
	zoneA := []echoInstance{newEchoInstance(t, "zoned", "zoned-a1", "a"), newEchoInstance(t, "zoned", "zoned-a2", "a")}
	zoneB := []echoInstance{newEchoInstance(t, "zoned", "zoned-b1", "b"), newEchoInstance(t, "zoned", "zoned-b2", "b")}
	// split: Consul's service-splitter sends 90% to subset v1, 10% to v2.
	split := []echoInstance{newEchoInstance(t, "split", "split-v1", ""), newEchoInstance(t, "split", "split-v2", "")}
	split[0].meta = map[string]string{"version": "v1"}
	split[1].meta = map[string]string{"version": "v2"}
	static := newEchoInstance(t, "echo-static", "static-1", "")
	ec2 := ec2Echo(t, moto)
	var servers []*echoServer
	for _, in := range slices.Concat(echo, []echoInstance{echo4, static, ec2}, mp, zoneA, zoneB, split) {
		servers = append(servers, in.servers...)
	}

	ledger := newLedger(trafficBound)
	ledger.allow("echo", nodesOf(echo...)...)
	ledger.allow("mp", nodesOf(mp...)...)
	ledger.allow("zoned", nodesOf(slices.Concat(zoneA, zoneB)...)...)
	ledger.allow("echo-static", static.node)
	ledger.allow("echo-ec2", ec2.node)
	ledger.allow("split", nodesOf(split...)...)
	registerEcho(t, c, slices.Concat(echo, mp, zoneA, zoneB, split)...)
	// Before the adapters start: their first state already holds the
	// VirtualService, so every RPC to split goes through it.
	setConfigEntry(t, c, &consulapi.ServiceConfigEntry{Kind: consulapi.ServiceDefaults, Name: "split", Protocol: "grpc"})
	setConfigEntry(t, c, &consulapi.ServiceResolverConfigEntry{Kind: consulapi.ServiceResolver, Name: "split",
		Subsets: map[string]consulapi.ServiceResolverSubset{
			"v1": {Filter: "Service.Meta.version == v1"}, "v2": {Filter: "Service.Meta.version == v2"}}})
	setConfigEntry(t, c, &consulapi.ServiceSplitterConfigEntry{Kind: consulapi.ServiceSplitter, Name: "split",
		Splits: []consulapi.ServiceSplit{{Weight: 90, ServiceSubset: "v1"}, {Weight: 10, ServiceSubset: "v2"}}})

	r := startTrafficRig(t, rigOptions{tag: "follow", consulAddr: consulAddr, staticIP: static.ip(), moto: moto, trafficPolicy: true})
	const clientNS = "traffic-follow-client"
	kubeNamespace(t, clientNS)
	client := newMeshClient(t, r.istiod, "traffic-client", clientNS, "dc1", "a")
	key := func(p trafficPath, service string, port int) string {
		return fmt.Sprintf("%s/%s/%d", p.name, service, port)
	}

	loads := map[string]pathLoads{}
	for _, p := range r.paths {
		loads[p.name] = pathLoads{
			echo:  startLoad(t, client.dial(t, r.host(p, "echo"), echoPort), key(p, "echo", echoPort), 50),
			zoned: startLoad(t, client.dial(t, r.host(p, "zoned"), echoPort), key(p, "zoned", echoPort), 20),
		}
	}
	marks := func(pick func(pathLoads) *load) map[string]int {
		out := map[string]int{}
		for name, l := range loads {
			out[name] = pick(l).mark()
		}
		return out
	}
	echoLoad := func(l pathLoads) *load { return l.echo }
	zonedLoad := func(l pathLoads) *load { return l.zoned }

	// Every path reaches every instance of echo.
	m := marks(echoLoad)
	for _, p := range r.paths {
		loads[p.name].echo.settled(t, m[p.name], 60, "initial: every echo instance answers", true, nodesOf(echo...)...)
	}

	// The static and the EC2 instance; the multi-port service on each of
	// its ports, each port at its own server (the ledger checks the port).
	for _, p := range r.paths {
		for _, probe := range []struct {
			host, service string
			port          int
			want          []string
		}{
			{r.staticHost(p), "echo-static", echoPort, []string{static.node}},
			{r.ec2Host(p), "echo-ec2", echoPort, []string{ec2.node}},
			{r.host(p, "mp"), "mp", echoPort, nodesOf(mp...)},
			{r.host(p, "mp"), "mp", echoPort + 1, nodesOf(mp...)},
		} {
			conn := client.dial(t, probe.host, probe.port)
			k := key(p, probe.service, probe.port)
			waitServing(t, conn, k)
			var ids []string
			for _, n := range probe.want {
				ids = append(ids, fmt.Sprintf("%s:%d", n, probe.port))
			}
			reachEach(t, conn, k, ids...)
		}
	}

	// Consul's 90/10 split, in real RPCs: gRPC picks a weighted cluster per
	// RPC from the route istiod built from the adapter's VirtualService, and
	// each subset cluster holds its version's instance. 500 RPCs: v2's
	// count is binomial (mean 50, sd 6.7); 20 to 80 is 4.5 sd each way, and
	// an even spread (no split: 250) or none to v2 is far outside.
	for _, p := range r.paths {
		conn := client.dial(t, r.host(p, "split"), echoPort)
		k := key(p, "split", echoPort)
		waitServing(t, conn, k)
		got := burst(t, conn, k, 500)
		v2 := got[fmt.Sprintf("%s:%d", split[1].node, echoPort)]
		t.Logf("%s: 500 RPCs to split (Consul's splitter: 90%% v1, 10%% v2): %v", p.name, got)
		if v2 < 20 || v2 > 80 || got[fmt.Sprintf("%s:%d", split[0].node, echoPort)] != 500-v2 {
			t.Errorf("%s: 500 RPCs to split reached %v; want v2 10%% (20 to 80 of 500), the rest v1", p.name, got)
		}
	}

	// moved waits until every path's load sends only to want, then checks
	// that gone got no RPC from any path later than trafficBound after t0,
	// and logs when each path's last one was.
	moved := func(what string, t0 time.Time, pick func(pathLoads) *load, gone []echoInstance, want ...string) {
		t.Helper()
		m := marks(pick)
		for _, p := range r.paths {
			pick(loads[p.name]).settled(t, m[p.name], 50, what, true, want...)
		}
		var report []string
		for _, p := range r.paths {
			for _, g := range gone {
				last, ok := g.servers[0].lastFrom(p.name + "/")
				switch {
				case !ok || last.Before(t0):
					report = append(report, fmt.Sprintf("%s %s: none after the change", p.name, g.node))
				case last.Sub(t0) > trafficBound:
					t.Errorf("%s: %s: %s got an RPC %s after the change, more than %s", what, p.name, g.node,
						last.Sub(t0).Round(time.Millisecond), trafficBound)
				default:
					report = append(report, fmt.Sprintf("%s %s: last RPC +%s", p.name, g.node, last.Sub(t0).Round(time.Millisecond)))
				}
			}
		}
		t.Logf("%s: %s", what, strings.Join(report, "; "))
	}
	// back waits until every path's load reaches each of want and logs when
	// each of came got its first RPC after t0.
	back := func(what string, t0 time.Time, pick func(pathLoads) *load, came []echoInstance, want ...string) {
		t.Helper()
		m := marks(pick)
		for _, p := range r.paths {
			pick(loads[p.name]).settled(t, m[p.name], 50, what, true, want...)
		}
		var report []string
		for _, p := range r.paths {
			for _, in := range came {
				if first, ok := in.servers[0].firstFromAfter(p.name+"/", t0); ok {
					report = append(report, fmt.Sprintf("%s %s: first RPC +%s", p.name, in.node, first.Sub(t0).Round(time.Millisecond)))
				}
			}
		}
		t.Logf("%s: %s", what, strings.Join(report, "; "))
	}

	// A health flip.
	setHealth(t, c, consulapi.HealthCritical, echo[0])
	t0 := ledger.allow("echo", echo[1].node, echo[2].node)
	moved("echo-1 critical", t0, echoLoad, echo[:1], echo[1].node, echo[2].node)
	t0 = ledger.allow("echo", nodesOf(echo...)...)
	setHealth(t, c, consulapi.HealthPassing, echo[0])
	back("echo-1 passing again", t0, echoLoad, echo[:1], nodesOf(echo...)...)

	// A deregistration, then a new instance.
	deregisterEcho(t, c, echo[1])
	t0 = ledger.allow("echo", echo[0].node, echo[2].node)
	moved("echo-2 deregistered", t0, echoLoad, echo[1:2], echo[0].node, echo[2].node)
	t0 = ledger.allow("echo", echo[0].node, echo[2].node, echo4.node)
	registerEcho(t, c, echo4)
	back("echo-4 registered", t0, echoLoad, []echoInstance{echo4}, echo[0].node, echo[2].node, echo4.node)

	// Locality. Without a DestinationRule istiod sends the zones' endpoints
	// at one priority, and gRPC spreads over both by locality weight.
	zoned := nodesOf(slices.Concat(zoneA, zoneB)...)
	m = marks(zonedLoad)
	for _, p := range r.paths {
		loads[p.name].zoned.settled(t, m[p.name], 40, "no DestinationRule: both zones answer", true, zoned...)
	}
	var shares []string
	for _, p := range r.paths {
		shares = append(shares, fmt.Sprintf("%s %v", p.name, byNode(loads[p.name].zoned.last(40))))
	}
	t.Logf("locality without a DestinationRule, client in dc1/a, last 40 RPCs per path: %s", strings.Join(shares, "; "))
	// With outlier detection configured, istiod orders the localities by
	// the client's (priority 0: dc1/a, 1: dc1/b) and gRPC's priority policy
	// keeps to the first that is ready.
	for _, p := range r.paths {
		localityRule(t, clientNS, "zoned-"+p.name, r.host(p, "zoned"))
	}
	m = marks(zonedLoad)
	for _, p := range r.paths {
		loads[p.name].zoned.settled(t, m[p.name], 100, "DestinationRule: traffic stays in zone a", true, nodesOf(zoneA...)...)
	}
	setHealth(t, c, consulapi.HealthCritical, zoneA...)
	t0 = ledger.allow("zoned", nodesOf(zoneB...)...)
	moved("zone a critical: failover to zone b", t0, zonedLoad, zoneA, nodesOf(zoneB...)...)
	t0 = ledger.allow("zoned", zoned...)
	setHealth(t, c, consulapi.HealthPassing, zoneA...)
	back("zone a passing again: back in zone a", t0, zonedLoad, zoneA, nodesOf(zoneA...)...)

	// Every RPC served, checked against the ledger; no RPC failed.
	for _, p := range r.paths {
		for name, l := range map[string]*load{"echo": loads[p.name].echo, "zoned": loads[p.name].zoned} {
			failed, total := l.failures(0)
			t.Logf("%s %s: %d RPCs, failed: %s", p.name, name, total, describeFailures(failed))
			if len(failed) > 0 {
				t.Errorf("%s %s: %d of %d RPCs failed", p.name, name, len(failed), total)
			}
		}
	}
	for _, l := range loads {
		l.echo.stop()
		l.zoned.stop()
	}
	n := ledger.check(t, servers)
	t.Logf("%d RPCs served in all, each by an instance registered and passing (or within %s of it)", n, trafficBound)
}
