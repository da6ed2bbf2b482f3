package cloudsource

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/registry-adapter/registry-adapter/model"
)

// TestHealthBook: an answer without a verdict keeps the last one; an
// instance never answered for is unknown; one no longer listed is
// forgotten.
func TestHealthBook(t *testing.T) {
	b := NewHealthBook()
	if v := b.Get("i-1"); v.Health != model.HealthUnknown {
		t.Fatalf("never answered: %+v", v)
	}
	b.Record("i-1", Verdict{Health: model.HealthCritical, Detail: "impaired"})
	b.Record("i-2", Verdict{Health: model.HealthPassing})
	b.Record("i-1", Verdict{}) // no data this time
	if v := b.Get("i-1"); v.Health != model.HealthCritical || v.Detail != "impaired" {
		t.Fatalf("after an answer without data: %+v", v)
	}
	b.Record("i-1", Verdict{Health: model.HealthPassing})
	if v := b.Get("i-1"); v.Health != model.HealthPassing || v.Detail != "" {
		t.Fatalf("after a passing answer: %+v", v)
	}
	b.Retain(map[string]bool{"i-2": true})
	if v := b.Get("i-1"); v.Health != model.HealthUnknown {
		t.Fatalf("after leaving the list: %+v", v)
	}
	if v := b.Get("i-2"); v.Health != model.HealthPassing {
		t.Fatalf("still listed: %+v", v)
	}
}

func TestMetricsByHealth(t *testing.T) {
	m := NewMetrics("prod", "gce", MetricsOpts{Items: "instances", RequestsHelp: "R.", SeenHelp: "S.", SkippedHelp: "K.",
		Health: true, HealthRequestsHelp: "H."})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	r := NewResult(4)
	r.Health[model.HealthPassing] = 2
	r.Add(Result{Skipped: map[string]int{}, Problems: map[string]Problem{}, Health: map[model.Health]int{model.HealthCritical: 1, model.HealthPassing: 1}})
	m.ObserveResult(r)
	m.HealthRequests.WithLabelValues("throttled").Inc()
	want := `
# HELP registry_adapter_gce_health_requests_total H.
# TYPE registry_adapter_gce_health_requests_total counter
registry_adapter_gce_health_requests_total{result="throttled",source="prod"} 1
# HELP registry_adapter_gce_instances_by_health Instances of the last successful list that were mapped (served, or left out only for being unhealthy), by health: passing and critical as the cloud last reported them, unknown when it never did (or health is not enabled).
# TYPE registry_adapter_gce_instances_by_health gauge
registry_adapter_gce_instances_by_health{health="critical",source="prod"} 1
registry_adapter_gce_instances_by_health{health="passing",source="prod"} 3
registry_adapter_gce_instances_by_health{health="unknown",source="prod"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "registry_adapter_gce_health_requests_total",
		"registry_adapter_gce_instances_by_health"); err != nil {
		t.Fatal(err)
	}
}
