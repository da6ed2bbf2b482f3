package gce

import (
	"regexp"

	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

// Config is the configuration of one Google Compute Engine source: the
// instances of one project, listed with instances.aggregatedList every
// refreshInterval. SetDefaults fills in the defaults documented in README.md.
type Config struct {
	poll.Config `yaml:",inline"`

	// Project is the project ID (or number) whose instances are listed
	// (required).
	Project string `yaml:"project"`
	// Zones, when set, keeps only the instances of these zones
	// ("us-central1-a"); empty: every zone.
	Zones []string `yaml:"zones"`
	// Filter is a Compute Engine list filter expression sent with the
	// request, e.g. `labels.mesh-service:*`.
	Filter string `yaml:"filter"`

	// ServiceLabel is the instance label naming the services an instance
	// belongs to; several names are joined with '_' (label values allow only
	// [a-z0-9_-]). An instance metadata item of the same key, a
	// comma-separated list, is read when the label is absent.
	ServiceLabel string `yaml:"serviceLabel"`
	// PortsMetadataKey is the instance metadata item listing the ports, e.g.
	// "http:8080,grpc:9090".
	PortsMetadataKey string `yaml:"portsMetadataKey"`
	// MappingConfig holds ports (those of instances that have no
	// PortsMetadataKey item), hostTemplate (a service's host, text/template
	// over .Service and .Project), addressType (the address of the first
	// network interface that is served: private, networkIP; public, the
	// external NAT IP; or ipv6) and network (the Istio network of every
	// instance; empty: the short name of the first network interface's VPC
	// network).
	cloudsource.MappingConfig `yaml:",inline"`
	// OptOutLabel is a label (or metadata item) that, present with any value
	// but "false", excludes an instance.
	OptOutLabel string `yaml:"optOutLabel"`
	// Health, when enabled, serves an instance only while the backend
	// services named in it report it healthy.
	Health HealthConfig `yaml:"health"`
	// Endpoint overrides the Compute Engine API base URL (tests, Private
	// Service Connect). A URL without a path gets "/compute/v1/".
	Endpoint string `yaml:"endpoint"`
}

// Port is a port declared in the configuration.
type Port = cloudsource.Port

// Defaults.
const (
	DefaultServiceLabel     = "mesh-service"
	DefaultPortsMetadataKey = "mesh-ports"
	DefaultOptOutLabel      = "mesh-opt-out"
	DefaultHostTemplate     = "{{.Service}}.gce.internal"
	DefaultAddressType      = cloudsource.AddressPrivate
)

// SetDefaults fills in every unset field that has a default.
func (c *Config) SetDefaults() {
	c.Config.SetDefaults()
	cloudsource.FillIn(map[*string]string{&c.ServiceLabel: DefaultServiceLabel, &c.PortsMetadataKey: DefaultPortsMetadataKey,
		&c.OptOutLabel: DefaultOptOutLabel})
	c.MappingConfig.SetDefaults(DefaultHostTemplate, DefaultAddressType)
}

var (
	// projectRE is a project ID, optionally domain-scoped ("example.com:proj"),
	// or a project number.
	projectRE = regexp.MustCompile(`^(([a-z0-9.-]+:)?[a-z][-a-z0-9]{4,28}[a-z0-9]|[0-9]{1,20})$`)
	// labelKeyRE is a Compute Engine label key (and, loosely, metadata key).
	labelKeyRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	// metadataKeyRE is a Compute Engine metadata key.
	metadataKeyRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,128}$`)
	zoneRE        = regexp.MustCompile(`^[a-z]+-[a-z]+[0-9]+-[a-z]$`)
	regionRE      = regexp.MustCompile(`^[a-z]+-[a-z]+[0-9]+$`)
	// resourceNameRE is a Compute Engine resource name (RFC 1035 label).
	resourceNameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)
)

// Warnings names the settings that are valid but risky (sources.Warner).
func (c *Config) Warnings() []string { return c.MappingConfig.Warnings(hostSample) }

// Validate checks a configuration after SetDefaults. Errors name the field.
func (c *Config) Validate() error {
	var v cloudsource.Checker
	bad := v.Bad
	v.Add(c.Config.Validate())
	v.Required("project", c.Project, projectRE.MatchString, "a project ID")
	v.List("zones", c.Zones, nil, zoneRE.MatchString, "a zone name (e.g. us-central1-a)")
	if !labelKeyRE.MatchString(c.ServiceLabel) {
		bad("serviceLabel", "%q is not a label key ([a-z][a-z0-9_-]*, at most 63 characters)", c.ServiceLabel)
	}
	if !labelKeyRE.MatchString(c.OptOutLabel) {
		bad("optOutLabel", "%q is not a label key ([a-z][a-z0-9_-]*, at most 63 characters)", c.OptOutLabel)
	}
	if !metadataKeyRE.MatchString(c.PortsMetadataKey) {
		bad("portsMetadataKey", "%q is not a metadata key ([a-zA-Z0-9_-], at most 128 characters)", c.PortsMetadataKey)
	}
	v.Add(c.MappingConfig.Validate(hostSample, cloudsource.VMAddressTypes...))
	v.Add(cloudsource.CheckEndpoint("endpoint", c.Endpoint))
	if c.Health.Enabled && len(c.Health.BackendServices) == 0 {
		bad("health.backendServices", "required with health.enabled: the backend services whose health checks count")
	}
	v.List("health.backendServices", c.Health.BackendServices, nil, func(b string) bool {
		_, ok := parseBackendService(b)
		return ok
	}, "a backend service (a name, or regions/<region>/<name>)")
	return v.Err()
}

// HealthConfig is the opt-in to load-balancer health: enabled, and the
// backend services whose health checks count.
type HealthConfig struct {
	cloudsource.HealthConfig `yaml:",inline"`
	// BackendServices are the backend services asked with getHealth: a
	// global one by name ("web-bs"), a regional one as
	// "regions/<region>/<name>".
	BackendServices []string `yaml:"backendServices"`
}

// Key is the configuration key of GCE sources.
func (*Config) Key() string { return "gce" }

// New makes the source (sources.Config); see the package's New.
func (c *Config) New(opts sources.Options) (sources.Source, error) {
	return cloudsource.AsSource(New(*c, opts))
}
