// Package sources defines what a registry source is and gives every source the
// same status reporting and metrics. Each registry lives in its own
// sub-package (consul, static, ec2, ...).
package sources

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/model"
)

// Source watches one registry.
//
// Run sends the complete initial state as its first batch, then batches of
// changed groups only (a group replaces its scope; an empty group removes it).
// It returns when ctx is done, and never closes out. When the registry fails,
// a source sends nothing and keeps its last good state: for istiod, stale is
// far better than partial, because whatever a reply leaves out is deleted.
type Source interface {
	Run(ctx context.Context, out chan<- []model.Group) error
}

// Config is one kind of source's configuration, and its factory: the
// configuration key it is read from, its defaults, its validation and its
// constructor. Every source package's *Config implements it; the kinds
// package lists them (an explicit list, as Prometheus' discovery does, so
// that what a binary can watch is visible in one place).
type Config interface {
	// Key is the configuration key of this kind of source ("consul"); it
	// is also the name of the source's package directory.
	Key() string
	// SetDefaults fills in every unset field that has a default; applying
	// it twice changes nothing more.
	SetDefaults()
	// Validate checks the configuration after SetDefaults. Errors name the
	// field, relative to the source's key.
	Validate() error
	// New makes the source. It does no I/O that can fail for a registry
	// that is down: a registry's trouble shows as a failing source.
	New(Options) (Source, error)
}

// Kind is one kind of source, as listed by the kinds package.
type Kind struct {
	// Key is Config.Key.
	Key string
	// New returns an empty configuration of this kind, for decoding.
	New func() Config
}

// KindOf returns the Kind whose configuration is a C.
func KindOf[C any, PC interface {
	*C
	Config
}]() Kind {
	return Kind{Key: PC(new(C)).Key(), New: func() Config { return PC(new(C)) }}
}

// Options are what every source constructor receives besides its own config.
type Options struct {
	// Name is the source's name from the configuration, used in metrics,
	// logs and annotations.
	Name     string
	Logger   *zap.Logger
	Reporter *Reporter
	// Registerer takes the metrics of the source's own, beyond the shared
	// ones the Reporter records; nil (tests, one-shot commands): they are
	// kept but not registered.
	Registerer prometheus.Registerer
	// Limits are the per-item caps the source applies itself.
	Limits Limits
}

// Limits are the per-item caps of sources[].limits that only a source can
// apply, because only it can name the item at fault: the adapter checks the
// rest on every batch. Zero is no limit.
type Limits struct {
	// PortsPerInstance bounds the ports one instance may declare (a Consul
	// multi-port registration): an instance beyond it is left out by name,
	// rather than add its ports to its service, which would then be left out
	// whole for having more than limits.portsPerService.
	PortsPerInstance int
}

// Register registers a source's own metrics with Registerer, if there is
// one.
func (o Options) Register(cs ...prometheus.Collector) error {
	if o.Registerer == nil {
		return nil
	}
	for _, c := range cs {
		if err := o.Registerer.Register(c); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	return nil
}

// Status is a source's health as shown on /readyz and /debug/sources.
type Status struct {
	Name string `json:"name"`
	// Synced is true once the source delivered its first full state.
	Synced bool `json:"synced"`
	// Stale is true while the last attempt failed and the last good state is
	// being served instead.
	Stale     bool      `json:"stale"`
	LastSync  time.Time `json:"lastSync,omitzero"`
	LastError string    `json:"lastError,omitempty"`
	ErrorTime time.Time `json:"lastErrorTime,omitzero"`
	Services  int       `json:"services"`
	Instances int       `json:"instances"`
}

// Metrics are the per-source metrics, shared by all sources and labelled by
// source name.
type Metrics struct {
	syncDuration *prometheus.HistogramVec
	lastSuccess  *prometheus.GaugeVec
	errors       *prometheus.CounterVec
	services     *prometheus.GaugeVec
	instances    *prometheus.GaugeVec
	stale        *prometheus.GaugeVec
}

// NewMetrics registers the source metrics with reg. With a nil reg they are
// registered nowhere: a reporter records into them and nothing reads them
// (tests, render), so that no caller checks for missing metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		syncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "registry_adapter_source_sync_duration_seconds",
			Help:    "Time a source took to fetch a full or partial state from its registry.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"source"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "registry_adapter_source_last_success_timestamp_seconds",
			Help: "Unix time of the last successful sync of a source.",
		}, []string{"source"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_adapter_source_errors_total",
			Help: "Errors talking to a registry, by kind (e.g. unreachable, throttled, acl, decode).",
		}, []string{"source", "kind"}),
		services: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "registry_adapter_source_services",
			Help: "Services a source currently reports.",
		}, []string{"source"}),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "registry_adapter_source_instances",
			Help: "Instances a source currently reports.",
		}, []string{"source"}),
		stale: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "registry_adapter_source_stale",
			Help: "1 while a source's last attempt failed and its last good state is served.",
		}, []string{"source"}),
	}
	if reg != nil {
		reg.MustRegister(m.syncDuration, m.lastSuccess, m.errors, m.services, m.instances, m.stale)
	}
	return m
}

// Reporter records one source's status and metrics. Its methods are safe for
// concurrent use.
type Reporter struct {
	metrics *Metrics
	now     func() time.Time

	mu     sync.Mutex
	status Status
	resets uint64
}

// NewReporter returns the reporter for the source called name. metrics may be
// nil (tests, render): it then records into metrics registered nowhere.
func NewReporter(name string, metrics *Metrics) *Reporter {
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	return &Reporter{metrics: metrics, now: time.Now, status: Status{Name: name}}
}

// Synced records a successful sync and the totals the source now holds.
func (r *Reporter) Synced(took time.Duration, services, instances int) {
	now := r.now()
	r.mu.Lock()
	r.status.Synced = true
	r.status.Stale = false
	r.status.LastSync = now
	r.status.Services = services
	r.status.Instances = instances
	name := r.status.Name
	r.mu.Unlock()
	r.metrics.syncDuration.WithLabelValues(name).Observe(took.Seconds())
	r.metrics.lastSuccess.WithLabelValues(name).Set(float64(now.UnixNano()) / 1e9)
	r.metrics.services.WithLabelValues(name).Set(float64(services))
	r.metrics.instances.WithLabelValues(name).Set(float64(instances))
	r.metrics.stale.WithLabelValues(name).Set(0)
}

// Failed records an error of the given kind. The source keeps serving its last
// good state, which is what Stale says.
func (r *Reporter) Failed(kind string, err error) {
	r.mu.Lock()
	r.status.Stale = true
	r.status.LastError = err.Error()
	r.status.ErrorTime = r.now()
	name := r.status.Name
	r.mu.Unlock()
	r.metrics.errors.WithLabelValues(name, kind).Inc()
	r.metrics.stale.WithLabelValues(name).Set(1)
}

// RegistryReset records that the registry was reset or replaced (its index
// went backwards). Call it before sending the batches that follow from the
// reset: the adapter's mass-deletion guard then holds any shrinking of the
// source, whatever its size, until it persists or an operator allows it.
func (r *Reporter) RegistryReset() {
	r.mu.Lock()
	r.resets++
	r.mu.Unlock()
}

// Resets is how many registry resets were recorded; a reader compares it
// with the count it saw last.
func (r *Reporter) Resets() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resets
}

// Status returns a copy of the current status.
func (r *Reporter) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}
