//go:build measure

package e2e

// A measurement, not part of the suite (build tag measure): how long a
// registry change takes to move real traffic, for BENCHMARKS.md. Run (one N
// per run):
//
//	cd integration/e2e && flock /tmp/ra-heavy.lock go test -tags measure -count=1 -timeout 30m -run TestMeasureTrafficMove -v .
//
// Environment: MEASURE_SERVICES (default 100: the echo service and N-1
// others), MEASURE_CHANGES (default 60, half critical, half passing again),
// MEASURE_PATH (default xds-inline; any of the traffic rig's paths).
//
// Consul holds N services; N-1 of them have one instance each on an address
// nothing listens on (they only make istiod's and the adapter's work the
// size of N). The echo service has three instances that serve, one of which
// (echo-x) flips between critical and passing; one adapter serves them
// through MEASURE_PATH with its defaults (debounce 100 ms quiet, 1 s max;
// the Consul source's minQueryInterval of 1 s is never in the way, changes
// are 2 s apart), to an istiod with its defaults. A proxyless gRPC client
// sends 200 RPCs per second to echo; a sidecar (fidelity.Proxy) holds an
// ADS stream on the same istiod. For each change, from the moment Consul's
// transaction returned:
//   - traffic: to passing, the first RPC echo-x served; to critical, the
//     last one it served (the time after which no RPC reached it). At 200
//     RPCs per second over three instances, echo-x is due every 15 ms;
//   - config: the sidecar's first endpoint assignment of echo's cluster
//     that shows the change (the config-level latency of BENCHMARKS.md,
//     measured on the same changes).

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/registry-adapter/registry-adapter/fidelity"
)

func TestMeasureTrafficMove(t *testing.T) {
	n := envInt("MEASURE_SERVICES", 100)
	changes := envInt("MEASURE_CHANGES", 60)
	path := allTrafficPaths[0]
	if v := os.Getenv("MEASURE_PATH"); v != "" {
		i := slices.IndexFunc(allTrafficPaths, func(p trafficPath) bool { return p.name == v })
		if i < 0 {
			t.Fatalf("MEASURE_PATH %q: not one of the rig's paths", v)
		}
		path = allTrafficPaths[i]
	}
	c, consulAddr := startConsul(t, 0)
	echo := []echoInstance{
		newEchoInstance(t, "echo", "echo-1", ""), newEchoInstance(t, "echo", "echo-2", ""),
		newEchoInstance(t, "echo", "echo-x", ""),
	}
	registerEcho(t, c, echo...)
	var bg []vm
	for i := 1; i < n; i++ {
		bg = append(bg, vm{service: fmt.Sprintf("bg-%d", i), node: fmt.Sprintf("bg-%d", i),
			addr: fmt.Sprintf("10.77.%d.%d", i/250, i%250+1)})
	}
	for len(bg) > 0 { // Consul takes at most 128 operations per transaction
		k := min(40, len(bg))
		registerTxn(t, c, bg[:k]...)
		bg = bg[k:]
	}
	t.Logf("N=%d services, path %s, load average %s", n, path.name, loadavg())

	r := startTrafficRig(t, rigOptions{tag: "measure", consulAddr: consulAddr, paths: []trafficPath{path}, consulDefaults: true})
	host := r.host(path, "echo")
	px, err := fidelity.DialProxy(fidelity.ProxyConfig{Address: r.istiod.grpcAddr, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	cluster := fmt.Sprintf("outbound|%d||%s", echoPort, host)
	client := newMeshClient(t, r.istiod, "measure-client", "default", "", "")
	key := fmt.Sprintf("%s/echo/%d", path.name, echoPort)
	l := startLoad(t, client.dial(t, host, echoPort), key, 200)
	l.settled(t, l.mark(), 100, "every echo instance answers", true, nodesOf(echo...)...)
	x := echo[2]
	xAddr := fmt.Sprintf("%s:%d", x.ip(), echoPort)
	eventually(t, 60*time.Second, "the sidecar holds echo-x", func() error {
		if !slices.Contains(px.View().Clusters[cluster].Endpoints, xAddr) {
			return fmt.Errorf("%s: %v", cluster, px.View().Clusters[cluster])
		}
		return nil
	})

	var traffic, config [2][]time.Duration // [0] critical, [1] passing
	for i := range changes {
		passing := i%2 == 1
		status := consulapi.HealthCritical
		if passing {
			status = consulapi.HealthPassing
		}
		_, from := px.Events(1 << 30)
		setHealth(t, c, status, x)
		t0 := time.Now()
		k := 0
		if passing {
			k = 1
		}
		// Config: the first assignment of echo's cluster showing it.
		eventually(t, 60*time.Second, fmt.Sprintf("change %d: the sidecar sees echo-x %s", i, status), func() error {
			evs, _ := px.Events(from)
			for _, e := range evs {
				if e.Cluster == cluster && slices.Contains(e.Endpoints, xAddr) == passing {
					config[k] = append(config[k], e.At.Sub(t0))
					return nil
				}
			}
			return fmt.Errorf("not yet")
		})
		// Traffic: moved once the last 50 RPCs agree with the change.
		want := nodesOf(echo[:2]...)
		if passing {
			want = nodesOf(echo...)
		}
		l.settled(t, l.mark(), 50, fmt.Sprintf("change %d: traffic follows echo-x %s", i, status), passing, want...)
		if passing {
			first, ok := x.servers[0].firstFromAfter(key, t0)
			if !ok {
				t.Fatalf("change %d: echo-x passing, no RPC reached it", i)
			}
			traffic[k] = append(traffic[k], first.Sub(t0))
		} else {
			last, _ := x.servers[0].lastFrom(key)
			traffic[k] = append(traffic[k], max(0, last.Sub(t0)))
		}
		time.Sleep(2 * time.Second) // pacing between changes, not synchronising
	}
	failed, total := l.failures(0)
	all := func(d [2][]time.Duration) []time.Duration { return append(slices.Clone(d[0]), d[1]...) }
	t.Logf("N=%d, %s, %d changes, load average %s after", n, path.name, changes, loadavg())
	t.Logf("registry change -> traffic moved, all: %s", summary(all(traffic)))
	t.Logf("  to critical (last RPC at the instance): %s", summary(traffic[0]))
	t.Logf("  to passing (first RPC at the instance): %s", summary(traffic[1]))
	t.Logf("registry change -> sidecar's EDS, all: %s", summary(all(config)))
	t.Logf("  to critical: %s", summary(config[0]))
	t.Logf("  to passing: %s", summary(config[1]))
	t.Logf("RPCs: %d, failed: %s", total, describeFailures(failed))
}
