package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestHelpEverywhere: every command answers --help (and `help CMD`) on
// stdout with its flags and examples, exit 0.
func TestHelpEverywhere(t *testing.T) {
	for _, c := range commands {
		for _, args := range [][]string{{c.name, "--help"}, {c.name, "-h"}, {"help", c.name}} {
			var out, errOut bytes.Buffer
			code := Main(args, &out, &errOut)
			if code != exitOK || errOut.Len() != 0 {
				t.Errorf("%v: exit %d, stderr %q", args, code, errOut.String())
			}
			for _, want := range []string{"registry-adapter " + c.name, "Examples:", "Exit codes:"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("%v: help lacks %q:\n%s", args, want, out.String())
				}
			}
		}
	}
	var out, errOut bytes.Buffer
	if code := Main([]string{"check", "--help"}, &out, &errOut); code != exitOK || !strings.Contains(out.String(), "--istiod-token-file") ||
		!strings.Contains(out.String(), "3 differences found") {
		t.Errorf("check --help: exit %d:\n%s", code, out.String())
	}
	out.Reset()
	if code := Main([]string{"--help"}, &out, &errOut); code != exitOK || !strings.Contains(out.String(), "REGISTRY_ADAPTER_CONFIG") {
		t.Errorf("--help: exit %d:\n%s", code, out.String())
	}
}

func TestUsageErrorsAndEnvConfig(t *testing.T) {
	t.Setenv(configEnv, "")
	cases := []struct {
		name     string
		env      string
		args     []string
		code     int
		contains string
	}{
		{"env names the config", "../../examples/static.yaml", []string{"validate"}, exitOK, "static.yaml: valid"},
		{"--config wins over env", "/nonexistent.yaml", []string{"validate", "--config", "../../examples/static.yaml"}, exitOK, "valid"},
		{"no config at all", "", []string{"validate"}, exitUsage, "--config (or $REGISTRY_ADAPTER_CONFIG) is required"},
		{"unknown flag", "", []string{"render", "--confg", "x"}, exitUsage, "flag provided but not defined: -confg"},
		{"stray argument", "", []string{"validate", "--config", "../../examples/static.yaml", "extra"}, exitUsage, "unexpected arguments: extra"},
		{"bad log format", "", []string{"render", "--config", "../../examples/static.yaml", "--log-format", "xml"}, exitUsage, "--log-format \"xml\""},
		{"bad log level", "", []string{"render", "--config", "../../examples/static.yaml", "--log-level", "loud"}, exitError, "log.level"},
		{"log flags accepted", "", []string{"render", "--config", "../../examples/static.yaml", "--log-level", "error", "--log-format", "console"}, exitOK, "kind: ServiceEntry"},
		{"unreadable token file", "", []string{"check", "--config", "../../examples/static.yaml", "--istiod-token-file", "/nonexistent/token"}, exitError, "--istiod-token-file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(configEnv, c.env)
			var out, errOut bytes.Buffer
			code := Main(c.args, &out, &errOut)
			if all := out.String() + errOut.String(); code != c.code || !strings.Contains(all, c.contains) {
				t.Errorf("%v: exit %d, output %q; want exit %d containing %q", c.args, code, all, c.code, c.contains)
			}
		})
	}
}

// fakeIstiod serves an empty registry to callers presenting want as their
// bearer token, 401 to everyone else, like istiod's debug API does to
// non-loopback callers.
type fakeIstiod struct {
	mu   sync.Mutex
	want string
	seen []string
}

func (f *fakeIstiod) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, r.Header.Get("Authorization"))
	if r.Header.Get("Authorization") != "Bearer "+f.want {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case "/debug/registryz":
		_, _ = w.Write([]byte("[]"))
	case "/debug/endpointShardz":
		_, _ = w.Write([]byte("{}"))
	default:
		http.NotFound(w, r)
	}
}

