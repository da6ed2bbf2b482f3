package cloudsource

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a cloud source's own metrics, beyond the shared per-source
// metrics of sources.Reporter (refresh duration, last success, errors by
// kind, services and instances served): its API requests, and what its last
// successful list saw and left out. They carry a constant "source" label,
// so the collectors of several sources register side by side.
//
// Metrics is a prometheus.Collector, for registration by the caller.
type Metrics struct {
	// Requests counts API requests by RequestLabels.
	Requests *prometheus.CounterVec
	// Seen is the number of items the last successful list returned.
	Seen prometheus.Gauge
	// Skipped is the number of items of the last successful list left
	// out, by reason.
	Skipped *prometheus.GaugeVec
	// Health is the number of instances of the last successful list, by
	// health (passing, critical, unknown); nil unless MetricsOpts.Health.
	Health *prometheus.GaugeVec
	// HealthRequests counts the health API's requests by result; nil
	// unless MetricsOpts.HealthRequestsHelp is set.
	HealthRequests *prometheus.CounterVec

	source, subsystem string
	reasons           []string
	collectors        []prometheus.Collector
}

// MetricsOpts describe a source's metrics.
type MetricsOpts struct {
	// Items is what the source lists ("instances", "vms"): it names the
	// seen and skipped metrics.
	Items string
	// RequestLabels are the requests counter's labels; default: result.
	RequestLabels []string
	// The help texts.
	RequestsHelp, SeenHelp, SkippedHelp string
	// SkipReasons are the values of the skipped gauge's "reason" label,
	// each set (to 0 when absent) by Observe.
	SkipReasons []string
	// Health adds registry_adapter_<subsystem>_<items>_by_health, set by
	// ObserveHealth.
	Health bool
	// HealthRequestsHelp, when set, adds
	// registry_adapter_<subsystem>_health_requests_total{result}.
	HealthRequestsHelp string
}

// NewMetrics makes the metrics of the source called source, named
// registry_adapter_<subsystem>_requests_total,
// registry_adapter_<subsystem>_<items>_seen and
// registry_adapter_<subsystem>_<items>_skipped.
func NewMetrics(source, subsystem string, o MetricsOpts) *Metrics {
	labels := o.RequestLabels
	if len(labels) == 0 {
		labels = []string{"result"}
	}
	m := &Metrics{source: source, subsystem: subsystem, reasons: o.SkipReasons}
	m.Requests = prometheus.NewCounterVec(prometheus.CounterOpts(m.opts("requests_total", o.RequestsHelp)), labels)
	m.Seen = prometheus.NewGauge(prometheus.GaugeOpts(m.opts(o.Items+"_seen", o.SeenHelp)))
	m.Skipped = prometheus.NewGaugeVec(prometheus.GaugeOpts(m.opts(o.Items+"_skipped", o.SkippedHelp)), []string{"reason"})
	m.collectors = []prometheus.Collector{m.Requests, m.Seen, m.Skipped}
	if o.Health {
		m.Health = prometheus.NewGaugeVec(prometheus.GaugeOpts(m.opts(o.Items+"_by_health",
			"Instances of the last successful list that were mapped (served, or left out only for being unhealthy), by health: "+
				"passing and critical as the cloud last reported them, unknown when it never did (or health is not enabled).")),
			[]string{"health"})
		m.collectors = append(m.collectors, m.Health)
	}
	if o.HealthRequestsHelp != "" {
		m.HealthRequests = prometheus.NewCounterVec(prometheus.CounterOpts(m.opts("health_requests_total", o.HealthRequestsHelp)),
			[]string{"result"})
		m.collectors = append(m.collectors, m.HealthRequests)
	}
	return m
}

func (m *Metrics) opts(name, help string) prometheus.Opts {
	return prometheus.Opts{
		Namespace:   "registry_adapter",
		Subsystem:   m.subsystem,
		Name:        name,
		Help:        help,
		ConstLabels: prometheus.Labels{"source": m.source},
	}
}

// NewCounter adds a counter of the source's own, named
// registry_adapter_<subsystem>_<name>, to the collector.
func (m *Metrics) NewCounter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts(m.opts(name, help)))
	m.collectors = append(m.collectors, c)
	return c
}

// Observe records a successful list: the items seen, and those skipped by
// reason.
func (m *Metrics) Observe(seen int, skipped map[string]int) {
	m.Seen.Set(float64(seen))
	for _, r := range m.reasons {
		m.Skipped.WithLabelValues(r).Set(float64(skipped[r]))
	}
}

// ObserveResult records a successful list's result: Observe, and the
// instances by health when the source has that gauge.
func (m *Metrics) ObserveResult(r Result) {
	m.Observe(r.Seen, r.Skipped)
	if m.Health != nil {
		for _, h := range HealthStates {
			m.Health.WithLabelValues(h.String()).Set(float64(r.Health[h]))
		}
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors {
		c.Collect(ch)
	}
}
