package server

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the serving metrics of one shard. Every series carries a
// shard label ("0" with a single listener), so that K listeners in one
// process never write to the same series: their served sets, clients and
// ACKed versions are distinct (two shards that both serve an empty type even
// share its version). Dashboards that aggregate by kind or type keep working
// unchanged with one shard.
type Metrics struct {
	vecs  *metricVecs
	shard string

	cache *cacheMetrics

	clients    prometheus.Gauge
	pushes     *prometheus.CounterVec
	pushBytes  *prometheus.CounterVec
	ackLatency prometheus.ObserverVec
	nacks      *prometheus.CounterVec
	acked      *prometheus.GaugeVec
	refused    *prometheus.CounterVec
}

type cacheMetrics struct {
	resources *prometheus.GaugeVec
}

// metricVecs are the registered collectors, shared by every shard's view.
type metricVecs struct {
	resources  *prometheus.GaugeVec
	clients    *prometheus.GaugeVec
	pushes     *prometheus.CounterVec
	pushBytes  *prometheus.CounterVec
	ackLatency *prometheus.HistogramVec
	nacks      *prometheus.CounterVec
	acked      *prometheus.GaugeVec
	refused    *prometheus.CounterVec
}

// NewMetrics registers the server metrics with reg and returns shard 0's
// view; Shard gives the others. With a nil reg they are registered nowhere:
// the cache and the streams record into them and nothing reads them (tests,
// render), so that no code path checks for missing metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	v := &metricVecs{
		resources: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "registry_adapter_server_resources",
			Help: "Resources currently served, by kind and shard (listener).",
		}, []string{"kind", "shard"}),
		clients: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "registry_adapter_server_connected_clients",
			Help: "Connected xDS streams, by shard (each istiod replica holds one per shard).",
		}, []string{"shard"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_adapter_server_pushes_total",
			Help: "Responses sent, by type URL (\"other\" for a type istiod does not ask for), protocol (sotw or delta) and shard.",
		}, []string{"type", "protocol", "shard"}),
		pushBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_adapter_server_push_bytes_total",
			Help: "Serialized resource bytes sent, by type URL (\"other\" for a type istiod does not ask for) and shard.",
		}, []string{"type", "shard"}),
		ackLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "registry_adapter_server_change_to_ack_seconds",
			Help:    "Time from a change of a kind's served set to a client's ACK of it, by kind and shard.",
			Buckets: prometheus.ExponentialBuckets(0.001, 3, 12),
		}, []string{"kind", "shard"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_adapter_server_nacks_total",
			Help: "Responses a client rejected, by type URL (\"other\" for a type istiod does not ask for) and shard (istiod never does; other clients may).",
		}, []string{"type", "shard"}),
		acked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "registry_adapter_server_client_acked",
			Help: "Per client (node id) and type: 1 when the client ACKed the last response it was sent, 0 while that response is unacknowledged or was rejected. The versions are on /debug/clients (a version label would make a new series at every push).",
		}, []string{"node", "type", "shard"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_adapter_server_refused_requests_total",
			Help: "Requests refused, each ending its stream, by reason (type_url: not an Istio config type; types, resource_names, initial_versions: beyond a per-stream limit) and shard. istiod sends none.",
		}, []string{"reason", "shard"}),
	}
	if reg != nil {
		reg.MustRegister(v.resources, v.clients, v.pushes, v.pushBytes, v.ackLatency, v.nacks, v.acked, v.refused)
	}
	return v.view(0)
}

// Shard returns the view of shard i, for its Cache and listener. On a nil
// Metrics it is a view of metrics registered nowhere, so metrics stay
// optional.
func (m *Metrics) Shard(i int) *Metrics {
	if m == nil {
		m = NewMetrics(nil)
	}
	return m.vecs.view(i)
}

func (v *metricVecs) view(i int) *Metrics {
	shard := strconv.Itoa(i)
	l := prometheus.Labels{"shard": shard}
	return &Metrics{
		vecs:       v,
		shard:      shard,
		cache:      &cacheMetrics{resources: v.resources.MustCurryWith(l)},
		clients:    v.clients.WithLabelValues(shard),
		pushes:     v.pushes.MustCurryWith(l),
		pushBytes:  v.pushBytes.MustCurryWith(l),
		ackLatency: v.ackLatency.MustCurryWith(l),
		nacks:      v.nacks.MustCurryWith(l),
		acked:      v.acked.MustCurryWith(l),
		refused:    v.refused.MustCurryWith(l),
	}
}
