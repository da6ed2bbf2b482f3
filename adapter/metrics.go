package adapter

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the adapter loop's metrics.
type Metrics struct {
	updates       *prometheus.CounterVec
	windows       prometheus.Counter
	flushDuration prometheus.Histogram
	applied       *prometheus.CounterVec
	rejected      *prometheus.CounterVec
	hosts         prometheus.Gauge
	held          *prometheus.GaugeVec
	heldTotal     *prometheus.CounterVec
}

// NewMetrics registers the adapter metrics with reg. With a nil reg they are
// registered nowhere: the loop records into them and nothing reads them
// (tests, render), so that no code path checks for missing metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_adapter_source_updates_total",
			Help: "Batches of changed scopes received from each source.",
		}, []string{"source"}),
		windows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "registry_adapter_debounce_windows_total",
			Help: "Debounce windows closed, each converting and publishing the hosts changed in it.",
		}),
		flushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "registry_adapter_flush_duration_seconds",
			Help:    "Time to convert, diff and hand over the changes of one debounce window.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_adapter_changes_applied_total",
			Help: "Resources upserted or deleted in the served set, by kind.",
		}, []string{"kind", "op"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_adapter_rejected_items_total",
			Help: "Items left out of what istiod receives, by source and reason code.",
		}, []string{"source", "reason"}),
		hosts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_adapter_hosts",
			Help: "Distinct service hosts known across all sources.",
		}),
	}
	m.held = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "registry_adapter_deletions_held",
		Help: "1 while the mass-deletion guard holds a change of the source.",
	}, []string{"source"})
	// Not deletions_held_total: OpenMetrics names a counter's family without
	// _total, which would collide with the gauge above.
	m.heldTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "registry_adapter_guard_holds_total",
		Help: "Changes the mass-deletion guard started holding, by source.",
	}, []string{"source"})
	if reg != nil {
		reg.MustRegister(m.updates, m.windows, m.flushDuration, m.applied, m.rejected, m.hosts, m.held, m.heldTotal)
	}
	return m
}
