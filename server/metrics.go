package server

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the serving metrics.
type Metrics struct {
	cache *cacheMetrics

	clients    prometheus.Gauge
	pushes     *prometheus.CounterVec
	pushBytes  *prometheus.CounterVec
	ackLatency *prometheus.HistogramVec
	nacks      *prometheus.CounterVec
	acked      *prometheus.GaugeVec
}

type cacheMetrics struct {
	resources *prometheus.GaugeVec
}

// NewMetrics registers the server metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		cache: &cacheMetrics{
			resources: prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: "registry_adapter_server_resources",
				Help: "Resources currently served, by kind.",
			}, []string{"kind"}),
		},
		clients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_adapter_server_connected_clients",
			Help: "Connected xDS streams (each istiod replica holds one).",
		}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_adapter_server_pushes_total",
			Help: "Responses sent, by type URL and protocol (sotw or delta).",
		}, []string{"type", "protocol"}),
		pushBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_adapter_server_push_bytes_total",
			Help: "Serialized resource bytes sent, by type URL.",
		}, []string{"type"}),
		ackLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "registry_adapter_server_change_to_ack_seconds",
			Help:    "Time from a change of a kind's served set to a client's ACK of it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 3, 12),
		}, []string{"kind"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_adapter_server_nacks_total",
			Help: "Responses a client rejected (istiod never does; other clients may).",
		}, []string{"type"}),
		acked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "registry_adapter_server_client_acked_info",
			Help: "1 for the version of each type each client last ACKed (node id, type, version).",
		}, []string{"node", "type", "version"}),
	}
	reg.MustRegister(m.cache.resources, m.clients, m.pushes, m.pushBytes, m.ackLatency, m.nacks, m.acked)
	return m
}