// TestCheckBearerToken: the token file's content goes to istiod on every
// request, re-read after a rotation; without it istiod's 401 is an error
// (exit 1), with it the differences are found (exit 3: the fake istiod
// holds nothing of what examples/static.yaml has).
func TestCheckBearerToken(t *testing.T) {
	f := &fakeIstiod{want: "token-1"}
	srv := httptest.NewServer(f)
	defer srv.Close()
	tok := filepath.Join(t.TempDir(), "token")
	write := func(s string) {
		if err := os.WriteFile(tok, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	check := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := Main(append([]string{"check", "--config", "../../examples/static.yaml", "--istiod", srv.URL, "--log-level", "error"}, args...), &out, &errOut)
		return code, out.String() + errOut.String()
	}

	if code, out := check(); code != exitError || !strings.Contains(out, "401") {
		t.Errorf("without a token: exit %d, %q; want exit 1 naming the 401", code, out)
	}
	write("token-1\n")
	if code, out := check("--istiod-token-file", tok); code != exitDifferences || !strings.Contains(out, "differences") {
		t.Errorf("with the token: exit %d, %q; want exit 3 and the differences", code, out)
	}
	// The kubelet rotates the projected token in place.
	f.mu.Lock()
	f.want = "token-2"
	f.mu.Unlock()
	write("token-2")
	if code, out := check("--istiod-token-file", tok); code != exitDifferences {
		t.Errorf("after rotation: exit %d, %q; want exit 3", code, out)
	}
	write("two tokens\n")
	if code, out := check("--istiod-token-file", tok); code != exitError || strings.Contains(out, "two tokens") {
		t.Errorf("malformed token: exit %d, %q; want exit 1 without the file's content", code, out)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) < 5 || f.seen[0] != "" || f.seen[len(f.seen)-1] != "Bearer token-2" {
		t.Errorf("istiod saw Authorization headers %q", f.seen)
	}
}

// TestValidateWarnsOnHostTemplate: `validate` accepts a host template that
// is the service name alone, and warns that registrants then choose whole
// hosts; the default template draws no warning.
func TestValidateWarnsOnHostTemplate(t *testing.T) {
	for _, c := range []struct {
		source, template string
		warn             bool
	}{
		{"consul", `"{{.Service}}"`, true},
		{"consul", `"{{.Service}}.svc.cluster.local"`, true},
		{"consul", "", false},
		{"ec2", `"{{.Service}}"`, true},
		{"ec2", "", false},
	} {
		cfg := "sources:\n- name: reg\n  " + c.source + ":\n"
		switch c.source {
		case "consul":
			cfg += "    address: http://127.0.0.1:8500\n"
		case "ec2":
			cfg += "    region: us-east-1\n"
		}
		if c.template != "" {
			cfg += "    hostTemplate: " + c.template + "\n"
		}
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		code := Main([]string{"validate", "--config", path}, &out, &errOut)
		warned := strings.Contains(errOut.String(), "risky configuration: hostTemplate")
		if code != exitOK || warned != c.warn {
			t.Errorf("%s hostTemplate %s: exit %d, warned %v (want %v):\n%s%s", c.source, c.template, code, warned, c.warn, out.String(), errOut.String())
		}
	}
}

// TestCheckTokenNeverInClearOrRedirected: `check` sends istiod's token only
// to --istiod, over HTTPS or to a loopback address. Plain HTTP to another
// address is refused before anything is sent (before, the token crossed the
// network in clear text), and a redirect is not followed (before, the
// token went to wherever the redirect pointed).
func TestCheckTokenNeverInClearOrRedirected(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("token-1"), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(istiod string) (int, string) {
		var out, errOut bytes.Buffer
		code := Main([]string{"check", "--config", "../../examples/static.yaml", "--istiod", istiod, "--istiod-token-file", tok,
			"--timeout", "5s", "--log-level", "error"}, &out, &errOut)
		return code, out.String() + errOut.String()
	}
	// 192.0.2.1 is TEST-NET-1: nothing answers, nothing must be tried.
	for _, u := range []string{"http://192.0.2.1:15014", "http://istiod.istio-system.svc:15014", "ftp://127.0.0.1:15014"} {
		if code, out := check(u); code != exitError || !(strings.Contains(out, "clear text") || strings.Contains(out, "http:// or https://")) {
			t.Errorf("--istiod %s: exit %d, %q; want exit 1 refusing to send the token", u, code, out)
		}
	}

	// The token's destination redirects elsewhere: not followed.
	var mu sync.Mutex
	var elsewhere []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		elsewhere = append(elsewhere, r.Header.Get("Authorization"))
		mu.Unlock()
		_, _ = w.Write([]byte("[]"))
	}))
	defer other.Close()
	// Another host name for the same loopback: a different origin.
	target := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
	istiod := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer istiod.Close()
	if code, out := check(istiod.URL); code != exitError || !strings.Contains(out, "redirect") {
		t.Errorf("redirecting istiod: exit %d, %q; want exit 1 naming the redirect", code, out)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(elsewhere) > 0 {
		t.Errorf("the redirect target received %d requests, Authorization %q", len(elsewhere), elsewhere)
	}
	// A loopback URL still works as before (TestCheckBearerToken).
}
