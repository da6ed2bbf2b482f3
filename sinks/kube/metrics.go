package kube

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	applies    *prometheus.CounterVec
	deletes    *prometheus.CounterVec
	conflicts  *prometheus.CounterVec
	errors     *prometheus.CounterVec
	requests   *prometheus.HistogramVec
	writeDelay prometheus.Histogram
	leader     prometheus.Gauge
	foreign    prometheus.Gauge
	split      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_adapter_kube_applies_total",
			Help: "Objects written to the Kubernetes API (created, or changed with server-side apply), by kind.",
		}, []string{"kind"}),
		deletes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_adapter_kube_deletes_total",
			Help: "Owned objects deleted from the Kubernetes API, by kind (pruned at start or removed from a registry).",
		}, []string{"kind"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_adapter_kube_conflicts_total",
			Help: "Writes refused because an object the adapter does not own holds the name; the object is left alone.",
		}, []string{"kind"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_adapter_kube_errors_total",
			Help: "Failed Kubernetes API requests by kind and reason (HTTP status, network or render); writes are retried with backoff.",
		}, []string{"kind", "reason"}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "registry_adapter_kube_request_duration_seconds",
			Help:    "Kubernetes API request latency by verb (create, apply, delete, get, list), including client-side rate limiting.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"verb"}),
		writeDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "registry_adapter_kube_write_delay_seconds",
			Help:    "Time from a change reaching the sink to the object written or deleted in the Kubernetes API.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_adapter_kube_leader",
			Help: "1 while this replica holds the lease and writes to the Kubernetes API.",
		}),
		foreign: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_adapter_kube_foreign_objects",
			Help: "Names the adapter would write but an object it does not own holds.",
		}),
		split: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_adapter_kube_split_services",
			Help: "ServiceEntries too large for one object (over kubernetesSink.maxObjectBytes, or more than 4096 endpoints), written as several objects of the same host.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.applies, m.deletes, m.conflicts, m.errors, m.requests, m.writeDelay, m.leader, m.foreign, m.split)
	}
	return m
}
