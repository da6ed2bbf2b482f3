package config

import (
	"strings"
	"testing"
)

func TestServerShardsConfig(t *testing.T) {
	base := "sources: [{name: vms, static: {services: [{name: web, ports: [{number: 80}]}]}}]\n"
	for _, c := range []struct {
		server  string
		shards  int
		wantErr string
	}{
		{"", 1, ""},
		{"server: {shards: 1}", 1, ""},
		{"server: {shards: 4, listen: 0.0.0.0:15010}", 4, ""},
		{"server: {shards: 64, listen: 127.0.0.1:0}", 64, ""},
		{"server: {shards: -1}", 0, "server.shards -1: must be between 1 and 64"},
		{"server: {shards: 65}", 0, "server.shards 65: must be between 1 and 64"},
		{"server: {shards: two}", 0, "cannot unmarshal"},
		{"server: {shards: 8, listen: 0.0.0.0:65530}", 0, "server.listen \"0.0.0.0:65530\": server.shards 8 needs ports 65530-65537"},
		{"server: {shard: 2}", 0, "server.shard: unknown key"},
	} {
		cfg, err := Parse(strings.NewReader(c.server + "\n" + base))
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%q: %v", c.server, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%q: error %v, want one containing %q", c.server, err, c.wantErr)
		case c.wantErr == "" && cfg.Server.Shards != c.shards:
			t.Errorf("%q: shards %d, want %d", c.server, cfg.Server.Shards, c.shards)
		}
	}
}
