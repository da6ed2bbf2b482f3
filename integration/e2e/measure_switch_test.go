//go:build measure

package e2e

// A measurement, not part of the suite (build tag measure): what istiod and
// a sidecar see when a running installation switches from workloadentry to
// inline mode, as the upgrade that makes inline the default does, for
// CHANGELOG.md (Upgrading) and BENCHMARKS.md. Run:
//
//	cd integration/e2e && go test -tags measure -count=1 -timeout 60m -run TestMeasureModeSwitch -v .
//
// N services (MEASURE_SERVICES, default 1000), half TCP on 5432, half HTTP on
// 8080, one instance each, from a static source, served in workloadentry
// mode to istiod with one sidecar (namespace default, DNS capture) connected
// (MEASURE_SIDECAR=0: none; =late: connected once istiod holds every
// endpoint). Then the adapter restarts twice: unchanged (the
// baseline cost of a reconnect), and with output.mode: inline, so every
// ServiceEntry changes and every WorkloadEntry is deleted in one full state.
// For each: istiod's CPU until it is idle again, its pushes (its own
// pilot_xds_pushes by type, and what the sidecar received), and whether any
// cluster's endpoints went empty in the sidecar meanwhile.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/registry-adapter/registry-adapter/fidelity"
)

func TestMeasureModeSwitch(t *testing.T) {
	n := 1000
	if v := os.Getenv("MEASURE_SERVICES"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	var b strings.Builder
	b.WriteString("server: {listen: \"{{XDS}}\", debugListen: \"{{DEBUG}}\"}\ndebounce: {quiet: 100ms, max: 1s}\n")
	b.WriteString("output: {mode: workloadentry}\nsources:\n- name: vms\n  static:\n    services:\n")
	for i := range n {
		port := "{number: 5432, protocol: tcp}"
		if i%2 == 1 {
			port = "{number: 8080, protocol: http}"
		}
		fmt.Fprintf(&b, "    - {name: s%d, host: s%d.vms.example.com, ports: [%s], instances: [{address: 10.%d.%d.%d}]}\n",
			i, i, port, 100+i/65536, (i/256)%256, i%256)
	}
	start := time.Now()
	a := startAdapter(t, b.String(), 0)
	p := startIstiod(t, meshFor(a.xdsAddr))
	p.waitReady(t)
	withSidecar := os.Getenv("MEASURE_SIDECAR") != "0"
	// MEASURE_SIDECAR=late connects the sidecar only once istiod holds
	// every endpoint: at 10k, workloadentry mode's own first sync with a
	// proxy connected takes far longer than the switch being measured, and
	// the switch starts from a settled state either way.
	late := os.Getenv("MEASURE_SIDECAR") == "late"
	var px *fidelity.Proxy
	connect := func() {
		var err error
		if px, err = p.sidecar(t); err != nil {
			t.Fatal(err)
		}
	}
	if withSidecar && !late {
		connect()
	}
	// complete: every service has its one endpoint, in the sidecar's view
	// (or istiod's registry without a sidecar).
	complete := func() error {
		if px != nil {
			have := 0
			for name, c := range px.View().Clusters {
				if strings.HasSuffix(name, ".vms.example.com") && len(c.Endpoints) == 1 {
					have++
				}
			}
			if have < n {
				return fmt.Errorf("%d of %d clusters with their endpoint", have, n)
			}
			return nil
		}
		if got, err := istiodEndpoints(p.httpAddr); err != nil || len(got) < n {
			return fmt.Errorf("%d of %d endpoints (%v)", len(got), n, err)
		}
		return nil
	}
	cpu := procCPU(t, pidFile(t, filepath.Join(p.runDir, "istiod.pid")))
	eventually(t, 40*time.Minute, "istiod has every endpoint in workloadentry mode", complete)
	if late {
		connect()
		eventually(t, 40*time.Minute, "the late sidecar has every cluster with its endpoint", complete)
	}
	t.Logf("workloadentry mode, %d services: complete %v after the adapter started; istiod CPU so far %v",
		n, time.Since(start).Round(time.Second), cpu())
	idle := func() { waitIdle(cpu, 3) }
	pushes := func() map[string]float64 {
		out := map[string]float64{}
		for _, typ := range []string{"cds", "eds", "lds", "rds", "nds"} {
			out[typ] = p.metric(t, "pilot_xds_pushes", "type="+typ)
		}
		return out
	}
	round := func(what string, change func(), done func() error) {
		idle()
		before, pushesBefore := cpu(), pushes()
		var replies map[string]int
		events := 0
		if withSidecar {
			replies = px.Replies()
			_, events = px.Events(0)
		}
		began := time.Now()
		change()
		eventually(t, 30*time.Minute, what, done)
		took := time.Since(began)
		idle()
		used := cpu() - before
		var d []string
		after := pushes()
		for _, typ := range []string{"cds", "eds", "lds", "rds", "nds"} {
			if v := after[typ] - pushesBefore[typ]; v != 0 {
				d = append(d, fmt.Sprintf("%s %v", typ, v))
			}
		}
		line := fmt.Sprintf("%s: istiod CPU %v (idle tail of 3 s included), done in %v; istiod pushes %s",
			what, used, took.Round(time.Millisecond), strings.Join(d, ", "))
		if withSidecar {
			now := px.Replies()
			var r []string
			for _, typ := range []string{fidelity.TypeCluster, fidelity.TypeEndpoint, fidelity.TypeListener, fidelity.TypeNameTable} {
				r = append(r, fmt.Sprintf("%s %d", typ[strings.LastIndexByte(typ, '.')+1:], now[typ]-replies[typ]))
			}
			evs, _ := px.Events(events)
			emptied := map[string]bool{}
			for _, e := range evs {
				if strings.HasSuffix(e.Cluster, ".vms.example.com") && len(e.Endpoints) == 0 {
					emptied[e.Cluster] = true
				}
			}
			line += fmt.Sprintf("; the sidecar got replies %s, %d endpoint assignments, %d clusters momentarily without endpoints",
				strings.Join(r, ", "), len(evs), len(emptied))
		}
		t.Log(line)
	}
	reconnected := func() error {
		url := "http://" + a.debugAddr + "/metrics"
		if metric(t, url, "registry_adapter_server_connected_clients") < 1 || metric(t, url, "registry_adapter_server_pushes_total") < 1 {
			return fmt.Errorf("istiod not reconnected yet")
		}
		return nil
	}
	round("adapter restart, nothing changed", func() { a.restart(t) }, reconnected)
	round("adapter restart in inline mode (every ServiceEntry changes, every WorkloadEntry deleted)", func() {
		cfg, err := os.ReadFile(a.configPath)
		if err != nil {
			t.Fatal(err)
		}
		cfg = []byte(strings.Replace(string(cfg), "output: {mode: workloadentry}\n", "output: {mode: inline}\n", 1))
		if err := os.WriteFile(a.configPath, cfg, 0o600); err != nil {
			t.Fatal(err)
		}
		a.restart(t)
	}, func() error {
		if err := reconnected(); err != nil {
			return err
		}
		for _, c := range p.configs(t) {
			if strings.HasPrefix(c, "WorkloadEntry/") {
				return fmt.Errorf("istiod still holds %s", c)
			}
		}
		if got := len(p.instances(t)); got != n {
			return fmt.Errorf("istiod holds %d of %d inline endpoints", got, n)
		}
		return complete()
	})
}
