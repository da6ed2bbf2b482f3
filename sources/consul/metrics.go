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
	http2         prometheus.Gauge
	connections   prometheus.Gauge
	feedChanges   *prometheus.CounterVec
	watches       prometheus.Gauge
	slotsShort    prometheus.Gauge
	indexResets   *prometheus.CounterVec
	aclFiltered   *prometheus.CounterVec
	invalid       *prometheus.CounterVec
	notCarried    *prometheus.GaugeVec
	collectorList []prometheus.Collector
}

func newMetrics(source string) *metrics {
	cl := prometheus.Labels{"source": source}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "registry_adapter_consul_requests_total",
			Help:        "Requests to Consul by endpoint (catalog, health, checks, config, peering, login) and result (ok, or an error kind).",
			ConstLabels: cl,
		}, []string{"endpoint", "result"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_adapter_consul_requests_in_flight",
			Help: "Requests to Consul in flight (blocking queries included): HTTP/1.1 connections in use, capped by " +
				"maxConcurrentQueries, or HTTP/2 streams, capped by maxStreams.",
			ConstLabels: cl,
		}),
		http2: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "registry_adapter_consul_http2",
			Help:        "1 when Consul's last answer came over HTTP/2 (every watch then has its own stream), else 0.",
			ConstLabels: cl,
		}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "registry_adapter_consul_connections",
			Help:        "Open TCP (or unix socket) connections to Consul.",
			ConstLabels: cl,
		}),
		feedChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_adapter_consul_feed_reads_total",
			Help: "Services read at once because a change feed (checks, catalog) showed they changed while their " +
				"watch waited for its turn, by feed.",
			ConstLabels: cl,
		}, []string{"feed"}),
		watches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "registry_adapter_consul_watched_services",
			Help:        "Services watched with a blocking health query.",
			ConstLabels: cl,
		}),
		slotsShort: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_adapter_consul_watches_without_slot",
			Help: "Watched services beyond the blocking queries that can be in flight. Above 0, watches take turns; " +
				"over HTTP/1.1 the change feeds still show check and catalog changes at once (see the README).",
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
		notCarried: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "registry_adapter_consul_config_entry_not_carried",
			Help: "1 for each part of a Consul config entry that Istio cannot state, while it lasts: by kind, service, " +
				"field and result (rejected: the entry is not carried; ignored: only the field is left out).",
			ConstLabels: cl,
		}, []string{"kind", "service", "field", "result"}),
	}
	m.collectorList = []prometheus.Collector{m.requests, m.inflight, m.http2, m.connections, m.feedChanges, m.watches, m.slotsShort, m.indexResets, m.aclFiltered, m.invalid, m.notCarried}
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
