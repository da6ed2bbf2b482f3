package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/registry-adapter/registry-adapter/adapter"
)

// shardedConfig serves two shards; port 0 gives each its own free port,
// which /readyz reports. The hosts are picked so that each shard holds some.
const shardedConfig = `
server: {listen: "127.0.0.1:0", debugListen: "{{DEBUG}}", shards: 2}
debounce: {quiet: 50ms, max: 200ms}
sources:
- name: vms
  static:
    services:
    - name: billing
      host: billing.vms.example.com
      ports: [{number: 8080, protocol: http}, {number: 9090, protocol: grpc}]
      instances:
      - {id: billing-1, address: 10.0.1.10, labels: {version: v1}, locality: us-east-1/us-east-1a}
      - {id: billing-2, address: 10.0.1.11, ports: {8080: 18080}, labels: {version: v2}, weight: 50}
    - name: cache
      host: cache.vms.example.com
      ports: [{number: 6379, protocol: redis}]
      instances:
      - {address: 10.0.2.20}
    - name: db
      host: db.vms.example.com
      ports: [{number: 5432, protocol: tcp}]
      instances:
      - {address: 10.0.3.30}
      - {address: 10.0.3.31}
    - name: queue
      host: queue.vms.example.com
      ports: [{number: 5672, protocol: tcp}]
      instances:
      - {address: 10.0.4.40}
    - name: payments
      host: payments.vms.example.com
      ports: [{number: 8443, protocol: https}]
      instances:
      - {address: 10.0.5.50}
`

// shardAddrs returns each shard's listener from the adapter's /readyz.
func (a *adapterProc) shardAddrs(t *testing.T) []string {
	t.Helper()
	var addrs []string
	eventually(t, 30*time.Second, "every shard listening", func() error {
		_, body, err := httpGet("http://" + a.debugAddr + "/readyz")
		if err != nil {
			return err
		}
		var r struct {
			Shards []struct {
				Address string
				Serving bool
			}
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return err
		}
		addrs = addrs[:0]
		for _, s := range r.Shards {
			if !s.Serving || s.Address == "" {
				return fmt.Errorf("shards %s", body)
			}
			addrs = append(addrs, s.Address)
		}
		return nil
	})
	return addrs
}

// servedShards maps each host the adapter serves to the shard its
// /debug/resources places it in.
func (a *adapterProc) servedShards(t *testing.T) map[string]int {
	t.Helper()
	_, body, err := httpGet("http://" + a.debugAddr + "/debug/resources?kind=ServiceEntry")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, doc := range strings.Split(string(body), "---\n") {
		var shard, of int
		if _, err := fmt.Sscanf(doc, "# shard %d of %d", &shard, &of); err != nil {
			t.Fatalf("a document without its shard: %v\n%s", err, doc)
		}
		_, rest, _ := strings.Cut(doc, "\n  hosts:\n  - ")
		host, _, _ := strings.Cut(rest, "\n")
		out[host] = shard
	}
	return out
}

// runCheck runs `registry-adapter check` against istiod.
func runCheck(t *testing.T, a *adapterProc, p *istiodProc) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(adapterBin, "check", "--config", a.configPath, "--istiod", "http://"+p.httpAddr)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestShardsIstiodHoldsTheUnion: with server.shards: 2, istiod lists both
// listeners as config sources, becomes ready, and holds exactly the union of
// the shards, as the fidelity check (the check subcommand's) sees it. Each
// shard carries only its hosts; an istiod that lists one shard only is
// missing the other's hosts, and check says so.
func TestShardsIstiodHoldsTheUnion(t *testing.T) {
	t.Parallel()
	a := startAdapter(t, shardedConfig, 0)
	addrs := a.shardAddrs(t)
	if len(addrs) != 2 {
		t.Fatalf("shard listeners %v, want 2", addrs)
	}

	shards := a.servedShards(t)
	perShard := [2][]string{}
	for host, shard := range shards {
		if want := adapter.ShardOf(host, 2); shard != want {
			t.Errorf("%s is served on shard %d, ShardOf says %d", host, shard, want)
		}
		perShard[shard] = append(perShard[shard], host)
	}
	if len(shards) != 5 || len(perShard[0]) == 0 || len(perShard[1]) == 0 {
		t.Fatalf("hosts by shard %v: want all 5, on both shards", perShard)
	}

	p := startIstiodSources(t, "xds://"+addrs[0], "xds://"+addrs[1])
	p.waitReady(t)
	eventually(t, 30*time.Second, "istiod holds the union of the shards", func() error {
		if got, want := p.configs(t), a.served(t); !slices.Equal(got, want) {
			return fmt.Errorf("istiod %v\nadapter %v", got, want)
		}
		return nil
	})
	// shardedConfig by hand: staticConfig's billing without its TCP port,
	// its cache, and three more hosts.
	want := staticWant()
	billing := want["billing.vms.example.com"]
	delete(billing.Ports, "tcp-5432")
	delete(billing.Endpoints, "10.0.1.10/tcp-5432")
	delete(billing.Endpoints, "10.0.1.11/tcp-5432")
	maps.Copy(want, expect(
		service("db.vms.example.com", "TCP", 5432, 0, "10.0.3.30", "10.0.3.31"),
		service("queue.vms.example.com", "TCP", 5672, 0, "10.0.4.40"),
		service("payments.vms.example.com", "HTTPS", 8443, 0, "10.0.5.50")))
	eventually(t, 30*time.Second, "istiod holds every shard's hosts", func() error { return holds(t, a, p, want) })
	if out, err := runCheck(t, a, p); err != nil || !strings.Contains(out, "istiod is faithful") {
		t.Errorf("check against the sharded istiod: %v\n%s", err, out)
	}

	// One stream per shard, each ACKing its shard's ServiceEntries.
	_, body, err := httpGet("http://" + a.debugAddr + "/debug/clients")
	if err != nil {
		t.Fatal(err)
	}
	var clients []struct {
		Shard int
		Types map[string]struct{ AckedVersion string }
	}
	if err := json.Unmarshal(body, &clients); err != nil || len(clients) != 2 {
		t.Fatalf("clients %s (%v)", body, err)
	}
	for i, c := range clients {
		if c.Shard != i || c.Types["networking.istio.io/v1/ServiceEntry"].AckedVersion == "" {
			t.Errorf("client %d: shard %d, types %v", i, c.Shard, c.Types)
		}
	}
	for i := range 2 {
		if got := metric(t, "http://"+a.debugAddr+"/metrics", "registry_adapter_server_connected_clients", fmt.Sprintf("shard=%d", i)); got != 1 {
			t.Errorf("shard %d: %v clients, want 1", i, got)
		}
	}

	// An istiod that lists shard 0 only never sees shard 1's hosts.
	partial := startIstiodSources(t, "xds://"+addrs[0])
	partial.waitReady(t)
	out, err := runCheck(t, a, partial)
	if err == nil {
		t.Fatalf("check passed against an istiod missing shard 1:\n%s", out)
	}
	for _, h := range perShard[1] {
		if !strings.Contains(out, "host "+h+": missing in istiod") {
			t.Errorf("check does not report shard 1's %s missing:\n%s", h, out)
		}
	}
	for _, h := range perShard[0] {
		if strings.Contains(out, "host "+h+":") {
			t.Errorf("check reports shard 0's %s, which istiod holds:\n%s", h, out)
		}
	}
}
