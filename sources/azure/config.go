package azure

import (
	"regexp"
	"strings"

	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

// Config is the configuration of one Azure source: the virtual machines of
// one subscription, listed with Virtual Machines - List All (statusOnly) and
// joined with the subscription's network interfaces every refreshInterval.
// SetDefaults fills in the defaults documented in README.md.
type Config struct {
	poll.Config `yaml:",inline"`

	// SubscriptionID is the subscription whose VMs are listed (required).
	SubscriptionID string `yaml:"subscriptionId"`
	// ResourceGroups, when set, keeps only the VMs of these resource groups
	// (compared case-insensitively); empty: every resource group.
	ResourceGroups []string `yaml:"resourceGroups"`

	// ServiceTag is the VM tag naming the services a VM belongs to, a
	// comma-separated list.
	ServiceTag string `yaml:"serviceTag"`
	// PortsTag is the VM tag listing the ports, e.g. "http:8080,grpc:9090".
	PortsTag string `yaml:"portsTag"`
	// MappingConfig holds ports (those of VMs that have no PortsTag tag),
	// hostTemplate (a service's host, text/template over .Service and
	// .Subscription), addressType (the address of the primary network
	// interface that is served: private, the primary IPv4 configuration;
	// public, its public IP address; or ipv6, the first private IPv6
	// configuration) and network (the Istio network of every VM; empty:
	// the ID of the virtual network of the primary IP configuration's
	// subnet).
	cloudsource.MappingConfig `yaml:",inline"`
	// OptOutTag is a tag that, present with any value but "false", excludes
	// a VM.
	OptOutTag string `yaml:"optOutTag"`
	// Health, when enabled, serves a VM only while the Application Health
	// extension's vmHealth in its instance view (read from the same list)
	// is not unhealthy or initializing.
	Health cloudsource.HealthConfig `yaml:"health"`
	// Endpoint overrides the Azure Resource Manager URL (tests, private
	// link, sovereign clouds). Tokens are still requested for the public
	// cloud's Resource Manager audience.
	Endpoint string `yaml:"endpoint"`
	// TenantID restricts the credential to a tenant. ClientID selects a
	// user-assigned managed identity or workload identity by client ID.
	// Neither is needed with DefaultAzureCredential's environment variables.
	TenantID string `yaml:"tenantId"`
	ClientID string `yaml:"clientId"`
}

// Port is a port declared in the configuration.
type Port = cloudsource.Port

// Defaults.
const (
	DefaultServiceTag   = "mesh-service"
	DefaultPortsTag     = "mesh-ports"
	DefaultOptOutTag    = "mesh-opt-out"
	DefaultHostTemplate = "{{.Service}}.azure.internal"
	DefaultAddressType  = cloudsource.AddressPrivate
)

// SetDefaults fills in every unset field that has a default.
func (c *Config) SetDefaults() {
	c.Config.SetDefaults()
	cloudsource.FillIn(map[*string]string{&c.ServiceTag: DefaultServiceTag, &c.PortsTag: DefaultPortsTag, &c.OptOutTag: DefaultOptOutTag})
	c.MappingConfig.SetDefaults(DefaultHostTemplate, DefaultAddressType)
}

var (
	uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	// resourceGroupRE: 1-90 characters, alphanumerics, '_', '-', '.', '(',
	// ')' and Unicode letters, not ending in '.'.
	resourceGroupRE = regexp.MustCompile(`^[-\p{L}\p{N}._()]{0,89}[-\p{L}\p{N}_()]$`)
	// tagNameRE: Azure tag names cannot hold <, >, %, &, \, ? or /.
	tagNameRE = regexp.MustCompile(`^[^<>%&\\?/]{1,512}$`)
)

// Warnings names the settings that are valid but risky (sources.Warner).
func (c *Config) Warnings() []string { return c.MappingConfig.Warnings(hostSample) }

// Validate checks a configuration after SetDefaults. Errors name the field.
func (c *Config) Validate() error {
	var v cloudsource.Checker
	bad := v.Bad
	v.Add(c.Config.Validate())
	v.Required("subscriptionId", c.SubscriptionID, uuidRE.MatchString, "a subscription ID (a GUID)")
	v.List("resourceGroups", c.ResourceGroups, strings.ToLower, resourceGroupRE.MatchString, "a resource group name")
	for _, t := range []struct{ field, v string }{{"serviceTag", c.ServiceTag}, {"portsTag", c.PortsTag}, {"optOutTag", c.OptOutTag}} {
		if !tagNameRE.MatchString(t.v) || strings.TrimSpace(t.v) != t.v {
			bad(t.field, "%q is not a tag name (no <, >, %%, &, \\, ? or /)", t.v)
		}
	}
	v.Add(c.MappingConfig.Validate(hostSample, cloudsource.VMAddressTypes...))
	v.Add(cloudsource.CheckEndpoint("endpoint", c.Endpoint))
	if c.TenantID != "" && !uuidRE.MatchString(c.TenantID) {
		bad("tenantId", "%q is not a tenant ID (a GUID)", c.TenantID)
	}
	if c.ClientID != "" && !uuidRE.MatchString(c.ClientID) {
		bad("clientId", "%q is not a client ID (a GUID)", c.ClientID)
	}
	return v.Err()
}

// Key is the configuration key of Azure sources.
func (*Config) Key() string { return "azure" }

// New makes the source (sources.Config); see the package's New.
func (c *Config) New(opts sources.Options) (sources.Source, error) {
	return cloudsource.AsSource(New(*c, opts))
}
