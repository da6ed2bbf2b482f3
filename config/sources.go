package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/registry-adapter/registry-adapter/adapter"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/kinds"
)

// SourceConfig is one entry of `sources`: a name and exactly one registry,
// under the registry's key (`consul: {...}`). Which keys exist is the kinds
// package's list: this type knows no source by name.
type SourceConfig struct {
	// Name identifies the source in metrics, logs and annotations. Its
	// position in the list decides conflicts: earlier sources win.
	Name string
	// Limits caps what the source may deliver (adapter/limits.go).
	Limits adapter.SourceLimits
	// Registry is the registry this source watches; nil when the entry
	// names none.
	Registry sources.Config
	// more are the further registries of an entry that names several, kept
	// so that Validate can name them rather than decoding failing at the
	// first.
	more []sources.Config
}

// sourceConfigType is special-cased by yamlFields: its keys are the kinds'.
var sourceConfigType = reflect.TypeFor[SourceConfig]()

// sourceFields are the YAML keys of a SourceConfig and their types.
func sourceFields() map[string]reflect.Type {
	out := map[string]reflect.Type{"name": reflect.TypeFor[string](), "limits": reflect.TypeFor[adapter.SourceLimits]()}
	for _, k := range kinds.All {
		out[k.Key] = reflect.TypeOf(k.New())
	}
	return out
}

// UnmarshalYAML decodes `name` and each registry key into the registry's
// own Config. Unknown keys were reported, with their paths, by checkKeys.
func (s *SourceConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		var want map[string]any
		return n.Decode(&want) // the decoder's type error, with a line number
	}
	*s = SourceConfig{}
	var found []sources.Config
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, value := n.Content[i], n.Content[i+1]
		if key.Value == "name" {
			if err := value.Decode(&s.Name); err != nil {
				return err
			}
			continue
		}
		if key.Value == "limits" {
			if err := value.Decode(&s.Limits); err != nil {
				return err
			}
			continue
		}
		k, ok := kinds.Lookup(key.Value)
		if !ok {
			return fmt.Errorf("line %d: field %s not found in type config.SourceConfig", key.Line, key.Value)
		}
		c := k.New()
		if err := value.Decode(c); err != nil {
			return err
		}
		if isNull(value) {
			continue // `consul:` with no value names no registry, as before
		}
		found = append(found, c)
	}
	// Errors name the kinds in the list's order, not the file's.
	slices.SortStableFunc(found, func(a, b sources.Config) int { return kindIndex(a.Key()) - kindIndex(b.Key()) })
	if len(found) > 0 {
		s.Registry, s.more = found[0], found[1:]
	}
	return nil
}

func isNull(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindIndex(key string) int {
	return slices.IndexFunc(kinds.All, func(k sources.Kind) bool { return k.Key == key })
}

// MarshalYAML writes the entry as it is read: name, then the registry under
// its key.
func (s SourceConfig) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.MappingNode}
	add := func(key string, v any) error {
		var value yaml.Node
		if err := value.Encode(v); err != nil {
			return err
		}
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, &value)
		return nil
	}
	if err := add("name", s.Name); err != nil {
		return nil, err
	}
	if s.Limits != (adapter.SourceLimits{}) {
		if err := add("limits", s.Limits); err != nil {
			return nil, err
		}
	}
	for _, c := range append([]sources.Config{s.Registry}, s.more...) {
		if c == nil {
			continue
		}
		if err := add(c.Key(), c); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// registry returns the entry's one registry, or why there is not one.
func (s *SourceConfig) registry() (sources.Config, error) {
	switch {
	case s.Registry == nil:
		keys := make([]string, 0, len(kinds.All))
		for _, k := range kinds.All {
			keys = append(keys, k.Key)
		}
		return nil, fmt.Errorf("no registry configured: set one of %s", strings.Join(keys, ", "))
	case len(s.more) > 0:
		return nil, fmt.Errorf("more than one registry configured (%s and %s): use one source entry per registry",
			s.Registry.Key(), s.more[0].Key())
	}
	return s.Registry, nil
}

// BuildSources constructs every configured source, in configuration order,
// and registers their metrics with reg (nil for one-shot commands).
func BuildSources(cfg *Config, reg prometheus.Registerer, log *zap.Logger) ([]adapter.NamedSource, error) {
	metrics := sources.NewMetrics(reg)
	var out []adapter.NamedSource
	var errs []error
	for i := range cfg.Sources {
		sc := &cfg.Sources[i]
		r, err := sc.registry()
		if err != nil {
			errs = append(errs, fmt.Errorf("sources[%d] (%s): %w", i, sc.Name, err))
			continue
		}
		rep := sources.NewReporter(sc.Name, metrics)
		src, err := r.New(sources.Options{
			Name: sc.Name, Logger: log.With(zap.String("source", sc.Name)), Reporter: rep, Registerer: reg,
			Limits: sc.Limits.ItemLimits(),
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("sources[%d] (%s): %w", i, sc.Name, err))
			continue
		}
		out = append(out, adapter.NamedSource{Name: sc.Name, Source: src, Reporter: rep, Limits: sc.Limits})
	}
	return out, errors.Join(errs...)
}
