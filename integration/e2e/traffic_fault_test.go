package e2e

// Traffic through faults: a steady stream of RPCs from a proxyless gRPC
// client, through each sink and output mode (traffic_rig_test.go), to a
// service whose instances stay healthy throughout, while the faults that
// matter to users happen upstream of istiod. Every failed RPC is counted and
// printed per fault and per path; the target is zero.

import (
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// nsConsul is a Consul dev agent inside a network namespace of the test's
// own, reachable from the host only through the namespace's veth pair, so
// that the test can partition it (link down) as well as kill and restart it.
type nsConsul struct {
	link   *netnsLink
	proc   *process
	addr   string
	client *consulapi.Client
}

func newNSConsul(t *testing.T) *nsConsul {
	t.Helper()
	l := makeNetns(t)
	c := &nsConsul{link: l, addr: l.nsIP + ":8500"}
	cfg := consulapi.DefaultConfig()
	cfg.Address = c.addr
	client, err := consulapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.client = client
	return c
}

// start runs a dev agent (a new, empty catalog) and waits for its leader.
func (c *nsConsul) start(t *testing.T) {
	t.Helper()
	c.proc = launch(t, "ip", "netns", "exec", c.link.ns, consulBin, "agent", "-dev", "-node", "dev",
		"-bind", "127.0.0.1", "-advertise", "127.0.0.1", "-client", "127.0.0.1 "+c.link.nsIP,
		"-http-port", "8500", "-serf-wan-port", "-1", "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1")
	eventually(t, 60*time.Second, "Consul in the namespace has a leader", func() error {
		select {
		case <-c.proc.done:
			return fmt.Errorf("consul exited: %s", tail(c.proc.output(), 20))
		default:
		}
		code, body, err := httpGet("http://" + c.addr + "/v1/status/leader")
		if err != nil || code != http.StatusOK || len(body) < 4 {
			return fmt.Errorf("%d %s %v", code, body, err)
		}
		return nil
	})
}

// kill ends the agent with SIGKILL (ip netns exec execs consul, so the
// process is the agent itself).
func (c *nsConsul) kill(t *testing.T) {
	t.Helper()
	if err := c.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.proc.done
}

// TestTrafficThroughFaults: three echo instances stay registered, passing
// and serving throughout; a client sends 50 RPCs per second through each of
// the four paths while, in turn: istiod's stream to each xDS-sink adapter is
// cut; every adapter restarts (SIGTERM) and crashes (SIGKILL); Consul is
// partitioned and every adapter restarts during the partition (two of them
// with a state file, which they serve; the others serve nothing until Consul
// is back, and istiod keeps what it had); Consul is killed and comes back as
// an empty dev agent (the guard holds the mass deletion), then the instances
// register again. No RPC may fail.
func TestTrafficThroughFaults(t *testing.T) {
	t.Parallel()
	consul := newNSConsul(t)
	consul.start(t)
	echo := []echoInstance{
		newEchoInstance(t, "echo", "echo-1", ""), newEchoInstance(t, "echo", "echo-2", ""),
		newEchoInstance(t, "echo", "echo-3", ""),
	}
	registerEcho(t, consul.client, echo...)
	withState := func(p trafficPath) bool { return p.mode == "inline" }
	r := startTrafficRig(t, rigOptions{tag: "faults", consulAddr: consul.addr, streamProxy: true, stateFile: withState,
		// The fleet is three instances; the guard's default leaves sources
		// under ten instances unguarded.
		extra: "guard: {minInstances: 1}\n"})
	client := newMeshClient(t, r.istiod, "traffic-faults-client", "default", "", "")
	loads := map[string]*load{}
	for _, p := range r.paths {
		loads[p.name] = startLoad(t, client.dial(t, r.host(p, "echo"), echoPort), fmt.Sprintf("%s/echo/%d", p.name, echoPort), 50)
	}
	everyInstance := func(what string) {
		t.Helper()
		for _, p := range r.paths {
			m := loads[p.name].mark()
			loads[p.name].settled(t, m, 30, what+": every instance answers", true, nodesOf(echo...)...)
		}
	}
	everyInstance("before the faults")

	var summary []string
	failedTotal := 0
	// fault runs one fault and counts the RPCs that failed from its start
	// until traffic reached every instance again after it.
	fault := func(name string, do func()) {
		t.Helper()
		marks := map[string]int{}
		for name, l := range loads {
			marks[name] = l.mark()
		}
		start := time.Now()
		do()
		everyInstance(name)
		var line []string
		for _, p := range r.paths {
			failed, total := loads[p.name].failures(marks[p.name])
			failedTotal += len(failed)
			line = append(line, fmt.Sprintf("%s %d/%d", p.name, len(failed), total))
			if len(failed) > 0 {
				t.Errorf("%s: %s: failed RPCs: %s", name, p.name, describeFailures(failed))
			}
		}
		s := fmt.Sprintf("%s (%s): failed/sent %s", name, time.Since(start).Round(100*time.Millisecond), strings.Join(line, ", "))
		t.Log(s)
		summary = append(summary, s)
	}

	// xdsSynced waits until istiod holds one stream to each xDS-sink
	// adapter (of those only picks, if given), opened after the stream ids
	// in after, that ACKed every type.
	xdsSynced := func(what string, after map[string]int64, only ...func(trafficPath) bool) {
		t.Helper()
		for _, p := range r.paths {
			if p.sink != "xds" || (len(only) > 0 && !only[0](p)) {
				continue
			}
			a := r.adapter(p)
			eventually(t, 60*time.Second, p.name+": "+what, func() error {
				cl, err := clients(t, a.debugAddr)
				if err != nil {
					return err
				}
				if len(cl) != 1 || cl[0].StreamID <= after[p.name] || !cl[0].synced() {
					return fmt.Errorf("clients %+v (want a stream after %d)", cl, after[p.name])
				}
				return nil
			})
		}
	}
	streams := func() map[string]int64 {
		out := map[string]int64{}
		for _, p := range r.paths {
			if p.sink != "xds" {
				continue
			}
			cl, err := clients(t, r.adapter(p).debugAddr)
			if err != nil {
				t.Fatal(err)
			}
			for _, ci := range cl {
				out[p.name] = max(out[p.name], ci.StreamID)
			}
		}
		return out
	}
	ready := func(what string) {
		t.Helper()
		for _, p := range r.paths {
			a := r.adapter(p)
			eventually(t, 60*time.Second, p.name+": "+what, func() error {
				if code, body, err := httpGet("http://" + a.debugAddr + "/readyz"); err != nil || code != http.StatusOK {
					return fmt.Errorf("readyz %d %s %v", code, body, err)
				}
				if p.sink == "kubernetes" && a.metric(t, "registry_adapter_kube_leader") != 1 {
					return fmt.Errorf("not leading")
				}
				return nil
			})
		}
	}
	xdsSynced("istiod synced", nil)

	fault("istiod's stream to the adapter cut 5 times", func() {
		for range 5 {
			before := streams()
			for _, px := range r.proxies {
				if px.cut() == 0 {
					t.Fatal("no stream to cut")
				}
			}
			xdsSynced("istiod resynced after a cut", before)
		}
	})

	fault("every adapter restarted (SIGTERM), then crashed (SIGKILL) and restarted", func() {
		for _, restart := range []func(*adapterProc, *testing.T){(*adapterProc).restart, (*adapterProc).crash} {
			for _, p := range r.paths {
				restart(r.adapter(p), t)
			}
			ready("ready again")
			// A new process: every stream it holds is istiod's new one.
			xdsSynced("istiod resynced with the restarted adapter", nil)
		}
	})

	fault("Consul partitioned; every adapter restarted during the partition", func() {
		consul.link.partition(t)
		for _, p := range r.paths {
			waitStale(t, r.adapter(p).debugAddr, "dc1", true, 30*time.Second)
		}
		for _, p := range r.paths {
			r.adapter(p).restart(t)
		}
		// The adapters with a state file serve it after serveAfter
		// (istiod resyncs with it); the others answer nothing while their
		// source cannot sync, and istiod keeps what it had.
		xdsSynced("serves its saved state during the partition", nil, withState)
		everyInstance("during the partition, adapters restarted")
		consul.link.heal(t)
		ready("ready after the partition")
		xdsSynced("istiod synced after the partition", nil)
	})

	fault("Consul killed, back empty (guard holds), instances registered again", func() {
		consul.kill(t)
		for _, p := range r.paths {
			waitStale(t, r.adapter(p).debugAddr, "dc1", true, 30*time.Second)
		}
		consul.start(t)
		for _, p := range r.paths {
			a := r.adapter(p)
			eventually(t, 60*time.Second, p.name+": the guard holds the emptied catalog", func() error {
				held, err := heldChanges(t, a.debugAddr)
				if err != nil {
					return err
				}
				if len(held) != 1 || held[0].Removes != len(echo) {
					return fmt.Errorf("held %+v", held)
				}
				return nil
			})
		}
		everyInstance("Consul empty, the guard holding")
		registerEcho(t, consul.client, echo...)
		for _, p := range r.paths {
			a := r.adapter(p)
			eventually(t, 60*time.Second, p.name+": nothing held once the instances are back", func() error {
				if held, err := heldChanges(t, a.debugAddr); err != nil || len(held) > 0 {
					return fmt.Errorf("held %+v %v", held, err)
				}
				return nil
			})
		}
	})

	t.Logf("failed RPCs through the faults, per path (target 0): %d in all\n%s", failedTotal, strings.Join(summary, "\n"))
}
