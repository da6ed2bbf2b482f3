package cloudmap

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

// metrics are the Cloud Map-specific metrics of one source: the cloud
// sources' own, plus the service reads a revision saved.
type metrics struct {
	*cloudsource.Metrics
	unchanged prometheus.Counter
}

func newMetrics(source string) *metrics {
	m := &metrics{Metrics: cloudsource.NewMetrics(source, "cloudmap", cloudsource.MetricsOpts{
		Items:         "instances",
		RequestLabels: []string{"operation", "result"},
		RequestsHelp:  "Cloud Map requests, by operation and result (ok, throttled, not-found, error).",
		SeenHelp:      "Instances returned for the services of the last successful list.",
		SkippedHelp:   "Instances of the last successful list left out (or, for port-conflict, partly left out), by reason.",
		SkipReasons:   skipReasons,
	})}
	m.unchanged = m.NewCounter("unchanged_total", "Service reads skipped because DiscoverInstancesRevision did not change.")
	return m
}
