package azure

import "github.com/registry-adapter/registry-adapter/sources/cloudsource"

// newMetrics makes the Azure-specific metrics of one source.
func newMetrics(source string) *cloudsource.Metrics {
	return cloudsource.NewMetrics(source, "azure", cloudsource.MetricsOpts{
		Items:         "vms",
		RequestLabels: []string{"api", "result"},
		RequestsHelp:  "Page requests to Azure Resource Manager, by API (virtualMachines, networkInterfaces, publicIPAddresses) and result (ok, throttled, error).",
		SeenHelp:      "Virtual machines, in any state, returned by the last successful list.",
		SkippedHelp:   "Virtual machines of the last successful list left out (or, for invalid-service, partly left out), by reason.",
		SkipReasons:   skipReasons,
		Health:        true,
	})
}
