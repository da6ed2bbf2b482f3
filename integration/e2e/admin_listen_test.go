package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAdminListenerSeparate runs the branch of admin.Debug.Run that a
// production install takes: debugListen on a non-loopback address (the
// host's end of a veth pair into a network namespace the test makes), the
// admin endpoints on a listener of their own behind adminTokenFile. Every
// request comes from inside the namespace, through the veth, as from
// another host. The probe listener serves /metrics, /healthz and /readyz
// and nothing of /debug/; the admin listener serves /debug/* and pprof only
// with the token, and none of the probes.
func TestAdminListenerSeparate(t *testing.T) {
	t.Parallel()
	l := makeNetns(t)
	debugAddr, adminAddr := freeAddrOn(t, l.hostIP), freeAddrOn(t, l.hostIP)
	token := randomSuffix(t) + randomSuffix(t)
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	writeSecret(t, tokenFile, token+"\n")
	config := strings.Replace(staticConfig, `debugListen: "{{DEBUG}}"}`,
		fmt.Sprintf(`debugListen: "{{DEBUG}}", adminListen: %q, adminTokenFile: %q}`, adminAddr, tokenFile), 1)
	if config == staticConfig {
		t.Fatal("staticConfig's server line changed; update this test")
	}
	startAdapterAt(t, config, 0, debugAddr)

	// get asks from inside the namespace; it returns the status and body.
	get := func(method, url string, header ...string) (int, string) {
		t.Helper()
		args := []string{"-s", "-m", "10", "-X", method, "-w", "\n%{http_code}"}
		for _, h := range header {
			args = append(args, "-H", h)
		}
		out := l.exec(t, "", "curl", append(args, url)...)
		i := strings.LastIndexByte(out, '\n')
		var code int
		if _, err := fmt.Sscan(out[i+1:], &code); err != nil {
			t.Fatalf("curl %s %s: %q", method, url, out)
		}
		return code, out[:i]
	}
	bearer := "Authorization: Bearer " + token
	probe, admin := "http://"+debugAddr, "http://"+adminAddr

	eventually(t, 30*time.Second, "the probe listener ready, from another host", func() error {
		if code, body := get("GET", probe+"/readyz"); code != 200 {
			return fmt.Errorf("/readyz %d %s", code, body)
		}
		return nil
	})
	for _, c := range []struct {
		what, method, url string
		header            []string
		code              int
		body              string // a part of the answer, when 200
	}{
		{"probe: metrics", "GET", probe + "/metrics", nil, 200, "registry_adapter_server_connected_clients"},
		{"probe: liveness", "GET", probe + "/healthz", nil, 200, "ok"},
		{"probe: no resource dump", "GET", probe + "/debug/resources", []string{bearer}, 404, ""},
		{"probe: no clients", "GET", probe + "/debug/clients", []string{bearer}, 404, ""},
		{"probe: no pprof", "GET", probe + "/debug/pprof/", []string{bearer}, 404, ""},
		{"probe: no release", "POST", probe + "/debug/allow-deletions?source=vms", []string{bearer}, 404, ""},
		{"admin: dump without token", "GET", admin + "/debug/resources", nil, 401, ""},
		{"admin: dump with a wrong token", "GET", admin + "/debug/resources", []string{"Authorization: Bearer " + token + "x"}, 401, ""},
		{"admin: release without token", "POST", admin + "/debug/allow-deletions?source=vms", nil, 401, ""},
		{"admin: pprof without token", "GET", admin + "/debug/pprof/", nil, 401, ""},
		{"admin: dump", "GET", admin + "/debug/resources", []string{bearer}, 200, "billing.vms.example.com"},
		{"admin: sources", "GET", admin + "/debug/sources", []string{bearer}, 200, `"vms"`},
		{"admin: pprof", "GET", admin + "/debug/pprof/", []string{bearer}, 200, "goroutine"},
		{"admin: no metrics", "GET", admin + "/metrics", []string{bearer}, 404, ""},
		{"admin: no liveness", "GET", admin + "/healthz", []string{bearer}, 404, ""},
		{"admin: no readiness", "GET", admin + "/readyz", []string{bearer}, 404, ""},
	} {
		code, body := get(c.method, c.url, c.header...)
		if code != c.code || !strings.Contains(body, c.body) {
			t.Errorf("%s: %s %s: %d %.200q, want %d with %q", c.what, c.method, c.url, code, body, c.code, c.body)
		}
	}
}
