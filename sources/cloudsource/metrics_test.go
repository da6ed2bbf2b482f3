package cloudsource

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	m := NewMetrics("prod", "ec2", MetricsOpts{
		Items: "instances", RequestsHelp: "Requests.", SeenHelp: "Seen.", SkippedHelp: "Skipped.",
		SkipReasons: []string{"a", "b"},
	})
	extra := m.NewCounter("unchanged_total", "Unchanged.")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	m.Requests.WithLabelValues("ok").Inc()
	extra.Inc()
	m.Observe(3, map[string]int{"b": 2, "other": 9})
	want := `
# HELP registry_adapter_ec2_instances_seen Seen.
# TYPE registry_adapter_ec2_instances_seen gauge
registry_adapter_ec2_instances_seen{source="prod"} 3
# HELP registry_adapter_ec2_instances_skipped Skipped.
# TYPE registry_adapter_ec2_instances_skipped gauge
registry_adapter_ec2_instances_skipped{reason="a",source="prod"} 0
registry_adapter_ec2_instances_skipped{reason="b",source="prod"} 2
# HELP registry_adapter_ec2_requests_total Requests.
# TYPE registry_adapter_ec2_requests_total counter
registry_adapter_ec2_requests_total{result="ok",source="prod"} 1
# HELP registry_adapter_ec2_unchanged_total Unchanged.
# TYPE registry_adapter_ec2_unchanged_total counter
registry_adapter_ec2_unchanged_total{source="prod"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	// Two sources' collectors register side by side.
	reg.MustRegister(NewMetrics("staging", "ec2", MetricsOpts{Items: "instances", RequestsHelp: "Requests.",
		SeenHelp: "Seen.", SkippedHelp: "Skipped."}))
}
