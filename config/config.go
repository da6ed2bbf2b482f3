// Package config is the process configuration: the file's types, parsing
// (strict, every unknown key named with its path), defaults, validation, the
// JSON Schema the chart embeds, and building the configured sources. It is
// kept apart from the pipeline, as Prometheus keeps config/ apart from
// discovery/: the adapter receives its Settings and the sources built here,
// and so imports neither the xDS server nor the sinks whose options this
// file also holds.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/registry-adapter/registry-adapter/adapter"
	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/server"
	"github.com/registry-adapter/registry-adapter/sinks/kube"
)

// Config is the adapter's whole configuration file.
type Config struct {
	Server ServerConfig    `yaml:"server"`
	Output convert.Options `yaml:"output"`
	// Sink is where the resources go: xds (istiod's config source, the
	// default), kubernetes (objects in the API server) or both. One choice for
	// every source: a host merges the contributions of several sources into
	// one ServiceEntry, so a per-source sink would split a host's resources.
	Sink SinkKind `yaml:"sink"`
	// KubernetesSink configures the kubernetes sink.
	KubernetesSink kube.Config            `yaml:"kubernetesSink"`
	Debounce       adapter.DebounceConfig `yaml:"debounce"`
	Guard          adapter.GuardConfig    `yaml:"guard"`
	// StateFile saves the last state to serve it after a restart while a
	// registry is unreachable.
	StateFile adapter.StateFileConfig `yaml:"stateFile"`
	Log       LogConfig               `yaml:"log"`
	Sources   []SourceConfig          `yaml:"sources"`
}

// ServerConfig is the xDS listener plus the HTTP listener for metrics,
// health and debug endpoints.
type ServerConfig struct {
	server.Config `yaml:",inline"`
	// DebugListen serves /metrics, /healthz and /readyz: what the kubelet
	// and Prometheus read. On a loopback address it serves the admin
	// endpoints too, unless AdminListen is set.
	DebugListen string `yaml:"debugListen"`
	// AdminListen serves /debug/* (every address and identity served),
	// pprof and the release of held deletions. It must be a loopback
	// address (reach it with kubectl port-forward) unless AdminTokenFile is
	// set. Empty: DebugListen when that is loopback, else 127.0.0.1:15015.
	AdminListen string `yaml:"adminListen"`
	// AdminTokenFile holds a bearer token every admin request must carry
	// (Authorization: Bearer ...). Read on each request.
	AdminTokenFile string `yaml:"adminTokenFile"`
}

// defaultAdminListen is where the admin endpoints go when DebugListen is
// not loopback and AdminListen is not set.
const defaultAdminListen = "127.0.0.1:15015"

// isLoopback reports whether addr (host:port) listens on loopback only.
// An empty host or a name other than localhost listens on more.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Settings returns the adapter loop's part of the configuration.
func (c *Config) Settings() adapter.Settings {
	return adapter.Settings{Output: c.Output, Debounce: c.Debounce, Guard: c.Guard, StateFile: c.StateFile}
}

// SinkKind chooses the sinks.
type SinkKind string

const (
	SinkXDS        SinkKind = "xds"
	SinkKubernetes SinkKind = "kubernetes"
	SinkBoth       SinkKind = "both"
)

// XDS reports whether the xDS server serves istiod.
func (k SinkKind) XDS() bool { return k == SinkXDS || k == SinkBoth }

// Kubernetes reports whether resources are written to the Kubernetes API.
func (k SinkKind) Kubernetes() bool { return k == SinkKubernetes || k == SinkBoth }

// LogConfig selects the log format and level.
type LogConfig struct {
	// Format is "json" (default when not on a terminal) or "console".
	Format string `yaml:"format"`
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
}

var sourceNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Load reads, defaults and validates a configuration file.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	cfg, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML strictly: an unknown key is an error that names
// its path, because a misspelt option silently ignored is an outage later.
func Parse(r io.Reader) (*Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	// Decoded onto the defaults, so that a key set to zero stays zero.
	cfg := &Config{Debounce: adapter.DefaultDebounceConfig(), Guard: adapter.DefaultGuardConfig()}
	if len(root.Content) > 0 {
		if err := checkKeys(root.Content[0], reflect.TypeOf(cfg).Elem(), ""); err != nil {
			return nil, err
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("parse: %w", err)
		}
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// SetDefaults fills every unset field, sources included.
func (c *Config) SetDefaults() {
	c.Server.SetDefaults()
	if c.Server.DebugListen == "" {
		c.Server.DebugListen = "127.0.0.1:15014"
	}
	if c.Server.AdminListen == "" {
		c.Server.AdminListen = c.Server.DebugListen
		if !isLoopback(c.Server.DebugListen) {
			c.Server.AdminListen = defaultAdminListen
		}
	}
	c.Output.SetDefaults()
	// Debounce and Guard are not filled here: Parse decodes onto
	// their defaults, so that a key set to zero stays zero.
	if c.Sink == "" {
		c.Sink = SinkXDS
	}
	c.KubernetesSink.SetDefaults()
	c.StateFile.SetDefaults()
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	for i := range c.Sources {
		if r, err := c.Sources[i].registry(); err == nil {
			r.SetDefaults()
		}
	}
}

// Validate reports every invalid field it finds, each with its path.
func (c *Config) Validate() error {
	var errs []error
	if err := c.Server.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Server.DebugListen != "" && !strings.Contains(c.Server.DebugListen, ":") {
		errs = append(errs, fmt.Errorf("server.debugListen %q: want host:port", c.Server.DebugListen))
	}
	if c.Server.AdminListen != "" && !isLoopback(c.Server.AdminListen) && c.Server.AdminTokenFile == "" {
		// Anyone who reaches it could release the guard, dump every address
		// and identity, and run profiles.
		errs = append(errs, fmt.Errorf("server.adminListen %q is not a loopback address: set server.adminTokenFile, or keep it on 127.0.0.1 and use kubectl port-forward", c.Server.AdminListen))
	}
	if err := c.Output.Validate(); err != nil {
		errs = append(errs, err)
	}
	switch c.Sink {
	case SinkXDS, SinkKubernetes, SinkBoth:
	default:
		errs = append(errs, fmt.Errorf("sink %q: must be xds, kubernetes or both", c.Sink))
	}
	if c.Sink.Kubernetes() && c.Output.NamespaceLayout == convert.LayoutPerService {
		errs = append(errs, fmt.Errorf("output.namespaceLayout %q: only with sink xds (the Kubernetes sink writes to output.namespace)", c.Output.NamespaceLayout))
	}
	if c.Sink.Kubernetes() {
		if err := c.KubernetesSink.Validate("kubernetesSink"); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.Debounce.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Guard.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.StateFile.Validate(); err != nil {
		errs = append(errs, err)
	}
	switch c.Log.Format {
	case "", "json", "console":
	default:
		errs = append(errs, fmt.Errorf("log.format %q: must be json or console", c.Log.Format))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level %q: must be debug, info, warn or error", c.Log.Level))
	}
	if len(c.Sources) == 0 {
		// Nothing else stops it: the adapter would be ready at once and serve
		// an empty set, so istiod would drop every entry it has from this
		// config source and the Kubernetes sink would prune every object it
		// owns; the mass-deletion guard judges sources, and there are none.
		errs = append(errs, errors.New("sources: at least one source is required (with none, istiod would drop every "+
			"entry the adapter served and the Kubernetes sink would delete every object it wrote)"))
	}
	seen := map[string]bool{}
	for i := range c.Sources {
		s := &c.Sources[i]
		path := fmt.Sprintf("sources[%d]", i)
		if !sourceNameRE.MatchString(s.Name) || len(s.Name) > 63 {
			errs = append(errs, fmt.Errorf("%s.name %q: must be a lowercase DNS label (a-z, 0-9, -)", path, s.Name))
		} else if seen[s.Name] {
			errs = append(errs, fmt.Errorf("%s.name %q: used by another source", path, s.Name))
		}
		seen[s.Name] = true
		if err := s.Limits.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
		}
		r, err := s.registry()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", path, s.Name, err))
			continue
		}
		if err := r.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s.%s: %w", path, r.Key(), err))
		}
	}
	return errors.Join(errs...)
}

// checkKeys walks the YAML tree alongside the Go type and reports keys the
// type does not have, with their full path (e.g. sources[0].consul.tokn).
func checkKeys(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if t == reflect.TypeOf(time.Duration(0)) || t == reflect.TypeOf(time.Time{}) {
		return nil
	}
	var errs []error
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil // the decoder reports type mismatches with a line number
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			ft, ok := fields[key]
			if !ok {
				known := make([]string, 0, len(fields))
				for k := range fields {
					known = append(known, k)
				}
				slices.Sort(known)
				errs = append(errs, fmt.Errorf("%s: unknown key (line %d; known keys: %s)",
					join(path, key), n.Content[i].Line, strings.Join(known, ", ")))
				continue
			}
			if err := checkKeys(n.Content[i+1], ft, join(path, key)); err != nil {
				errs = append(errs, err)
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkKeys(n.Content[i+1], t.Elem(), fmt.Sprintf("%s[%s]", path, n.Content[i].Value)); err != nil {
				errs = append(errs, err)
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return nil
		}
		for i, item := range n.Content {
			if err := checkKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// yamlFields maps the YAML keys of a struct (inline fields flattened) to
// their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	if t == sourceConfigType {
		return sourceFields()
	}
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if opts == "inline" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			for k, v := range yamlFields(ft) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
