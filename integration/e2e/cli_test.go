package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// TestRenderFromConsul: render against a real agent prints the expected
// resources, as kubectl-appliable YAML on stdout.
func TestRenderFromConsul(t *testing.T) {
	t.Parallel()
	c, addr := startConsul(t, 0)
	register(t, c, "web", "vm-1", "10.4.0.1", 8080, []string{"version=v1"}, map[string]string{"protocol": "http"})
	register(t, c, "web", "vm-2", "10.4.0.2", 8080, []string{"version=v2"}, map[string]string{"protocol": "http"})
	cfg := filepath.Join(t.TempDir(), "render.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("sources:\n- name: dc1\n  consul: {address: %q}\n", addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(adapterBin, "render", "--config", cfg)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("render: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"kind: ServiceEntry\n", "  name: web.service.consul\n", "  - web.service.consul\n",
		"  - name: http-8080\n    number: 8080\n    protocol: HTTP\n",
		// The default output mode, inline: the instances are the
		// ServiceEntry's endpoints, with their labels.
		"  endpoints:\n", "  - address: 10.4.0.1\n", "  - address: 10.4.0.2\n", "      version: v2\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("render output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "kind: WorkloadEntry"); n != 0 {
		t.Errorf("%d WorkloadEntries in the default (inline) mode, want none", n)
	}
	if strings.Contains(out, "consul.service.consul") {
		t.Error("Consul's own service was rendered")
	}
}

// TestRenderLeavesOutAnOversizedInstance: a registration with 257 k=v tags
// (257 labels, one more than limits.labelsPerInstance) used to breach the
// source's cap and stop the whole source; now that instance alone is left
// out, named on stderr, and every other instance and service is rendered.
func TestRenderLeavesOutAnOversizedInstance(t *testing.T) {
	t.Parallel()
	c, addr := startConsul(t, 0)
	var tags []string
	for i := range 257 {
		tags = append(tags, fmt.Sprintf("k%d=v", i))
	}
	register(t, c, "web", "vm-1", "10.4.1.1", 8080, nil, nil)
	register(t, c, "db", "vm-3", "10.4.1.3", 5432, nil, nil)
	// The same service on another node, with the tags.
	if _, err := c.Catalog().Register(&consulapi.CatalogRegistration{
		Node: "vm-2", Address: "10.4.1.2",
		Service: &consulapi.AgentService{ID: "web-tagged", Service: "web", Port: 8080, Tags: tags},
	}, nil); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "render.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("sources:\n- name: dc1\n  consul: {address: %q}\n", addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(adapterBin, "render", "--config", cfg)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("render: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	// Either output mode: an inline endpoint ("- address:") or a
	// WorkloadEntry ("  address:").
	for _, want := range []string{"address: 10.4.1.1\n", "address: 10.4.1.3\n", "  name: db.service.consul\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("render output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "10.4.1.2") {
		t.Errorf("the instance with 257 labels was rendered:\n%s", out)
	}
	if want := "service web.service.consul instance vm-2/web-tagged has 257 labels, more than limits.labelsPerInstance 256"; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr does not name the instance (%q):\n%s", want, stderr.String())
	}
}

// TestSecretsNeverShown: ACL tokens appear in no log line, no debug page and
// no metric, whether they come from the config or a token file.
func TestSecretsNeverShown(t *testing.T) {
	t.Parallel()
	const mgmt = "3f6a9c1e-6d2b-4c3a-9e1f-7b8a5d4c2e10"
	state := t.TempDir()
	port := freePort(t)
	env := []string{"CONSUL_STATE_DIR=" + state, "CONSUL_BIN=" + consulBin, fmt.Sprintf("CONSUL_HTTP_PORT=%d", port),
		"CONSUL_READY_TOKEN=" + mgmt,
		`CONSUL_EXTRA_ARGS=-hcl 'acl { enabled = true default_policy = "deny" tokens { initial_management = "` + mgmt + `" } }'`}
	if err := command(repoRoot, env, nil, "bash", "integration/consul/consul.sh", "start"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = command(repoRoot, env, nil, "bash", "integration/consul/consul.sh", "stop") })
	cfg := consulapi.DefaultConfig()
	cfg.Address, cfg.Token = fmt.Sprintf("127.0.0.1:%d", port), mgmt
	c, err := consulapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	policy, _, err := c.ACL().PolicyCreate(&consulapi.ACLPolicy{Name: "registry-adapter",
		Rules: `service_prefix "" { policy = "read" }` + "\n" + `node_prefix "" { policy = "read" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := c.ACL().TokenCreate(&consulapi.ACLToken{Policies: []*consulapi.ACLTokenPolicyLink{{ID: policy.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	register(t, c, "web", "vm-1", "10.5.0.1", 8080, nil, nil)

	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(tok.SecretID+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAdapter(t, fmt.Sprintf(`
server: {listen: "{{XDS}}", debugListen: "{{DEBUG}}"}
log: {level: debug}
sources:
- name: with-token
  consul: {address: "127.0.0.1:%d", token: %q}
- name: with-file
  consul: {address: "127.0.0.1:%d", tokenFile: %q, hostTemplate: "{{.Service}}.file.consul", tokenFileCheckInterval: 100ms, backoffMax: 1s}
`, port, tok.SecretID, port, tokenFile), 0)
	eventually(t, 30*time.Second, "token sources synced", func() error {
		_, body, err := httpGet("http://" + a.debugAddr + "/debug/resources")
		if err != nil || !strings.Contains(string(body), "web.service.consul") || !strings.Contains(string(body), "web.file.consul") {
			return fmt.Errorf("not yet: %v", err)
		}
		return nil
	})
	// Rotate the token file to a token Consul does not know, so the reload
	// and error paths log too.
	const wrong = "00000000-dead-beef-0000-000000000000"
	if err := os.WriteFile(tokenFile, []byte(wrong+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "wrong token reported", func() error {
		_, body, _ := httpGet("http://" + a.debugAddr + "/debug/sources")
		if !strings.Contains(string(body), "lastError") {
			return fmt.Errorf("no error yet: %s", body)
		}
		return nil
	})

	var shown strings.Builder
	shown.WriteString(a.output())
	for _, path := range []string{"/debug/resources", "/debug/sources", "/debug/clients", "/debug/held", "/readyz", "/metrics", "/debug/pprof/cmdline"} {
		_, body, err := httpGet("http://" + a.debugAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		shown.Write(body)
	}
	for name, secret := range map[string]string{"read token": tok.SecretID, "management token": mgmt, "wrong token": wrong} {
		if strings.Contains(shown.String(), secret) {
			t.Errorf("the %s appears in the adapter's logs or debug output", name)
		}
		// Also a prefix: a truncated token is still a leak.
		if strings.Contains(shown.String(), secret[:13]) {
			t.Errorf("a prefix of the %s appears in the adapter's logs or debug output", name)
		}
	}
	if !strings.Contains(shown.String(), "with-file") || !strings.Contains(shown.String(), "lastError") {
		t.Error("the test saw no output from the failing source; it would not catch a leak")
	}
}
