package adapter

import (
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/registry-adapter/registry-adapter/server"
	"github.com/registry-adapter/registry-adapter/sources"
)

// TestMetricFamiliesDoNotCollide: OpenMetrics names a counter's family
// without its _total suffix, so a counter x_total and a gauge x are one
// family twice (issue 18: deletions_held and deletions_held_total did).
func TestMetricFamiliesDoNotCollide(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewMetrics(reg)
	server.NewMetrics(reg)
	sources.NewMetrics(reg)
	descs := make(chan *prometheus.Desc)
	go func() {
		reg.Describe(descs)
		close(descs)
	}()
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	names := map[string]bool{}
	for d := range descs {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			names[m[1]] = true
		}
	}
	if len(names) < 10 {
		t.Fatalf("only %d metric names found: %v", len(names), names)
	}
	for name := range names {
		if base, ok := strings.CutSuffix(name, "_total"); ok && names[base] {
			t.Errorf("%s and %s are one OpenMetrics family", name, base)
		}
	}
}
