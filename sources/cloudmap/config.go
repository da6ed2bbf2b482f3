package cloudmap

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/awsapi"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

// Config is the configuration of one AWS Cloud Map source: the instances of
// the services of one namespace, read with ListInstances every
// refreshInterval, skipped for a service whose DiscoverInstancesRevision did
// not change. SetDefaults fills in the defaults documented in README.md.
type Config struct {
	poll.Config `yaml:",inline"`

	// Region is the AWS region of the namespace (required).
	Region string `yaml:"region"`
	// Endpoint overrides the Cloud Map endpoint (tests, VPC interface
	// endpoints). DiscoverInstancesRevision then goes to this host too, not to the
	// "data-" prefixed host.
	Endpoint string `yaml:"endpoint"`
	// Namespace is the namespace's name or HTTP name (required), e.g.
	// "prod.local".
	Namespace string `yaml:"namespace"`
	// Services are the service names to read; empty: every service of the
	// namespace (with ListNamespaces and ListServices each refresh).
	Services []string `yaml:"services"`
	// OwnerAccount is the account that owns a namespace shared with this
	// one through AWS RAM.
	OwnerAccount string `yaml:"ownerAccount"`
	// QueryParameters keeps only the instances with these attribute values
	// (as DiscoverInstances' QueryParameters did; matched on the client).
	QueryParameters map[string]string `yaml:"queryParameters"`
	// FullResync bounds how long an unchanged revision is trusted: a service
	// is read in full at least this often (default 10m).
	FullResync time.Duration `yaml:"fullResync"`

	// PortsAttribute is the instance attribute listing its ports, e.g.
	// "http:8080,grpc:9090".
	PortsAttribute string `yaml:"portsAttribute"`
	// MappingConfig holds ports (those of instances without
	// PortsAttribute; with one port, an instance's AWS_INSTANCE_PORT is the
	// port it listens on), hostTemplate (a service's host, text/template
	// over .Service, .Namespace and .Region), addressType (the attribute
	// served as the address: ipv4, AWS_INSTANCE_IPV4; ipv6,
	// AWS_INSTANCE_IPV6; or cname, AWS_INSTANCE_CNAME) and network (the
	// Istio network of every instance; default: none).
	cloudsource.MappingConfig `yaml:",inline"`
	// OptOutAttribute is an attribute that, present with any value but
	// "false", excludes an instance.
	OptOutAttribute string `yaml:"optOutAttribute"`

	// Role is the role assumed (with STS AssumeRole) on top of the default
	// credential chain: assumeRoleArn, assumeRoleExternalId and
	// stsEndpoint.
	awsapi.Role `yaml:",inline"`
}

// Port is a port declared in the configuration.
type Port = cloudsource.Port

// Defaults.
const (
	DefaultPortsAttribute  = "mesh-ports"
	DefaultOptOutAttribute = "mesh-exclude"
	DefaultHostTemplate    = "{{.Service}}.{{.Namespace}}"
	DefaultAddressType     = AddressIPv4
	DefaultFullResync      = 10 * time.Minute
)

// Address types.
const (
	AddressIPv4  = "ipv4"
	AddressIPv6  = cloudsource.AddressIPv6
	AddressCNAME = "cname"
)

var addressTypes = []string{AddressIPv4, AddressIPv6, AddressCNAME}

// SetDefaults fills in every unset field that has a default.
func (c *Config) SetDefaults() {
	c.Config.SetDefaults()
	cloudsource.FillIn(map[*string]string{&c.PortsAttribute: DefaultPortsAttribute, &c.OptOutAttribute: DefaultOptOutAttribute})
	c.MappingConfig.SetDefaults(DefaultHostTemplate, DefaultAddressType)
	if c.FullResync == 0 {
		c.FullResync = DefaultFullResync
	}
}

var (
	accountRE = regexp.MustCompile(`^[0-9]{12}$`)
	// nameRE is a Cloud Map namespace or service name, loosely.
	nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,253}$`)
)

// Warnings names the settings that are valid but risky (sources.Warner).
func (c *Config) Warnings() []string { return c.MappingConfig.Warnings(hostSample) }

// Validate checks a configuration after SetDefaults. Errors name the field.
func (c *Config) Validate() error {
	var v cloudsource.Checker
	bad := v.Bad
	v.Add(c.Config.Validate())
	v.Add(awsapi.CheckRegion(c.Region),
		cloudsource.CheckEndpoint("endpoint", c.Endpoint), cloudsource.CheckEndpoint("stsEndpoint", c.STSEndpoint))
	v.Required("namespace", c.Namespace, nameRE.MatchString, "a namespace name")
	v.List("services", c.Services, nil, nameRE.MatchString, "a service name")
	if c.OwnerAccount != "" && !accountRE.MatchString(c.OwnerAccount) {
		bad("ownerAccount", "%q is not an AWS account ID (12 digits)", c.OwnerAccount)
	}
	for _, k := range slices.Sorted(maps.Keys(c.QueryParameters)) {
		if k == "" || c.QueryParameters[k] == "" {
			bad("queryParameters", "%q: %q: keys and values must not be empty", k, c.QueryParameters[k])
		}
	}
	if c.FullResync < c.RefreshInterval {
		bad("fullResync", "%s: must be at least refreshInterval (%s)", c.FullResync, c.RefreshInterval)
	}
	if c.PortsAttribute == c.OptOutAttribute || strings.HasPrefix(c.PortsAttribute, "AWS_") {
		bad("portsAttribute", "%q: must differ from optOutAttribute and not start with AWS_", c.PortsAttribute)
	}
	if strings.HasPrefix(c.OptOutAttribute, "AWS_") {
		bad("optOutAttribute", "%q: must not start with AWS_", c.OptOutAttribute)
	}
	v.Add(c.MappingConfig.Validate(hostSample, addressTypes...), c.Role.Validate())
	return v.Err()
}

// Key is the configuration key of Cloud Map sources.
func (*Config) Key() string { return "cloudmap" }

// New makes the source (sources.Config); see the package's New.
func (c *Config) New(opts sources.Options) (sources.Source, error) {
	return cloudsource.AsSource(New(*c, opts))
}
