package consul

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/registry-adapter/registry-adapter/sources"
)

func TestConfigDefaults(t *testing.T) {
	var c Config
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.HostTemplate != DefaultHostTemplate || c.Wait != DefaultWait || c.DefaultProtocol != "tcp" ||
		c.ProtocolMetaKey != "protocol" || c.MaxConcurrentQueries != 100 {
		t.Errorf("defaults: %+v", c)
	}
}

func TestConfigYAML(t *testing.T) {
	src := `
address: https://consul.example.com:8501
datacenter: dc2
tokenFile: /var/run/secrets/consul/token
tls: {caFile: /etc/consul/ca.pem, serverName: consul.example.com}
wait: 2m
stale: true
cached: true
services: ["web*", "api"]
excludeServices: ["*-canary"]
requiredTags: [mesh]
includeWarning: true
hostTemplate: "{{.Service}}.{{.Datacenter}}.consul"
taggedAddresses: [lan_ipv4, lan]
regionMetaKey: region
network: vm-net
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	dec = yaml.NewDecoder(strings.NewReader("tokn: x"))
	dec.KnownFields(true)
	if err := dec.Decode(&Config{}); err == nil {
		t.Error("unknown key accepted")
	}
	if c.Wait != 2*time.Minute || c.TLS.CAFile != "/etc/consul/ca.pem" || !c.Cached || c.TaggedAddresses[1] != "lan" {
		t.Errorf("decoded %+v", c)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		mod   func(*Config)
		field string
	}{
		{func(c *Config) { c.Address = "ftp://x" }, "address:"},
		{func(c *Config) { c.Address = "http://x:8500"; c.TLS.CAFile = "/ca.pem" }, "tls:"},
		{func(c *Config) { c.Token, c.TokenFile = "a", "/b" }, "token:"},
		{func(c *Config) { c.TLS.CertFile = "/c.pem" }, "tls.certFile:"},
		{func(c *Config) { c.Peers = []string{"a", "a"} }, "peers:"},
		{func(c *Config) { c.Wait = 20 * time.Minute }, "wait:"},
		{func(c *Config) { c.WaitJitter = 2 }, "waitJitter:"},
		{func(c *Config) { c.MaxConcurrentQueries = -1 }, "maxConcurrentQueries:"},
		{func(c *Config) { c.BackoffMin, c.BackoffMax = time.Minute, time.Second }, "backoffMax:"},
		{func(c *Config) { c.RequestTimeout = -time.Second }, "requestTimeout:"},
		{func(c *Config) { c.Services = []string{"[a"} }, "services:"},
		{func(c *Config) { c.ExcludeServices = []string{""} }, "excludeServices:"},
		{func(c *Config) { c.RequiredTags = []string{""} }, "requiredTags:"},
		{func(c *Config) { c.TaggedAddresses = []string{""} }, "taggedAddresses:"},
		{func(c *Config) { c.HostTemplate = "{{.Nope}}" }, "hostTemplate:"},
		{func(c *Config) { c.PeerHostTemplate = "{{" }, "peerHostTemplate:"},
		{func(c *Config) { c.DefaultProtocol = "quic" }, "defaultProtocol:"},
	} {
		var c Config
		tc.mod(&c)
		c.SetDefaults()
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("want an error naming %s, got %v", tc.field, err)
		}
	}
}

func TestSelected(t *testing.T) {
	c := Config{Services: []string{"web*", "api"}, ExcludeServices: []string{"*-canary"}}
	for name, want := range map[string]bool{
		"web": true, "web-2": true, "api": true, "api-2": false, "web-canary": false, "consul": false,
	} {
		if got := c.selected(name); got != want {
			t.Errorf("selected(%q) = %v", name, got)
		}
	}
	if (&Config{}).selected("consul") {
		t.Error("consul selected")
	}
}

func TestNewTokenSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("  file-secret-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONSUL_HTTP_TOKEN", "env-secret")
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", "")

	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Token: "cfg-secret"}, "cfg-secret"},
		{Config{TokenFile: file}, "file-secret-1"},
		{Config{}, "env-secret"},
	} {
		s, err := New(tc.cfg, sources.Options{Name: "t"})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.tokens.get(); got != tc.want {
			t.Errorf("token %q, want %q", got, tc.want)
		}
	}
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", file)
	s, err := New(Config{}, sources.Options{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.tokens.get(); got != "file-secret-1" {
		t.Errorf("CONSUL_HTTP_TOKEN_FILE: token %q", got)
	}
	// Re-read on change, and redaction of old and new tokens.
	if err := os.WriteFile(file, []byte("file-secret-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.tokens.refresh(); !changed || err != nil {
		t.Fatalf("refresh: %v %v", changed, err)
	}
	if got := s.tokens.redact("a file-secret-1 b file-secret-2"); got != "a <redacted> b <redacted>" {
		t.Errorf("redact: %q", got)
	}
	// A missing token file is an error that names the file, not its content.
	_, err = New(Config{TokenFile: filepath.Join(dir, "missing")}, sources.Options{Name: "t"})
	if err == nil || !strings.Contains(err.Error(), "tokenFile") {
		t.Errorf("missing file: %v", err)
	}
}
