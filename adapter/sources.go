package adapter

import (
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/azure"
	"github.com/registry-adapter/registry-adapter/sources/cloudmap"
	"github.com/registry-adapter/registry-adapter/sources/consul"
	"github.com/registry-adapter/registry-adapter/sources/ec2"
	"github.com/registry-adapter/registry-adapter/sources/gce"
	"github.com/registry-adapter/registry-adapter/sources/static"
)

// sourceKind ties a configuration key to its source package. The list is
// explicit (no init() registration) so that what a binary can watch is
// visible in one place.
type sourceKind struct {
	key         string
	present     func(*SourceConfig) bool
	setDefaults func(*SourceConfig)
	validate    func(*SourceConfig) error
	build       func(*SourceConfig, sources.Options) (sources.Source, error)
}

// configured is what every source package's Config provides.
type configured interface {
	SetDefaults()
	Validate() error
}

// kindOf builds a sourceKind from a field accessor and a constructor.
func kindOf[C any, PC interface {
	*C
	configured
}, S sources.Source](key string, field func(*SourceConfig) *C, build func(C, sources.Options) (S, error)) sourceKind {
	return sourceKind{
		key:         key,
		present:     func(s *SourceConfig) bool { return field(s) != nil },
		setDefaults: func(s *SourceConfig) { PC(field(s)).SetDefaults() },
		validate:    func(s *SourceConfig) error { return PC(field(s)).Validate() },
		build: func(s *SourceConfig, o sources.Options) (sources.Source, error) {
			return build(*field(s), o)
		},
	}
}

var sourceKinds = []sourceKind{
	kindOf("static", func(s *SourceConfig) *static.Config { return s.Static }, static.New),
	kindOf("consul", func(s *SourceConfig) *consul.Config { return s.Consul }, consul.New),
	kindOf("gce", func(s *SourceConfig) *gce.Config { return s.GCE }, gce.New),
	kindOf("azure", func(s *SourceConfig) *azure.Config { return s.Azure }, azure.New),
	kindOf("ec2", func(s *SourceConfig) *ec2.Config { return s.EC2 }, ec2.New),
	kindOf("cloudmap", func(s *SourceConfig) *cloudmap.Config { return s.CloudMap }, cloudmap.New),
}

func (s *SourceConfig) kind() (sourceKind, error) {
	var found []sourceKind
	for _, k := range sourceKinds {
		if k.present(s) {
			found = append(found, k)
		}
	}
	keys := make([]string, 0, len(sourceKinds))
	for _, k := range sourceKinds {
		keys = append(keys, k.key)
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return sourceKind{}, fmt.Errorf("no registry configured: set one of %s", strings.Join(keys, ", "))
	default:
		return sourceKind{}, fmt.Errorf("more than one registry configured (%s and %s): use one source entry per registry",
			found[0].key, found[1].key)
	}
}

// BuildSources constructs every configured source, in configuration order,
// and registers their metrics with reg (nil for one-shot commands).
func BuildSources(cfg *Config, reg prometheus.Registerer, log *zap.Logger) ([]NamedSource, error) {
	var metrics *sources.Metrics
	if reg != nil {
		metrics = sources.NewMetrics(reg)
	}
	var out []NamedSource
	var errs []error
	for i := range cfg.Sources {
		sc := &cfg.Sources[i]
		k, err := sc.kind()
		if err != nil {
			errs = append(errs, fmt.Errorf("sources[%d] (%s): %w", i, sc.Name, err))
			continue
		}
		rep := sources.NewReporter(sc.Name, metrics)
		src, err := k.build(sc, sources.Options{
			Name: sc.Name, Logger: log.With(zap.String("source", sc.Name)), Reporter: rep,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("sources[%d] (%s): %w", i, sc.Name, err))
			continue
		}
		// Sources with metrics of their own beyond the common ones expose them
		// as a collector.
		if c, ok := src.(interface{ Collector() prometheus.Collector }); ok && reg != nil {
			if err := reg.Register(c.Collector()); err != nil {
				errs = append(errs, fmt.Errorf("sources[%d] (%s): metrics: %w", i, sc.Name, err))
				continue
			}
		}
		out = append(out, NamedSource{Name: sc.Name, Source: src, Reporter: rep})
	}
	return out, errors.Join(errs...)
}
