package config

import (
	"strings"
	"testing"
)

func TestParseConfigSink(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		wantErr    string
		xds, kube  bool
	}{
		{"default is xds", "", "", true, false},
		{"kubernetes", "sink: kubernetes\n", "", false, true},
		{"both", "sink: both\nkubernetesSink: {owner: dc1, qps: 5, burst: 10}\n", "", true, true},
		{"unknown sink", "sink: etcd\n", `sink "etcd": must be xds, kubernetes or both`, false, false},
		{"sink options checked when used", "sink: both\nkubernetesSink: {owner: 'not a label'}\n", "kubernetesSink.owner", false, false},
		{"sink options ignored when unused", "kubernetesSink: {owner: 'not a label'}\n", "", true, false},
		{"misspelt sink option", "kubernetesSink: {qsp: 5}\n", "kubernetesSink.qsp: unknown key", false, false},
		{"lease timing", "sink: kubernetes\nkubernetesSink: {leaderElection: {leaseDuration: 5s, renewDeadline: 10s}}\n",
			"leaseDuration 5s must be greater than renewDeadline 10s", false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse(strings.NewReader(c.yaml + oneSource))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Sink.XDS() != c.xds || cfg.Sink.Kubernetes() != c.kube {
				t.Errorf("sink %q: xds %v kubernetes %v", cfg.Sink, cfg.Sink.XDS(), cfg.Sink.Kubernetes())
			}
		})
	}
}
