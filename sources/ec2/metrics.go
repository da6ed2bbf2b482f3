package ec2

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the EC2-specific metrics of one source, beyond the shared
// per-source metrics of sources.Reporter (refresh duration, last success,
// errors by kind, services and instances served). They carry a constant
// "source" label, so the collectors of several sources register side by side.
type metrics struct {
	requests   *prometheus.CounterVec
	seen       prometheus.Gauge
	skipped    *prometheus.GaugeVec
	collectors []prometheus.Collector
}

func newMetrics(source string) *metrics {
	cl := prometheus.Labels{"source": source}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "registry_adapter_ec2_requests_total",
			Help:        "DescribeInstances page requests, by result (ok, throttled, error).",
			ConstLabels: cl,
		}, []string{"result"}),
		seen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "registry_adapter_ec2_instances_seen",
			Help:        "Instances returned by the last successful list (after the API filters).",
			ConstLabels: cl,
		}),
		skipped: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name:        "registry_adapter_ec2_instances_skipped",
			Help:        "Instances of the last successful list left out (or, for invalid-service and port-conflict, partly left out), by reason.",
			ConstLabels: cl,
		}, []string{"reason"}),
	}
	m.collectors = []prometheus.Collector{m.requests, m.seen, m.skipped}
	return m
}

func (m *metrics) observe(res mapResult) {
	m.seen.Set(float64(res.seen))
	for _, r := range skipReasons {
		m.skipped.WithLabelValues(r).Set(float64(res.skipped[r]))
	}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors {
		c.Collect(ch)
	}
}
