package gce

import "github.com/registry-adapter/registry-adapter/sources/cloudsource"

// newMetrics makes the GCE-specific metrics of one source.
func newMetrics(source string) *cloudsource.Metrics {
	return cloudsource.NewMetrics(source, "gce", cloudsource.MetricsOpts{
		Items:              "instances",
		RequestsHelp:       "instances.aggregatedList page requests to Compute Engine, by result (ok, throttled, error).",
		SeenHelp:           "Instances, in any state, returned by the last successful list.",
		SkippedHelp:        "Instances of the last successful list left out (or, for invalid-service, partly left out), by reason.",
		SkipReasons:        skipReasons,
		Health:             true,
		HealthRequestsHelp: "Backend service requests for health (backendServices.get and getHealth, global or regional), by result (ok, throttled, error).",
	})
}
