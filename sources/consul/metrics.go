package consul

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Consul-specific metrics of one source, beyond the shared
// per-source metrics of sources.Reporter. They carry a constant "source"
// label, so the collectors of several Consul sources register side by side.
type metrics struct {
	requests      *prometheus.CounterVec
	inflight      prometheus.Gauge
	watches       prometheus.Gauge
	slotsShort    prometheus.Gauge
	indexResets   *prometheus.CounterVec
	aclFiltered   *prometheus.CounterVec
	invalid       *prometheus.CounterVec
	collectorList []prometheus.Collector
}

func newMetrics(source string) *metrics {
	cl := prometheus.Labels{"source": source}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "registry_adapter_consul_requests_total",
			Help:        "Requests to Consul by endpoint (catalog, health, peering) and result (ok, or an error kind).",
			ConstLabels: cl,
		}, []string{"endpoint", "result"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "registry_adapter_consul_requests_in_flight",
			Help:        "Requests to Consul in flight (blocking queries included), capped by maxConcurrentQueries.",
			ConstLabels: cl,
		}),
		watches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "registry_adapter_consul_watched_services",
			Help:        "Services watched with a blocking health query.",
			ConstLabels: cl,
		}),
		slotsShort: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_adapter_consul_watches_without_slot",
			Help: "Watched services beyond maxConcurrentQueries. Above 0, watches take turns and a change " +
				"can take up to one wait to be seen.",
			ConstLabels: cl,
		}),
		indexResets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "registry_adapter_consul_index_resets_total",
			Help:        "Blocking queries whose X-Consul-Index went backwards (Consul restored or replaced).",
			ConstLabels: cl,
		}, []string{"endpoint"}),
		aclFiltered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "registry_adapter_consul_acl_filtered_total",
			Help:        "Answers Consul filtered by ACLs (X-Consul-Results-Filtered-By-ACLs).",
			ConstLabels: cl,
		}, []string{"endpoint"}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "registry_adapter_consul_invalid_total",
			Help:        "Instances or services skipped, or values replaced, because Consul's data was invalid, by reason.",
			ConstLabels: cl,
		}, []string{"reason"}),
	}
	m.collectorList = []prometheus.Collector{m.requests, m.inflight, m.watches, m.slotsShort, m.indexResets, m.aclFiltered, m.invalid}
	return m
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectorList {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectorList {
		c.Collect(ch)
	}
}
