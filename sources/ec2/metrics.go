package ec2

import "github.com/registry-adapter/registry-adapter/sources/cloudsource"

// newMetrics makes the EC2-specific metrics of one source.
func newMetrics(source string) *cloudsource.Metrics {
	return cloudsource.NewMetrics(source, "ec2", cloudsource.MetricsOpts{
		Items:              "instances",
		RequestsHelp:       "DescribeInstances page requests, by result (ok, throttled, error).",
		SeenHelp:           "Instances returned by the last successful list (after the API filters).",
		SkippedHelp:        "Instances of the last successful list left out (or, for invalid-service and port-conflict, partly left out), by reason.",
		SkipReasons:        skipReasons,
		Health:             true,
		HealthRequestsHelp: "Health requests: DescribeInstanceStatus (one per 100 running instances) and DescribeTargetHealth (one per target group of health.targetGroups), by result (ok, throttled, error).",
	})
}
