//go:build measure

package e2e

// A measurement, not part of the suite (build tag measure): what the first
// allocation of addresses costs istiod and a sidecar at 10k services, for
// BENCHMARKS.md (issue 12). Run:
//
//	cd integration/e2e && go test -tags measure -count=1 -timeout 30m -run TestMeasureFirstAllocation -v .
//
// N services (MEASURE_SERVICES, default 10000), half TCP on 5432, half HTTP on
// 8080, one instance each, from a static source, in workloadentry mode (the
// mode BENCHMARKS.md reports it in). istiod holds them without
// addresses (allocate [none]) with one sidecar connected. Then the adapter
// restarts twice: once unchanged (the baseline cost of a reconnect), once
// with allocation on, so every ServiceEntry changes at once. For each,
// istiod's CPU until it is idle again, and the sizes of what it pushed to
// the sidecar, from its own log.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/registry-adapter/registry-adapter/fidelity"
)

func TestMeasureFirstAllocation(t *testing.T) {
	n := 10000
	if v := os.Getenv("MEASURE_SERVICES"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	var b strings.Builder
	b.WriteString("server: {listen: \"{{XDS}}\", debugListen: \"{{DEBUG}}\"}\ndebounce: {quiet: 100ms, max: 1s}\n")
	b.WriteString("output: {mode: workloadentry, addresses: {allocate: [none]}}\nsources:\n- name: vms\n  static:\n    services:\n")
	for i := range n {
		port := "{number: 5432, protocol: tcp}"
		if i%2 == 1 {
			port = "{number: 8080, protocol: http}"
		}
		fmt.Fprintf(&b, "    - {name: s%d, host: s%d.vms.example.com, ports: [%s], instances: [{address: 10.%d.%d.%d}]}\n",
			i, i, port, 100+i/65536, (i/256)%256, i%256)
	}
	a := startAdapter(t, b.String(), 0)
	p := startIstiod(t, meshFor(a.xdsAddr))
	p.waitReady(t)
	// MEASURE_SIDECAR=0: istiod alone, no proxy connected (its pushes then
	// cost nothing per proxy).
	withSidecar := os.Getenv("MEASURE_SIDECAR") != "0"
	var px *fidelity.Proxy
	if withSidecar {
		var err error
		if px, err = p.sidecar(t); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Minute, "istiod has every service", func() error {
		if withSidecar {
			if got := len(px.View().Clusters); got < n {
				return fmt.Errorf("%d clusters", got)
			}
			return nil
		}
		if got := len(p.configs(t)); got < n {
			return fmt.Errorf("%d configs", got)
		}
		return nil
	})
	cpu := procCPU(t, pidFile(t, filepath.Join(p.runDir, "istiod.pid"))) // istiod's utime+stime
	// idle waits until istiod used under 20 ms of CPU in each of 3 seconds.
	idle := func() { waitIdle(cpu, 3) }
	pushSize := regexp.MustCompile(`(CDS|LDS|NDS): PUSH (?:request )?for node:registry-adapter-check\S* resources:(\d+) size:(\S+)`)
	pushes := func(log string) string {
		var out []string
		for _, m := range pushSize.FindAllStringSubmatch(log, -1) {
			out = append(out, fmt.Sprintf("%s %s resources %s", m[1], m[2], m[3]))
		}
		return strings.Join(out, "; ")
	}
	round := func(what string, change func(), done func() error) {
		idle()
		logBefore := len(p.log())
		before := cpu()
		start := time.Now()
		change()
		eventually(t, 5*time.Minute, what, done)
		took := time.Since(start)
		idle()
		t.Logf("%s: istiod CPU %v (idle tail of 3 s included, under 60 ms), sidecar view in %v; pushes to the sidecar: %s",
			what, cpu()-before, took.Round(time.Millisecond), pushes(p.log()[logBefore:]))
	}
	view := func() (int, int) {
		if !withSidecar {
			return 0, 0
		}
		v := px.View()
		return len(v.Listeners), len(v.Names)
	}
	l0, n0 := view()
	t.Logf("without addresses: %d services, sidecar has %d listeners and %d name-table entries", n, l0, n0)

	// reconnected: istiod reconnected to the restarted adapter and was answered.
	reconnected := func() error {
		url := "http://" + a.debugAddr + "/metrics"
		if metric(t, url, "registry_adapter_server_connected_clients") < 1 || metric(t, url, "registry_adapter_server_pushes_total") < 1 {
			return fmt.Errorf("istiod not reconnected yet")
		}
		return nil
	}
	round("adapter restart, nothing changed", func() { a.restart(t) }, reconnected)
	round("adapter restart with allocation on (every ServiceEntry changes)", func() {
		cfg, err := os.ReadFile(a.configPath)
		if err != nil {
			t.Fatal(err)
		}
		cfg = []byte(strings.Replace(string(cfg), "output: {mode: workloadentry, addresses: {allocate: [none]}}\n", "output: {mode: workloadentry}\n", 1))
		if err := os.WriteFile(a.configPath, cfg, 0o600); err != nil {
			t.Fatal(err)
		}
		a.restart(t)
	}, func() error {
		if !withSidecar {
			return reconnected()
		}
		if _, names := view(); names < n {
			return fmt.Errorf("%d name-table entries", names)
		}
		return nil
	})
	l1, n1 := view()
	t.Logf("with addresses: sidecar has %d listeners and %d name-table entries", l1, n1)
}
