package config

import (
	"strings"
	"testing"
	"time"

	"github.com/registry-adapter/registry-adapter/adapter"
	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/sources/static"
)

// oneSource is the smallest valid sources list, for tests about other keys.
const oneSource = "sources: [{name: vms, static: {}}]\n"

func TestParseConfig(t *testing.T) {
	cases := []struct {
		name    string
		yaml    string
		wantErr []string // substrings; empty means valid
	}{
		{"minimal", oneSource, nil},
		{"empty file", "", []string{"sources: at least one source is required"}},
		{"no sources", "sources: []\n", []string{"sources: at least one source is required"}},
		{"null sources", "sources:\n", []string{"sources: at least one source is required"}},
		{"sources dropped, the rest set", "server: {listen: \"127.0.0.1:15010\"}\noutput: {mode: inline}\n", []string{"sources: at least one source is required"}},
		{"static", `
server: {listen: "127.0.0.1:15010", debugListen: "127.0.0.1:15014"}
output: {namespace: istio-system, mode: inline}
sources:
- name: vms
  static:
    services:
    - name: web
      ports: [{number: 80, protocol: http}]
      instances: [{address: 10.0.0.1}]
`, nil},
		{"unknown top-level key", "srever: {}\n", []string{"srever: unknown key", "line 1"}},
		{"unknown nested key with path", `
sources:
- name: vms
  static:
    services:
    - name: web
      prots: []
`, []string{"sources[0].static.services[0].prots: unknown key"}},
		{"two registries in one source", `
sources:
- name: x
  static: {services: []}
  consul: {address: "127.0.0.1:8500"}
`, []string{"sources[0] (x): more than one registry configured (static and consul)"}},
		{"consul typo", `
sources:
- name: dc1
  consul: {adress: "127.0.0.1:8500"}
`, []string{"sources[0].consul.adress: unknown key"}},
		{"no registry", "sources: [{name: x}]\n", []string{"sources[0] (x): no registry configured"}},
		{"bad source name", "sources: [{name: Bad_Name, static: {}}]\n", []string{"sources[0].name \"Bad_Name\""}},
		{"duplicate source name", "sources: [{name: a, static: {}}, {name: a, static: {}}]\n", []string{"sources[1].name \"a\": used by another source"}},
		{"bad mode", "output: {mode: both}\n", []string{"output.mode \"both\""}},
		{"bad namespace", "output: {namespace: Istio.System}\n", []string{"output.namespace"}},
		{"bad debounce", "debounce: {quiet: 2s, max: 1s}\n", []string{"debounce.max"}},
		{"bad duration", "debounce: {quiet: soon}\n", []string{"parse"}},
		{"debounce max 0", "debounce: {quiet: 0s, max: 0s}\n", []string{"max must be positive"}},
		{"debounce max 0 alone", "debounce: {max: 0s}\n", []string{"max must be positive"}},
		{"guard holdFor 0", "guard: {holdFor: 0s}\n", []string{"guard.holdFor 0"}},
		{"guard share over 1", "guard: {maxDeletionShare: 1.5}\n", []string{"guard.maxDeletionShare 1.5"}},
		{"bad static port", `
sources:
- name: vms
  static:
    services:
    - name: web
      ports: [{number: 0, protocol: htp}]
`, []string{"sources[0].static: services[0].ports[0].number 0", "services[0].ports[0].protocol \"htp\""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse(strings.NewReader(c.yaml))
			if len(c.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want errors %q (config %+v)", c.wantErr, cfg)
			}
			for _, want := range c.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := Parse(strings.NewReader("sources: [{name: vms, static: {services: [{name: web, ports: [{number: 80}]}]}}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Listen != "127.0.0.1:15010" || cfg.Server.DebugListen != "127.0.0.1:15014" {
		t.Errorf("listen defaults %q %q", cfg.Server.Listen, cfg.Server.DebugListen)
	}
	if cfg.Server.KeepaliveMinTime != 10*time.Second {
		t.Errorf("keepalive default %s", cfg.Server.KeepaliveMinTime)
	}
	if cfg.Output.Mode != convert.ModeInline || cfg.Output.Namespace != convert.DefaultNamespace {
		t.Errorf("output defaults %+v", cfg.Output)
	}
	if cfg.Debounce.Quiet != 100*time.Millisecond || cfg.Debounce.Max != time.Second {
		t.Errorf("debounce defaults %+v", cfg.Debounce)
	}
	if got := cfg.Sources[0].Registry.(*static.Config).Services[0].Host; got != "web.static" {
		t.Errorf("static host default %q", got)
	}
}

// TestConfigExplicitZeros: issue 18 item 6: a key set to zero stays zero
// instead of silently becoming the default; a section left out, or null,
// is the default.
func TestConfigExplicitZeros(t *testing.T) {
	cases := []struct {
		yaml  string
		guard adapter.GuardConfig
		deb   adapter.DebounceConfig
	}{
		{"", adapter.DefaultGuardConfig(), adapter.DefaultDebounceConfig()},
		{"guard: {}\ndebounce: {}\n", adapter.DefaultGuardConfig(), adapter.DefaultDebounceConfig()},
		{"guard:\ndebounce:\n", adapter.DefaultGuardConfig(), adapter.DefaultDebounceConfig()},
		{"guard: {minInstances: 0, maxDeletionShare: 0, window: 0s}\ndebounce: {quiet: 0s}\n",
			adapter.GuardConfig{HoldFor: 10 * time.Minute}, adapter.DebounceConfig{Max: time.Second}},
		{"guard: {manual: true, holdFor: 0s}\n",
			adapter.GuardConfig{MaxDeletionShare: 0.5, MinInstances: 10, Manual: true, Window: time.Minute}, adapter.DefaultDebounceConfig()},
	}
	for _, c := range cases {
		cfg, err := Parse(strings.NewReader(c.yaml + oneSource))
		if err != nil {
			t.Errorf("%q: %v", c.yaml, err)
			continue
		}
		if cfg.Guard != c.guard || cfg.Debounce != c.deb {
			t.Errorf("%q: guard %+v debounce %+v, want %+v %+v", c.yaml, cfg.Guard, cfg.Debounce, c.guard, c.deb)
		}
	}
}

// TestAdminListen: issue 15 item 2. The admin endpoints (dumps, pprof, the
// guard's release) never listen beyond loopback without a token.
func TestAdminListen(t *testing.T) {
	cases := []struct {
		server, want, wantErr string
	}{
		{"", "127.0.0.1:15014", ""}, // loopback probes: shared
		{"server: {debugListen: 0.0.0.0:15014}", "127.0.0.1:15015", ""},
		{"server: {debugListen: 0.0.0.0:15014, adminListen: '[::1]:9000'}", "[::1]:9000", ""},
		{"server: {debugListen: 0.0.0.0:15014, adminListen: 0.0.0.0:15015}", "", "server.adminListen \"0.0.0.0:15015\" is not a loopback address"},
		{"server: {adminListen: ':15015'}", "", "is not a loopback address"},
		{"server: {adminListen: 'admin.example:15015'}", "", "is not a loopback address"},
		{"server: {adminListen: 0.0.0.0:15015, adminTokenFile: /var/run/token}", "0.0.0.0:15015", ""},
	}
	for _, c := range cases {
		cfg, err := Parse(strings.NewReader(c.server + "\n" + oneSource))
		switch {
		case c.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q: error %v, want %q", c.server, err, c.wantErr)
			}
		case err != nil:
			t.Errorf("%q: %v", c.server, err)
		case cfg.Server.AdminListen != c.want:
			t.Errorf("%q: adminListen %q, want %q", c.server, cfg.Server.AdminListen, c.want)
		}
	}
}
